"""Process-wide logging set-up, done once by the CLI."""

from __future__ import annotations

import logging
import sys


def configure(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        force=True,
    )
    # aiosqlite's DEBUG lines echo every statement's parameters: hashes and ids, but noise.
    logging.getLogger("aiosqlite").setLevel(max(logging.INFO, logging.getLogger().level))
    # aioice logs each connectivity check of each peer connection at INFO, with the peers'
    # addresses: four lines per join that bury the relay's own. Still there at DEBUG.
    root = logging.getLogger().level
    logging.getLogger("aioice").setLevel(root if root <= logging.DEBUG else logging.WARNING)
