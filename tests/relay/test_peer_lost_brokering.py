"""The core on a ``peer_lost`` from a relay worker: the real application on loopback, and a
worker the test scripts message by message (so it decides the order the core hears things in).

A loss naming the participant's current connection gets it ``media_lost`` and lets it publish
again; a loss naming an older connection (it arrives after the participant published again,
even while that new join is still in flight) changes nothing; a loss heard before the result of
its own join is still told; and a worker cannot drop media in a room it does not serve.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.relay import control
from bot.relay.tickets import HEADER, make_worker_ticket, verify_core_ticket
from bot.secret import Secret
from tests.support.meeting import Peer, collect_until, join, make_meeting
from tests.support.server import Running, serve

RELAY_SECRET = Secret(secrets.token_urlsafe(32))
OFFER = {"type": "offer", "sdp": "v=0\r\no=- 7 1 IN IP4 127.0.0.1\r\n"}
ANSWER = {"type": "answer", "sdp": "v=0 scripted"}
TIMEOUT = 10.0


@dataclass
class ScriptedWorker:
    """Speaks the worker's side of the control channel only when the test says so."""

    ws: aiohttp.ClientWebSocketResponse

    async def request(self, kind: str) -> dict[str, Any]:
        message = json.loads((await self.ws.receive(timeout=TIMEOUT)).data)
        assert message["type"] == kind, message
        assert isinstance(message, dict)
        return message

    async def result(self, request: dict[str, Any], **fields: Any) -> None:
        await self.ws.send_str(control.ok(request["id"], **fields))

    async def lost(self, room: str, participant: str, join_id: int) -> None:
        await self.ws.send_str(
            control.encode(control.PEER_LOST, room=room, participant=participant, join_id=join_id)
        )


@asynccontextmanager
async def scripted_worker(base_url: str) -> AsyncIterator[ScriptedWorker]:
    worker_id = "scripted-1"
    async with aiohttp.ClientSession() as http:
        ticket, nonce = make_worker_ticket(RELAY_SECRET, worker_id, time.time())
        async with http.ws_connect(f"{base_url}/relay", headers={HEADER: ticket}) as ws:
            welcome = json.loads((await ws.receive(timeout=TIMEOUT)).data)
            verify_core_ticket(RELAY_SECRET, welcome["ticket"], worker_id, nonce, time.time())
            ready = control.encode(control.READY, worker_id=worker_id, rooms=0, participants=0)
            await ws.send_str(ready)
            yield ScriptedWorker(ws)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Running]:
    async with serve(tmp_path, env={"CONCLAVE_RELAY_SECRET": RELAY_SECRET.reveal()}) as running:
        yield running


@pytest.fixture
async def worker(server: Running) -> AsyncIterator[ScriptedWorker]:
    async with scripted_worker(server.base_url) as w:
        pool = server.app.relay_pool
        assert pool is not None and await pool.wait_for_workers(1, within=TIMEOUT)
        yield w


@pytest.fixture
async def hana(
    server: Running, worker: ScriptedWorker, http: aiohttp.ClientSession, stack: AsyncExitStack
) -> Peer:
    """The host of a new meeting, connected."""
    return await join(server, http, stack, await make_meeting(server), "hana")


async def published(hana: Peer, worker: ScriptedWorker) -> int:
    """hana publishes and the worker answers; the id of that join."""
    await hana.send("publish", offer=OFFER)
    joined = await worker.request("join")
    await worker.result(joined, answer=ANSWER)
    await hana.until("answer")
    join_id = joined["id"]
    assert isinstance(join_id, int)
    return join_id


async def lost(worker: ScriptedWorker, hana: Peer, join_id: int, room: str = "") -> None:
    await worker.lost(room or hana.welcome["room"]["id"], hana.participant_id, join_id)


async def told_lost(hana: Peer) -> None:
    message = await hana.until("media_lost")
    assert "media connection was lost" in message["message"]


async def published_and_lost(hana: Peer, worker: ScriptedWorker) -> int:
    """hana publishes, that connection is lost and she is told; the id of its join."""
    join_id = await published(hana, worker)
    await lost(worker, hana, join_id)
    await told_lost(hana)
    return join_id


async def still_published(hana: Peer) -> None:
    """Nothing reached hana, and her media is still negotiated."""
    assert await hana.ping() == []
    await hana.send("publish", offer=OFFER)
    await hana.warned("already_published")


async def test_a_lost_connection_is_told_and_only_its_own_loss_counts(
    worker: ScriptedWorker, hana: Peer
) -> None:
    first = await published_and_lost(hana, worker)
    second = await published(hana, worker)  # not declined as already published
    assert second != first

    # The first connection's loss again (late), one in a room this worker does not serve, one
    # of someone who is not there.
    await lost(worker, hana, first)
    await lost(worker, hana, second, room="not-a-room-of-this-worker")
    await worker.lost(hana.welcome["room"]["id"], "nobody-here", second)
    await still_published(hana)

    await lost(worker, hana, second)
    await told_lost(hana)


async def test_a_stale_loss_during_the_next_join_is_ignored(
    worker: ScriptedWorker, hana: Peer
) -> None:
    first = await published_and_lost(hana, worker)

    # She publishes again; the old connection's loss is repeated while that join is in flight.
    await hana.send("publish", offer=OFFER)
    joined = await worker.request("join")
    await lost(worker, hana, first)
    await worker.result(joined, answer=ANSWER)
    heard = await collect_until(hana.ws, "answer")
    assert [m["type"] for m in heard] == ["answer"]
    await still_published(hana)


async def test_a_loss_heard_before_its_join_result_is_still_told(
    worker: ScriptedWorker, hana: Peer
) -> None:
    """The worker reports a loss under the room's lock, so it may precede the join's result."""
    await hana.send("publish", offer=OFFER)
    joined = await worker.request("join")
    await lost(worker, hana, joined["id"])
    await worker.result(joined, answer=ANSWER)
    await told_lost(hana)
    again = await published(hana, worker)
    assert again != joined["id"]
