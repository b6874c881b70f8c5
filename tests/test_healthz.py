"""``GET /healthz``: healthy only while a relay worker is ready and the database takes writes.

Against the real application and its SQLite file: a fake relay worker on the real control
channel comes and goes; the database is closed under the server, and another process holds the
file's write lock.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.store.sqlite import SqliteStore
from bot.web.health import NO_RELAY, NOT_WRITABLE
from tests.support.fake_worker import fake_worker
from tests.support.server import Running, serve

BOUND = 20.0  # seconds: a generous functional bound, not a performance claim
HEALTHY = {"status": "ok"}


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Running]:
    async with serve(tmp_path) as running:
        yield running


async def health(http: aiohttp.ClientSession, server: Running) -> tuple[int, Any]:
    async with http.get(f"{server.base_url}/healthz") as response:
        assert response.content_type == "application/json"
        return response.status, await response.json()


async def health_becomes(
    http: aiohttp.ClientSession, server: Running, status: int
) -> tuple[int, Any]:
    deadline = time.monotonic() + BOUND
    while (answer := await health(http, server))[0] != status:
        assert time.monotonic() < deadline, f"/healthz stayed {answer}"
        await asyncio.sleep(0.1)
    return answer


def unhealthy(**failed: str) -> dict[str, Any]:
    return {"status": "unhealthy", "failed": failed}


async def test_healthy_only_while_a_relay_worker_is_ready(
    server: Running, http: aiohttp.ClientSession, stack: AsyncExitStack
) -> None:
    # This server starts no relay worker of its own: nobody could see or hear anyone.
    assert await health(http, server) == (503, unhealthy(relay=NO_RELAY))
    worker = await stack.enter_async_context(fake_worker(server.base_url, server.app.relay_secret))
    assert await health(http, server) == (200, HEALTHY)
    await worker.ws.close()
    assert await health_becomes(http, server, 503) == (503, unhealthy(relay=NO_RELAY))


async def test_unhealthy_while_the_database_is_closed(
    server: Running, http: aiohttp.ClientSession, stack: AsyncExitStack
) -> None:
    await stack.enter_async_context(fake_worker(server.base_url, server.app.relay_secret))
    assert await health(http, server) == (200, HEALTHY)
    await server.app.store.close()
    try:
        assert await health(http, server) == (503, unhealthy(database=NOT_WRITABLE))
    finally:
        await server.app.store.open()
    assert await health(http, server) == (200, HEALTHY)


# Another process that takes the database's write lock and keeps it until its stdin closes.
HOLD_THE_LOCK = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()
"""


async def test_unhealthy_while_another_process_holds_the_database(
    server: Running, http: aiohttp.ClientSession, stack: AsyncExitStack
) -> None:
    await stack.enter_async_context(fake_worker(server.base_url, server.app.relay_secret))
    store = server.app.store
    assert isinstance(store, SqliteStore)
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLD_THE_LOCK, str(store.path),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert holder.stdin is not None and holder.stdout is not None
    try:
        assert await asyncio.wait_for(holder.stdout.readline(), BOUND) == b"locked\n"
        # Probes all at once share one check; each answers within the health check's wait.
        answers = await asyncio.gather(*(health(http, server) for _ in range(5)))
        assert answers == [(503, unhealthy(database=NOT_WRITABLE))] * 5
    finally:
        holder.stdin.close()
        await asyncio.wait_for(holder.wait(), BOUND)
    # Once the lock is free the database takes writes again, and the server says so.
    assert await health_becomes(http, server, 200) == (200, HEALTHY)


async def test_a_database_it_cannot_write_and_no_worker_are_both_named(
    server: Running, http: aiohttp.ClientSession
) -> None:
    await server.app.store.close()
    try:
        status, body = await health(http, server)
    finally:
        await server.app.store.open()
    # Both checks, in fixed words: the public answer never names the file behind it.
    assert (status, body) == (503, unhealthy(relay=NO_RELAY, database=NOT_WRITABLE))
