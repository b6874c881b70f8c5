"""Every package the code imports is declared, and ``conclave run`` needs no media stack.

A package that happens to be installed on a developer's machine (or CI's global Python) must
never hide a missing declaration: the declared names are read from the installed
distribution's own metadata, and each import is traced to the distribution that provides it.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.support.proc import START_TIMEOUT, LineReader, conclave_env

ROOT = Path(__file__).resolve().parent.parent
PROJECT_PACKAGES = frozenset({"bot", "adapters", "tests", "bench"})
# What `conclave run` must not load: the media client, the relay worker and the media stack
# they alone use, with every bot.rtc module that imports it.
MEDIA_STACK = frozenset(
    {
        "aiortc",
        "aioice",
        "av",
        "numpy",
        "pylibsrtp",
        "bot.client",
        "bot.relay.worker",
        "bot.relay.sfu",
        "bot.relay.tracks",
        "bot.rtc.peer",
        "bot.rtc.sending",
        "bot.rtc.receiving",
        "bot.rtc.inbound",
        "bot.rtc.nack",
        "bot.rtc.internals",
    }
)


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared(extra: str | None) -> set[str]:
    """Distribution names conclave requires (with ``extra``'s on top when given)."""
    names = set()
    for line in metadata.requires("conclave") or []:
        marker = Requirement(line).marker
        unconditional = marker is None or "extra" not in str(marker)
        if unconditional or (
            extra is not None and marker is not None and marker.evaluate({"extra": extra})
        ):
            names.add(_normalize(Requirement(line).name))
    return names


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, top-level module) for every absolute import in the file, nested ones too."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.partition(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module.partition(".")[0]


def _undeclared(folders: tuple[str, ...], declared: set[str]) -> list[str]:
    providers = metadata.packages_distributions()
    problems = []
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for line, module in _imports(path):
                if module in sys.stdlib_module_names or module in PROJECT_PACKAGES:
                    continue
                dists = {_normalize(d) for d in providers.get(module, [])}
                if not dists & declared:
                    where = f"{path.relative_to(ROOT)}:{line}"
                    problems.append(f"{where} imports {module!r} (provided by {dists or 'none'})")
    return problems


def test_the_product_imports_only_what_it_declares() -> None:
    assert {"aiortc", "aiohttp", "numpy"} <= _declared(None), "metadata not read"
    assert _undeclared(("bot", "adapters"), _declared(None)) == []


def test_tests_and_benches_import_only_what_the_test_extra_declares() -> None:
    declared = _declared("test")
    assert {"pytest", "pyyaml"} <= declared
    assert _undeclared(("tests", "bench"), declared) == []


def test_the_check_notices_an_undeclared_import(tmp_path: Path) -> None:
    # numpy is installed here, so only the declaration check (not the import) can fail.
    problems = _undeclared(("bot",), _declared(None) - {"numpy"})
    assert any("'numpy'" in p for p in problems)


@pytest.mark.slow
def test_conclave_run_serves_without_importing_the_media_stack(tmp_path: Path) -> None:
    # One local relay worker, as by default: it is a process of its own, and the core that
    # talks to it must still not load media code.
    env = conclave_env(0, tmp_path / "c.db", CONCLAVE_RELAY_WORKERS="1")
    # -X importtime logs every module the process imports, first to last, on stderr.
    cmd = [sys.executable, "-X", "importtime", "-m", "bot", "run"]
    stderr_path = tmp_path / "run.stderr"
    with stderr_path.open("w", encoding="utf-8") as stderr:
        proc = subprocess.Popen(
            cmd, env=env, cwd=tmp_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=stderr, text=True, bufsize=1,
        )  # fmt: skip
        try:
            assert proc.stdin is not None and proc.stdout is not None
            out = LineReader(proc.stdout)
            out.wait_for(lambda s: s.startswith("Conclave console:"), START_TIMEOUT)
            proc.stdin.write("/meet @ana Sync\n")
            proc.stdin.flush()
            out.wait_for(lambda s: s.startswith("DM to @ana: "))
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()
    log = stderr_path.read_text(encoding="utf-8")
    imported = set(re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", log, re.M))
    assert "bot.bootstrap" in imported and "aiohttp" in imported, "importtime log not read"
    loaded = sorted(m for m in imported if m.partition(".")[0] in MEDIA_STACK or m in MEDIA_STACK)
    assert loaded == []
