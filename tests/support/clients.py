"""Waiting on in-process `conclave join` clients (bot.client.session.ClientSession)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from bot.client.session import ClientSession


async def until(condition: Callable[[], bool], what: str, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def decrypted(client: ClientSession) -> int:
    """Frames the client has decrypted so far."""
    return 0 if client.keyring is None else client.keyring.decrypted
