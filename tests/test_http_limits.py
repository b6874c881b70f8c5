"""Limits before anyone is authenticated, against the real server on loopback.

aiohttp on its own keeps an idle or half-sent HTTP connection open for an hour, and waits for
ever on a request body that never comes; and anyone can open websockets and never say hello.
Each attack runs here over raw sockets against a server with short configured limits.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import pytest

from tests.support.fake_slack import BOT_TOKEN, FakeSlack
from tests.support.server import Running, serve
from tests.support.world import World

BOUND = 10.0  # seconds: a generous functional bound, not a performance claim
IDLE = 1  # the configured idle timeout, in seconds
CAP = 3  # websockets per address that may be open before their hello


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Running]:
    env = {
        "CONCLAVE_SERVER_IDLE_TIMEOUT": str(IDLE),
        "CONCLAVE_SIGNALING_UNAUTHENTICATED_PER_ADDRESS": str(CAP),
    }
    async with serve(tmp_path, env=env) as running:
        yield running


@pytest.fixture
def world(server: Running, http: aiohttp.ClientSession, stack: AsyncExitStack) -> World:
    return World(server, http, stack)


async def raw(server: Running) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", server.port)


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server still sends, up to its closing the connection."""
    return await asyncio.wait_for(reader.read(), BOUND)


async def get_healthz(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: conclave\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), BOUND)
    length = int(
        next(
            line.split(b":", 1)[1]
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
    )
    await asyncio.wait_for(reader.readexactly(length), BOUND)
    return head


async def test_an_idle_keep_alive_connection_is_closed(server: Running) -> None:
    reader, writer = await raw(server)
    try:
        # Kept alive: a second request on the same connection is served (unhealthy: this
        # server has no relay worker, but it answers)...
        for _ in range(2):
            assert (await get_healthz(reader, writer)).startswith(b"HTTP/1.1 503")
        # ...and then the idle connection is closed, long before aiohttp's hour.
        assert await closed_by_server(reader) == b""
    finally:
        writer.close()


@pytest.mark.parametrize("pace", ["stalled", "dribbling"])
async def test_a_half_sent_request_is_dropped(pace: str, server: Running) -> None:
    reader, writer = await raw(server)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: conclave\r\n")
        if pace == "dribbling":
            # A header trickling in a byte at a time does not keep the connection open either.
            async def dribble() -> None:
                writer.write(b"X-Slow: ")
                while not reader.at_eof():
                    writer.write(b"z")
                    await writer.drain()
                    await asyncio.sleep(0.1)

            trickle = asyncio.create_task(dribble())
        answer = await closed_by_server(reader)
        assert b"HTTP/1.1" not in answer  # never served
        if pace == "dribbling":
            trickle.cancel()
            with pytest.raises((asyncio.CancelledError, ConnectionError)):
                await trickle
    finally:
        writer.close()


@pytest.fixture
async def slack_server(tmp_path: Path) -> AsyncIterator[Running]:
    """The Slack HTTP route reads request bodies: the one place a body can be half-sent."""
    fake = FakeSlack.with_people()
    await fake.start()
    env = {
        "CONCLAVE_SERVER_IDLE_TIMEOUT": str(IDLE),
        "CONCLAVE_SLACK_MODE": "http",
        "CONCLAVE_SLACK_BOT_TOKEN": BOT_TOKEN,
        "CONCLAVE_SLACK_SIGNING_SECRET": secrets.token_hex(16),
        "CONCLAVE_SLACK_API_URL": fake.api_url,
    }
    try:
        async with serve(tmp_path, env=env) as running:
            yield running
    finally:
        await fake.stop()


async def test_a_half_sent_body_is_refused(slack_server: Running) -> None:
    reader, writer = await raw(slack_server)
    try:
        writer.write(
            b"POST /slack/events HTTP/1.1\r\nHost: conclave\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 1000\r\n\r\ncommand=%2Fmeet"
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), BOUND)
        assert head.startswith(b"HTTP/1.1 408")
    finally:
        writer.close()


async def test_an_open_websocket_outlives_the_idle_timeout(world: World) -> None:
    await world.room("ana")
    ana = await world.join("ana")
    await ana.until("roster")
    await asyncio.sleep(3 * IDLE)  # quiet for longer than an idle HTTP connection may be
    await ana.send("ping")
    await ana.until("pong")


async def test_websockets_that_never_say_hello_are_capped_per_address(world: World) -> None:
    silent = [await world.connect() for _ in range(CAP - 1)]
    # A websocket that completes its hello no longer counts against its address.
    await world.room("ana")
    ana = await world.join("ana")
    silent.append(await world.connect())

    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await world.connect()
    assert refused.value.status == 429
    await ana.send("ping")
    await ana.until("pong")  # the admitted one is untouched

    # One that gives up frees its place.
    await silent[0].close()
    await eventually_connects(world)


async def eventually_connects(world: World) -> None:
    """The hub frees a place when it notices the close; that is not instant, nor slow."""
    async with asyncio.timeout(BOUND):
        while True:
            try:
                await world.connect()
                return
            except aiohttp.WSServerHandshakeError as refused:
                assert refused.status == 429
                await asyncio.sleep(0.05)
