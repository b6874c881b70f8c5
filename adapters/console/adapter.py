"""Console adapter: the embedded default when no chat platform is configured."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections.abc import AsyncIterator
from typing import TextIO

from adapters.delivery import count
from bot.commands.grammar import Mention
from bot.commands.handler import CommandHandler
from bot.commands.notices import Notice
from bot.core.models import UserRef
from bot.metrics import Metrics

log = logging.getLogger(__name__)

PLATFORM = "console"
WORKSPACE = "local"
PREFIX = "/meet"


async def stdin_lines(stream: TextIO | None = None) -> AsyncIterator[str]:
    """Lines from stdin without blocking the event loop (a daemon thread does the reading,
    so a pending read never holds up shutdown)."""
    source = sys.stdin if stream is None else stream
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    def pump() -> None:
        try:
            for line in source:
                loop.call_soon_threadsafe(queue.put_nowait, line)
        except (OSError, ValueError):
            pass
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=pump, name="console-stdin", daemon=True).start()
    while (line := await queue.get()) is not None:
        yield line


class ConsoleAdapter:
    def __init__(
        self,
        handler: CommandHandler,
        user_id: str,
        out: TextIO,
        *,
        url: str | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._handler = handler
        self._metrics = metrics
        self._user = UserRef(PLATFORM, WORKSPACE, user_id, user_id)
        self._out = out
        self._url = url
        handler.notify_hosts(PLATFORM, self._notice)

    def _print(self, text: str) -> None:
        print(text, file=self._out, flush=True)

    async def _notice(self, notice: Notice) -> None:
        self._print(f"Notice to @{notice.to.user_id}: {notice.text}")

    @staticmethod
    async def _resolve(mention: Mention) -> UserRef:
        return UserRef(PLATFORM, WORKSPACE, mention.user_id, mention.label or mention.user_id)

    async def handle_line(self, line: str) -> None:
        text = line.strip()
        if not text:
            return
        head, _, rest = text.partition(" ")
        if head.lower() != PREFIX:
            self._print("Commands start with /meet (try /meet help).")
            return
        outcome = await self._handler.handle(self._user, rest, self._resolve)
        count(self._metrics, PLATFORM, outcome)
        self._print(outcome.private_text())
        if outcome.announcement is not None:
            self._print(f"Announced in the channel: {outcome.announcement}")
        for invitation in outcome.invitations:
            self._print(f"DM to @{invitation.to.user_id}: {invitation.invite.link.reveal()}")

    async def run(self, lines: AsyncIterator[str]) -> None:
        # Whoever started the server learns where it is, even when the system chose the port
        # (``server.port = 0``).
        at = f" Links use {self._url}." if self._url else ""
        self._print(f"Conclave console: you are @{self._user.user_id}.{at} Type /meet help.")
        async for line in lines:
            await self.handle_line(line)
        log.info("console input closed; the server keeps running (stop it with Ctrl-C)")
