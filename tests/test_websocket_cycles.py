"""A finished signaling websocket is freed as soon as it is over, not at Python's next full
garbage collection (``bot/signaling/untie.py``).

aiohttp ties each server websocket into reference cycles (its heartbeat callback; the
exception a websocket whose peer vanished keeps), and so did the outbox's ``wait_for`` when a
send failed. Each cycle held the connection's request, socket objects and buffers until a full
collection, which a long meeting with people coming and going reaches only after many
megabytes (the soak run's core grew by about 10 MiB that way). These tests switch the cyclic
collector off, put the real hub through every way a connection ends, and count the server's
websockets still in memory: only the open ones may be.
"""

from __future__ import annotations

import asyncio
import gc
import socket
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from bot.signaling.hub import CLOSE_KICKED, CLOSE_REFUSED
from bot.signaling.outbox import Outbox
from tests.support.fakes import start_local_app
from tests.support.meeting import Meeting, Peer, join, make_meeting, refused
from tests.support.server import Running, expect_closed, hello_resume, receive_until, serve

ROUNDS = 6
BOUND = 10.0  # seconds for the server to finish with the closed connections: a functional bound
GUESTS = [f"g{i}" for i in range(ROUNDS)]


@contextmanager
def cyclic_gc_off() -> Iterator[None]:
    """Only reference counting frees objects in the block (what was garbage before is gone)."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def server_websockets() -> int:
    """Server websockets in memory, reachable or not (not: what only a full GC would free)."""
    return sum(1 for o in gc.get_objects() if type(o) is web.WebSocketResponse)


async def settles_to(count: int) -> int:
    """The number of server websockets in memory once it is down to ``count`` (or after BOUND)."""
    deadline = asyncio.get_running_loop().time() + BOUND
    while (now := server_websockets()) > count and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)
    return now


async def leave_with_bye(server: Running, guest: Peer) -> None:
    await guest.send("bye")
    await expect_closed(guest.ws, skip_text=True)


async def drop_connection(server: Running, guest: Peer) -> None:
    """The TCP connection goes with no close frame; the hub's close meets a dead socket."""
    sock = guest.ws.get_extra_info("socket")
    assert sock is not None
    sock.shutdown(socket.SHUT_RDWR)
    await guest.ws.receive()
    await guest.ws.close()


async def close_from_client(server: Running, guest: Peer) -> None:
    await guest.ws.close()


Leave = Callable[[Running, Peer], Awaitable[None]]


@pytest.mark.parametrize(
    "leave", [leave_with_bye, drop_connection, close_from_client], ids=lambda f: f.__name__
)
async def test_connections_that_leave_and_resume_are_freed(tmp_path: Path, leave: Leave) -> None:
    async with serve(tmp_path) as server, AsyncExitStack() as stack:
        http = await stack.enter_async_context(aiohttp.ClientSession())
        meeting = await make_meeting(server, "ana")
        host = await join(server, http, stack, meeting, "hana")
        guest = await join(server, http, stack, meeting, "ana")
        with cyclic_gc_off():
            before = server_websockets()
            for _ in range(ROUNDS):
                await leave(server, guest)
                await host.until("roster", lambda m: len(m["roster"]) == 1)
                server.clock.advance(3600)  # past the resume throttle's window
                ws = await stack.enter_async_context(http.ws_connect(server.ws_url))
                await ws.send_str(hello_resume(guest.resume_token))
                guest = Peer(ws, await receive_until(ws, "welcome"))
            # The host's and the guest's current connections, and nothing of the others.
            assert await settles_to(before) == before


async def test_refused_and_kicked_connections_are_freed(tmp_path: Path) -> None:
    async with serve(tmp_path) as server, AsyncExitStack() as stack:
        http = await stack.enter_async_context(aiohttp.ClientSession())
        meeting: Meeting = await make_meeting(server, *GUESTS)
        host = await join(server, http, stack, meeting, "hana")
        with cyclic_gc_off():
            before = server_websockets()
            for who in GUESTS:
                guest = await join(server, http, stack, meeting, who)
                await host.until("roster", lambda m: len(m["roster"]) == 2)
                await host.send("kick", participant=guest.participant_id)
                await guest.until("kicked")
                assert await expect_closed(guest.ws) == CLOSE_KICKED
                frame = hello_resume(guest.resume_token)
                assert await refused(server, http, stack, frame, "bad_resume") == CLOSE_REFUSED
            assert await settles_to(before) == before


async def test_a_send_that_fails_leaves_no_cycle() -> None:
    """A message queued as the websocket closes (aiohttp closes it itself when the peer's
    closing frame arrives) fails to send; the outbox must let the connection go all the same.
    No heartbeat here, so that only the outbox is under test."""
    finished = asyncio.Event()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        outbox = Outbox(request, ws, max_bytes=1 << 20, send_timeout=BOUND)
        await ws.close()
        outbox.put('{"type":"pong"}')
        while outbox.backlog:  # until its writer has taken it (and failed to send it)
            await asyncio.sleep(0.01)
        await outbox.finish()
        finished.set()
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    runner, port = await start_local_app(app)
    try:
        async with aiohttp.ClientSession() as http:
            with cyclic_gc_off():
                before = server_websockets()
                for _ in range(ROUNDS):
                    finished.clear()
                    async with http.ws_connect(f"http://127.0.0.1:{port}/ws") as ws:
                        # The close, and never the message queued after it.
                        assert (await ws.receive()).type == aiohttp.WSMsgType.CLOSE
                    await asyncio.wait_for(finished.wait(), BOUND)
                assert await settles_to(before) == before
    finally:
        await runner.cleanup()
