"""``conclave join LINK``: join a meeting from a terminal."""

from __future__ import annotations

import sys
from typing import TextIO

from bot.client.session import ClientSession, MediaOptions
from bot.core.links import parse_link
from bot.errors import ConclaveError


async def join(
    link: str,
    duration: float | None,
    media: MediaOptions | None = None,
    label: str | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Join and stay until ``duration`` passes or the meeting ends; the process exit code."""
    prefix = f"[{label}] " if label else ""

    def say(line: str) -> None:
        print(prefix + line, file=out, flush=True)

    try:
        session = ClientSession(parse_link(link), say, media)
        await session.run(duration)
    except ConclaveError as err:
        print(f"{prefix}conclave: {err}", file=sys.stderr, flush=True)
        return 1
    if session.keyring is not None and media is not None and media.enabled:
        k = session.keyring
        session.presenter.frame_counts(k.decrypted, k.dropped, k.misattributed)
    return 0
