"""The process's logging set-up (bot/logs.py), run in a fresh interpreter as the CLI runs it."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

LEVELS = """
import logging
from bot.logs import configure
configure({level!r})
for name in ("aioice.ice", "bot"):
    print(logging.getLogger(name).getEffectiveLevel())
"""


@pytest.mark.parametrize(
    ("level", "aioice", "ours"),
    [("info", "WARNING", "INFO"), ("warning", "WARNING", "WARNING"), ("debug", "DEBUG", "DEBUG")],
)
def test_aioice_connectivity_checks_are_logged_only_at_debug(
    level: str, aioice: str, ours: str
) -> None:
    """At INFO, aioice would log four lines per peer connection, each with peers' addresses."""
    done = subprocess.run(
        [sys.executable, "-c", LEVELS.format(level=level)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    got = [int(n) for n in done.stdout.split()]
    assert got == [logging.getLevelName(aioice), logging.getLevelName(ours)]
