"""Package-wide promises: no I/O, no clocks, no logging; and the benchmark still runs."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[2] / "bot" / "e2ee"
BENCH = Path(__file__).parents[2] / "bench" / "sframe_bench.py"
FORBIDDEN_MODULES = {
    "asyncio",
    "io",
    "logging",
    "os",
    "pathlib",
    "select",
    "socket",
    "subprocess",
    "threading",
    "time",
    "urllib",
    "http",
    "requests",
    "aiohttp",
}
FORBIDDEN_CALLS = {"open", "print", "input"}


def test_the_package_does_no_io() -> None:
    sources = sorted(PACKAGE.glob("*.py"))
    assert len(sources) >= 10
    for path in sources:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                names = []
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN_MODULES, f"{path.name} imports {name}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in FORBIDDEN_CALLS, f"{path.name} calls {node.func.id}"


def test_the_benchmark_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("sframe_bench", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "sframe_bench", bench)  # dataclasses look themselves up here
    spec.loader.exec_module(bench)
    result = bench.run(iterations=20, rounds=1)
    text = bench.report(result)
    # Figures are printed, not judged here: timing is the benchmark's business, not the tests'.
    for label in ("raw AESGCM.encrypt", "SFrameContext.encrypt", "SFrameContext.decrypt", "ratio"):
        assert label in text
    assert result.encrypt_us > 0 and result.decrypt_us > 0
