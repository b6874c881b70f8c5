"""A recording man-in-the-middle on the relay control channel: the worker dials the proxy, the
proxy dials the real core with the worker's own ticket, and every message passes through and
is recorded. It lets a test see exactly what a relay worker receives, and play a lying relay:
``rewrite`` (set at any time) edits each message the worker sends before the core gets it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from bot.relay.tickets import HEADER
from tests.support.fakes import start_local_app


@dataclass
class RecordingProxy:
    port: int
    to_worker: list[str] = field(default_factory=list)
    to_core: list[str] = field(default_factory=list)
    rewrite: Callable[[str], str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rewrite_to_core(self, text: str) -> str:
        return text if self.rewrite is None else self.rewrite(text)


async def _pump(
    source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    record: list[str],
    rewrite: Callable[[str], str] = str,
) -> None:
    async for msg in source:
        if msg.type != aiohttp.WSMsgType.TEXT:
            break
        record.append(msg.data)  # as sent, before any rewrite
        await sink.send_str(rewrite(msg.data))
    await sink.close()


@asynccontextmanager
async def recording_proxy(core_url: str) -> AsyncIterator[RecordingProxy]:
    proxy = RecordingProxy(port=0)
    http = aiohttp.ClientSession()

    async def relay(request: web.Request) -> web.StreamResponse:
        headers = {HEADER: request.headers.get(HEADER, "")}
        try:
            upstream = await http.ws_connect(f"{core_url}/relay", headers=headers)
        except aiohttp.WSServerHandshakeError as err:
            raise web.HTTPUnauthorized() if err.status == 401 else web.HTTPBadGateway() from None
        downstream = web.WebSocketResponse(max_msg_size=0)
        await downstream.prepare(request)
        await asyncio.gather(
            _pump(upstream, downstream, proxy.to_worker),
            _pump(downstream, upstream, proxy.to_core, proxy.rewrite_to_core),
        )
        return downstream

    app = web.Application()
    app.router.add_get("/relay", relay)
    runner, proxy.port = await start_local_app(app)
    try:
        yield proxy
    finally:
        with contextlib.suppress(Exception):
            await runner.cleanup()
        await http.close()
