"""A participant who stops reading its socket, against the real hub on loopback.

The attacker is a real websocket client whose TCP receive buffer is tiny and which never reads
after its welcome; the others flood it with key messages until every buffer between the hub
and it is full. It must not hold up anyone else's messages or the host's kick, it must not be
able to come back after the kick, and a connection that falls behind must be cut off.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.signaling.hub import CLOSE_REFUSED
from tests.support.meeting import Meeting, Peer, join, make_meeting, roster_ids
from tests.support.server import Running, expect_refused, hello_resume, receive_until, serve

BOUND = 10.0  # seconds: a generous functional bound, not a performance claim
PAYLOAD_CHARS = 16_000
# More than every buffer on the way can hold: the hub's socket send buffer grows to at most
# 4 MiB (net.ipv4.tcp_wmem), the client's receive buffer is 4 KiB, aiohttp's own about 128 KiB.
FLOOD_MESSAGES = 8 * 1024 * 1024 // PAYLOAD_CHARS
NEVER = "300"  # a send timeout (s) that no test waits for
ROOMY = str(256 * 1024 * 1024)  # a queue limit (bytes) that no flood here reaches


def _tiny_receive_buffer(addr_info: tuple[Any, ...]) -> socket.socket:
    family, kind, proto, _, _ = addr_info
    sock = socket.socket(family=family, type=kind, proto=proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return sock


@pytest.fixture
async def stalled_http(stack: AsyncExitStack) -> aiohttp.ClientSession:
    """A client whose sockets hold almost nothing unread (aiohttp stops reading a websocket
    whose messages nobody takes, so once the test stops receiving, the socket fills)."""
    connector = aiohttp.TCPConnector(socket_factory=_tiny_receive_buffer)
    return await stack.enter_async_context(aiohttp.ClientSession(connector=connector))


def signaling(send_timeout: str, queue_bytes: str) -> dict[str, str]:
    return {
        "CONCLAVE_SIGNALING_SEND_TIMEOUT": send_timeout,
        "CONCLAVE_SIGNALING_SEND_QUEUE_BYTES": queue_bytes,
        # The flood comes from one honest peer; its own message budget is not under test.
        "CONCLAVE_SIGNALING_RATE_LIMIT": "10000",
        "CONCLAVE_SIGNALING_RATE_BURST": "100000",
    }


async def flood(sender: Peer, to: str) -> None:
    for i in range(FLOOD_MESSAGES):
        await sender.send("key", to=to, payload=f"{i:08d}".ljust(PAYLOAD_CHARS, "A"))


async def answered(peer: Peer) -> None:
    """A ping answered: the hub has handled everything ``peer`` sent before it."""
    await peer.send("ping")
    await receive_until(peer.ws, "pong", timeout=BOUND)


def backlog(server: Running, room_id: str, participant_id: str) -> int:
    # Read only to show the attack worked: the hub holds messages its socket would not take.
    return server.app.hub._rooms[room_id].members[participant_id].outbox.backlog


async def roster_becomes(peer: Peer, *expected: Peer) -> None:
    ids = [p.participant_id for p in expected]
    await receive_until(peer.ws, "roster", lambda m: roster_ids(m) == ids, timeout=BOUND)


async def drained(ws: aiohttp.ClientWebSocketResponse) -> list[str]:
    """Read everything the stalled client still gets, until its connection ends."""
    texts: list[str] = []
    while True:
        msg = await asyncio.wait_for(ws.receive(), BOUND)
        if msg.type != aiohttp.WSMsgType.TEXT:
            return texts
        texts.append(msg.data)


async def meeting_with_a_stalled_guest(
    server: Running,
    http: aiohttp.ClientSession,
    stalled_http: aiohttp.ClientSession,
    stack: AsyncExitStack,
) -> tuple[Meeting, Peer, Peer, Peer]:
    meeting = await make_meeting(server, "ben", "mal", "cy")
    host = await join(server, http, stack, meeting, "hana")
    ben = await join(server, http, stack, meeting, "ben")
    # mal reads its welcome, then nothing more.
    mal = await join(server, stalled_http, stack, meeting, "mal")
    for peer in (host, ben):
        await roster_becomes(peer, host, ben, mal)
    return meeting, host, ben, mal


@pytest.fixture
async def stuck_server(tmp_path: Path) -> AsyncIterator[Running]:
    """Neither the queue limit nor the send timeout can cut anyone off during a test."""
    async with serve(tmp_path, env=signaling(NEVER, ROOMY)) as running:
        yield running


async def test_a_participant_who_stops_reading_delays_nobody_and_is_kicked_for_good(
    stuck_server: Running,
    http: aiohttp.ClientSession,
    stalled_http: aiohttp.ClientSession,
    stack: AsyncExitStack,
) -> None:
    server = stuck_server
    meeting, host, ben, mal = await meeting_with_a_stalled_guest(server, http, stalled_http, stack)

    # Every key message for mal is routed while mal's socket is full: ben is answered anyway.
    await flood(ben, mal.participant_id)
    await answered(ben)
    assert backlog(server, meeting.room_id, mal.participant_id) > 0

    # Joins, broadcasts and pings go on around mal.
    cy = await join(server, http, stack, meeting, "cy")
    for peer in (host, ben):
        await roster_becomes(peer, host, ben, mal, cy)
    await answered(cy)
    await answered(host)

    # The host's kick takes effect for everyone while mal's socket is still stuck.
    await host.send("kick", participant=mal.participant_id)
    for peer in (host, ben, cy):
        await roster_becomes(peer, host, ben, cy)
    assert mal.participant_id not in {
        e["participant_id"] for e in server.app.hub.roster(meeting.room_id)
    }

    # A sender key meant for mal after the kick is refused, not queued for it.
    after_kick = "AFTERKICK".ljust(64, "Z")
    await ben.send("key", to=mal.participant_id, payload=after_kick)
    warning = await receive_until(ben.ws, "warning", timeout=BOUND)
    assert warning["code"] == "undeliverable"

    # mal cannot come back with its resume token.
    ws = await stack.enter_async_context(http.ws_connect(server.ws_url))
    await ws.send_str(hello_resume(mal.resume_token))
    _, close_code = await expect_refused(ws, "bad_resume", timeout=BOUND)
    assert close_code == CLOSE_REFUSED

    # And its old connection is gone, having never carried the post-kick key.
    texts = await drained(mal.ws)
    assert not [t for t in texts if after_kick in t]
    assert mal.ws.closed


@pytest.mark.parametrize(
    ("send_timeout", "queue_bytes"),
    [(NEVER, str(256 * 1024)), ("1", ROOMY)],
    ids=["queue_overflow", "send_timeout"],
)
async def test_a_participant_who_falls_behind_is_cut_off(
    send_timeout: str,
    queue_bytes: str,
    tmp_path: Path,
    http: aiohttp.ClientSession,
    stalled_http: aiohttp.ClientSession,
    stack: AsyncExitStack,
) -> None:
    async with serve(tmp_path, env=signaling(send_timeout, queue_bytes)) as server:
        _, host, ben, mal = await meeting_with_a_stalled_guest(server, http, stalled_http, stack)

        await flood(ben, mal.participant_id)
        # Only the limit under test can have cut mal off: the other one is out of reach.
        for peer in (host, ben):
            await roster_becomes(peer, host, ben)
        await drained(mal.ws)
        assert mal.ws.closed
        await answered(ben)
        await answered(host)
