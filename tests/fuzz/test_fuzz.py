"""Every parser of outside input, fuzzed with coverage guidance (atheris, i.e. libFuzzer) for a
bounded number of inputs from the seed corpus in tests/fuzz/corpus.

Each target runs in its own process (libFuzzer owns the process it fuzzes) with a fixed seed,
so a run is repeatable. The only outcome allowed is the parser's documented error; a crash
fails the test with the input that caused it (tests/fuzz/README.md says what to do with it).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Final

import pytest

from bot.relay import control
from bot.signaling.messages import TO_CLIENT, TO_SERVER
from tests.fuzz.seeds import CORPUS, build
from tests.fuzz.targets import TARGETS, load

ROOT: Final = Path(__file__).resolve().parents[2]
# Inputs per target in CI: all fifteen together take 40 s on an idle two-core machine and stay
# under two minutes on a busy one.
RUNS: Final = 30_000
# The slowest target (each input builds sender keys and derives AES keys) gets fewer.
RUNS_BY_TARGET: Final = {"media_frame": 10_000}
# Per input: far above any parser's need, low enough that a hang is found within the budget.
INPUT_TIMEOUT_SECONDS: Final = 10


def _finding(output: str) -> str:
    """The exception and the input from libFuzzer's report, not its statistics."""
    start = output.find("=== Uncaught Python exception")
    return output[start:][:6000] if start >= 0 else output[-4000:]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_the_target_survives_its_budget(name: str, tmp_path: Path) -> None:
    found = tmp_path / "found"  # libFuzzer adds new inputs to the first folder; never the seeds
    found.mkdir()
    runs = RUNS_BY_TARGET.get(name, RUNS)
    command = [
        sys.executable,
        "-m",
        "tests.fuzz.run",
        name,
        f"-runs={runs}",
        "-seed=1",
        f"-timeout={INPUT_TIMEOUT_SECONDS}",
        f"-artifact_prefix={tmp_path}/",
        str(found),
        str(CORPUS / name),
    ]
    # atheris prints the exception on stdout, libFuzzer its report on stderr: one stream.
    result = subprocess.run(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=100
    )
    crashes = sorted(p.name for p in tmp_path.iterdir() if p.name != "found")
    assert result.returncode == 0 and not crashes, f"{name} failed: {_finding(result.stdout)}"
    assert f"Done {runs} runs" in result.stdout, result.stdout[-2000:]


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_the_corpus_on_disk_is_what_the_seed_builder_makes(name: str) -> None:
    on_disk = {p.name: p.read_bytes() for p in (CORPUS / name).iterdir()}
    assert on_disk == build(name), "run `python -m tests.fuzz.seeds` and commit the corpus"


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_every_seed_passes_its_target(name: str) -> None:
    # The fuzz run starts from these too; here a failure comes with a plain traceback.
    target = load(name)
    for data in build(name).values():
        target(data)


def _types(name: str) -> set[str]:
    kinds = set()
    for seed, data in build(name).items():
        if seed.startswith("regression-"):
            continue
        for line in data.split(b"\n"):
            message = json.loads(line)
            kinds.add(message["type"])
    return kinds


def test_every_message_of_both_protocols_has_a_seed() -> None:
    assert _types("signaling_to_server") == set(TO_SERVER)
    assert _types("signaling_to_client") == set(TO_CLIENT)
    assert _types("relay_control") == control.REQUESTS | control.TO_CORE | {control.WELCOME}
