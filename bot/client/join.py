"""``conclave join LINK``: join a meeting from a terminal."""

from __future__ import annotations

import sys
from typing import TextIO

from bot.client.session import ClientSession
from bot.core.links import parse_link
from bot.errors import ConclaveError


async def join(link: str, duration: float | None, out: TextIO = sys.stdout) -> int:
    """Join and stay until ``duration`` passes or the meeting ends; the process exit code."""

    def say(line: str) -> None:
        print(line, file=out, flush=True)

    try:
        session = ClientSession(parse_link(link), say)
        await session.run(duration)
    except ConclaveError as err:
        print(f"conclave: {err}", file=sys.stderr, flush=True)
        return 1
    return 0
