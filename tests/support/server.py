"""The real application in this process: built by the composition root, listening on loopback.

Tests drive it with real HTTP requests and websockets; the console reads lines the test feeds.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bot.bootstrap import Application, build
from bot.config import load_settings
from tests.support.fakes import FakeClock

RECEIVE_TIMEOUT = 5.0


class FeedLines:
    """An async iterator of console lines that the test feeds and closes by hand."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()

    def feed(self, line: str) -> None:
        self._queue.put_nowait(line)

    def close(self) -> None:
        self._queue.put_nowait(None)

    def __aiter__(self) -> FeedLines:
        return self

    async def __anext__(self) -> str:
        line = await self._queue.get()
        if line is None:
            self._queue.put_nowait(None)
            raise StopAsyncIteration
        return line


@dataclass
class Running:
    app: Application
    clock: FakeClock
    port: int
    console: FeedLines
    console_out: io.StringIO

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"{self.base_url}/ws"


@asynccontextmanager
async def serve(
    tmp_path: Path, env: Mapping[str, str] | None = None, clock: FakeClock | None = None
) -> AsyncIterator[Running]:
    """Build and start the application on a free loopback port; stop it afterwards.

    The sweeper is slowed to its maximum interval so that only the test moves time and state.
    """
    environ = {
        "CONCLAVE_SERVER_HOST": "127.0.0.1",
        "CONCLAVE_SERVER_PORT": "0",  # the application binds a free port and reports it
        "CONCLAVE_STORAGE_PATH": str(tmp_path / "c.db"),
        "CONCLAVE_MEETINGS_SWEEP_INTERVAL": "3600",
        # Signaling tests need no media; media tests start their own workers.
        "CONCLAVE_RELAY_WORKERS": "0",
        **(env or {}),
    }
    clock = clock or FakeClock()
    out = io.StringIO()
    app = build(load_settings(environ=environ), clock=clock, out=out)
    port = app.settings.server.port
    assert port != 0, "the application did not report the port it bound"
    lines = FeedLines()
    await app.start(console_lines=lines)
    try:
        yield Running(app=app, clock=clock, port=port, console=lines, console_out=out)
    finally:
        lines.close()
        await app.stop()


async def receive_json(
    ws: aiohttp.ClientWebSocketResponse, timeout: float = RECEIVE_TIMEOUT
) -> Any:
    """The next message, which must be a JSON text message."""
    msg = await asyncio.wait_for(ws.receive(), timeout)
    assert msg.type == aiohttp.WSMsgType.TEXT, f"expected a text message, got {msg.type!r}"
    return json.loads(msg.data)


async def receive_until(
    ws: aiohttp.ClientWebSocketResponse,
    kind: str,
    match: Callable[[dict[str, Any]], bool] = lambda m: True,
    timeout: float = RECEIVE_TIMEOUT,
) -> dict[str, Any]:
    """Skip messages until one of type ``kind`` that ``match`` accepts."""

    async def scan() -> dict[str, Any]:
        while True:
            message = await receive_json(ws, timeout)
            assert isinstance(message, dict)
            if message.get("type") == kind and match(message):
                return message

    return await asyncio.wait_for(scan(), timeout)


async def expect_closed(
    ws: aiohttp.ClientWebSocketResponse,
    timeout: float = RECEIVE_TIMEOUT,
    *,
    skip_text: bool = False,
) -> int:
    """Wait for the server to close the connection; its close code.

    The close must be the next message, unless ``skip_text`` allows text messages before it.
    """
    msg = await asyncio.wait_for(ws.receive(), timeout)
    while skip_text and msg.type == aiohttp.WSMsgType.TEXT:
        msg = await asyncio.wait_for(ws.receive(), timeout)
    assert msg.type in (
        aiohttp.WSMsgType.CLOSE,
        aiohttp.WSMsgType.CLOSING,
        aiohttp.WSMsgType.CLOSED,
    ), f"expected the connection to close, got {msg.type!r} {msg.data!r}"
    # The code the server put in its close frame. (``ws.close_code`` can read 1006 instead when
    # the server drops the TCP connection before the client's reply, as aiohttp does when a
    # websocket is closed by a task other than its reader: the frame still said why.)
    code = msg.data if msg.type == aiohttp.WSMsgType.CLOSE else ws.close_code
    # The client answers the close handshake itself; after that, nothing more can arrive.
    after = await asyncio.wait_for(ws.receive(), timeout)
    assert after.type == aiohttp.WSMsgType.CLOSED
    assert ws.closed
    assert isinstance(code, int)
    return code


async def expect_refused(
    ws: aiohttp.ClientWebSocketResponse, code: str, timeout: float = RECEIVE_TIMEOUT
) -> tuple[dict[str, Any], int]:
    """An ``error`` naming ``code``, then the connection closed; the error and close code."""
    message = await receive_json(ws, timeout)
    assert message.get("type") == "error", message
    assert message.get("code") == code, message
    assert isinstance(message.get("message"), str) and message["message"]
    return message, await expect_closed(ws, timeout)


def hello_invite(room_id: str, credential: str) -> str:
    return json.dumps({"type": "hello", "version": 2, "room": room_id, "invite": credential})


def hello_resume(token: str) -> str:
    return json.dumps({"type": "hello", "version": 2, "resume": token})
