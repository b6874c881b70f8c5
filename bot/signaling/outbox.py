"""One websocket's outgoing messages: a bounded queue that the connection's own task writes.

Whoever sends to a participant (a broadcast, a key message routed from a peer, a kick) only
enqueues and returns, so nothing ever waits on another participant's socket. A peer that does
not read is found out two ways: its queue outgrows ``max_bytes``, or one write is not taken
within ``send_timeout``. Either way the connection is cut: the transport is aborted, because a
polite close would put its close frame behind the same full socket and wait there.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable

from aiohttp import WSCloseCode, web

log = logging.getLogger(__name__)


class Outbox:
    def __init__(
        self,
        request: web.Request,
        ws: web.WebSocketResponse,
        *,
        max_bytes: int,
        send_timeout: float,
    ) -> None:
        self._ws = ws
        self._transport = request.transport
        self._protocol = request.protocol
        self._max_bytes = max_bytes
        self._timeout = send_timeout
        self._queue: deque[str] = deque()
        self._size = 0
        self._wake = asyncio.Event()
        self._close: tuple[int, bytes] | None = None
        self._overdue: asyncio.TimerHandle | None = None
        # Who this is, for the log line that says why it was cut (an address, then an id).
        self.who = request.remote or "unknown"
        self.cut: str | None = None
        self._task = asyncio.create_task(self._run(), name="outbox")

    @property
    def closing(self) -> bool:
        return self._close is not None

    @property
    def close_reason(self) -> tuple[int, bytes] | None:
        """The close code and reason it closed (or is closing) with; None while open."""
        return self._close

    @property
    def backlog(self) -> int:
        """Characters queued and not yet handed to the socket."""
        return self._size

    def put(self, text: str) -> None:
        """Queue ``text``, or cut the connection if its peer is already this far behind."""
        if self._close is not None:
            return
        if self._size + len(text) > self._max_bytes:
            self._cut("its outgoing queue overflowed")
            return
        self._append(text)

    def close(self, code: int, reason: bytes, last_word: str | None = None) -> None:
        """Send ``last_word`` instead of anything still queued, then close with ``code``.

        A peer whose socket is not taking data right now gets neither: it is cut at once, so a
        kick or an end never waits on it. Closing takes at most ``send_timeout`` either way.
        """
        if self._close is not None:
            return
        self._close = (code, reason)
        self._queue.clear()
        self._size = 0
        if self._protocol is not None and self._protocol.writing_paused:
            self._cut("it was closed while not reading")
            return
        if last_word is not None:
            self._append(last_word)
        self._wake.set()
        self._overdue = asyncio.get_running_loop().call_later(
            self._timeout, self._cut, "it did not take its close in time"
        )

    async def finish(self) -> None:
        """Close normally unless already closing, and wait until the writer is done."""
        self.close(WSCloseCode.OK, b"")
        try:
            # The writer's steps are bounded and a cut ends it; this bound is a backstop.
            await asyncio.wait_for(self._task, 2 * self._timeout)
        except TimeoutError:
            self._cut("its writer did not finish")
        if self._overdue is not None:
            self._overdue.cancel()

    def _append(self, text: str) -> None:
        self._queue.append(text)
        self._size += len(text)
        self._wake.set()

    def _cut(self, why: str) -> None:
        if self.cut is None and not self._task.done():
            self.cut = why
            log.info("cut the websocket of %s: %s", self.who, why)
        if self._close is None:
            self._close = (WSCloseCode.ABNORMAL_CLOSURE, b"")
        self._queue.clear()
        self._size = 0
        self._abort()
        self._wake.set()

    def _abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    async def _run(self) -> None:
        while self.cut is None:
            if self._queue:
                text = self._queue.popleft()
                self._size -= len(text)
                if not await self._within_timeout(self._ws.send_str(text), "a send timed out"):
                    return
            elif self._close is not None:
                code, reason = self._close
                await self._within_timeout(
                    self._ws.close(code=code, message=reason), "its close timed out"
                )
                return
            else:
                self._wake.clear()
                await self._wake.wait()

    async def _within_timeout(self, step: Awaitable[object], why: str) -> bool:
        try:
            # Not wait_for: on Python 3.11 it runs the step as a task of its own, and a failed
            # step's exception then holds that task in a reference cycle (traceback, wait_for's
            # frame, the task, its exception) and with it the whole connection, until the next
            # full garbage collection.
            async with asyncio.timeout(self._timeout):
                await step
        except TimeoutError:
            self._cut(why)
            return False
        except (ConnectionError, RuntimeError):
            # The peer is going away; make sure its reader notices, and it cleans up.
            self._abort()
            return False
        return True
