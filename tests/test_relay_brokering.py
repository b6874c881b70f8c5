"""Media brokering through the real relay pool, with a fake relay worker on the control channel.

The application is the real one on loopback, with a relay secret the test knows; the worker is
tests/support/fake_worker.py, which authenticates with real tickets and records every message
the core sends it. What the worker must see (join, answer, leave, close_room) and what it must
never see (key messages, public keys, anything from a refused connection) are both checked.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.relay.pool import RelayPool
from bot.relay.tickets import HEADER, make_worker_ticket
from bot.secret import Secret
from tests.support.fake_worker import FAKE_ANSWER, FakeWorker, fake_worker
from tests.support.keys import announced_keys
from tests.support.meeting import (
    Meeting,
    Peer,
    collect_until,
    connect,
    join,
    make_meeting,
)
from tests.support.server import (
    Running,
    expect_closed,
    expect_refused,
    hello_invite,
    receive_until,
    serve,
)

RELAY_SECRET = Secret(secrets.token_urlsafe(32))
OFFER = {"type": "offer", "sdp": "v=0\r\no=- 7 1 IN IP4 127.0.0.1\r\n"}
WORKER_ONLY_SEES = {"join", "answer", "leave", "close_room"}


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Running]:
    env = {"CONCLAVE_RELAY_SECRET": RELAY_SECRET.reveal()}
    async with serve(tmp_path, env=env) as running:
        yield running


def pool_of(server: Running) -> RelayPool:
    pool = server.app.relay_pool
    assert pool is not None
    return pool


@pytest.fixture
async def worker(server: Running) -> AsyncIterator[FakeWorker]:
    async with fake_worker(server.base_url, RELAY_SECRET) as w:
        assert await pool_of(server).wait_for_workers(1, within=10)
        yield w


async def publish(peer: Peer, worker: FakeWorker) -> dict[str, Any]:
    """Negotiate media; the ``join`` the worker received for it."""
    await peer.send("publish", offer=OFFER)
    answer = await receive_until(peer.ws, "answer")
    assert answer == {"type": "answer", "answer": FAKE_ANSWER}
    return await worker.wait_for("join", lambda m: m["participant"] == peer.participant_id)


async def test_publish_is_brokered_through_the_worker(
    server: Running, worker: FakeWorker, http: aiohttp.ClientSession, stack: AsyncExitStack
) -> None:
    meeting = await make_meeting(server, "ana")
    ana = await join(server, http, stack, meeting, "ana")

    await ana.send("publish", offer=OFFER)
    assert await receive_until(ana.ws, "answer") == {"type": "answer", "answer": FAKE_ANSWER}
    joined = await worker.wait_for("join")
    assert joined["room"] == meeting.room_id
    assert joined["participant"] == ana.participant_id
    assert joined["offer"] == OFFER
    assert pool_of(server).room_worker(meeting.room_id) == worker.worker_id

    # One negotiation per connection: a second publish is refused and never reaches the worker.
    await ana.send("publish", offer=OFFER)
    warning = await receive_until(ana.ws, "warning")
    assert warning["code"] == "already_published"
    await ana.send("bye")
    await expect_closed(ana.ws, skip_text=True)
    await worker.wait_for("leave")
    assert len(worker.of_type("join")) == 1


async def test_a_relay_offer_reaches_only_its_participant_and_the_answer_returns(
    server: Running, worker: FakeWorker, http: aiohttp.ClientSession, stack: AsyncExitStack
) -> None:
    meeting = await make_meeting(server, "ana", "ben")
    ana = await join(server, http, stack, meeting, "ana")
    ben = await join(server, http, stack, meeting, "ben")
    await publish(ana, worker)
    await publish(ben, worker)

    await worker.offer(meeting.room_id, ana.participant_id, 1, "v=0 reneg for ana")
    # The pool forwards offers in order: anything ben got of ana's comes before ben's own.
    await worker.offer(meeting.room_id, ben.participant_id, 1, "v=0 reneg for ben")
    assert await receive_until(ana.ws, "offer") == {
        "type": "offer",
        "negotiation": 1,
        "offer": {"type": "offer", "sdp": "v=0 reneg for ana"},
    }
    seen_by_ben = await collect_until(ben.ws, "offer")
    assert seen_by_ben[-1]["offer"]["sdp"] == "v=0 reneg for ben"
    assert not [m for m in seen_by_ben if "reneg for ana" in json.dumps(m)]

    client_answer = {"type": "answer", "sdp": "v=0 client answer"}
    await ana.send("answer", negotiation=1, answer=client_answer)
    answered = await worker.wait_for("answer")
    assert answered["room"] == meeting.room_id
    assert answered["participant"] == ana.participant_id
    assert answered["negotiation"] == 1
    assert answered["answer"] == client_answer
    assert not [m for m in await ana.ping() if m["type"] in ("warning", "error")]


async def test_an_offer_for_a_participant_without_media_is_dropped(
    server: Running, worker: FakeWorker, http: aiohttp.ClientSession, stack: AsyncExitStack
) -> None:
    meeting = await make_meeting(server, "ana", "ben")
    ana = await join(server, http, stack, meeting, "ana")
    ben = await join(server, http, stack, meeting, "ben")
    await publish(ana, worker)

    await worker.offer(meeting.room_id, ben.participant_id, 1, "v=0 not for ben")
    await worker.offer(meeting.room_id, ana.participant_id, 1, "v=0 for ana")
    assert (await receive_until(ana.ws, "offer"))["offer"]["sdp"] == "v=0 for ana"
    assert not [m for m in await ben.ping() if m["type"] == "offer"]


async def test_leaving_and_ending_reach_the_worker(
    server: Running, worker: FakeWorker, http: aiohttp.ClientSession, stack: AsyncExitStack
) -> None:
    meeting = await make_meeting(server, "ana")
    host = await join(server, http, stack, meeting, "hana")
    ana = await join(server, http, stack, meeting, "ana")
    await publish(host, worker)
    await publish(ana, worker)

    await ana.ws.close()
    left = await worker.wait_for("leave")
    assert (left["room"], left["participant"]) == (meeting.room_id, ana.participant_id)

    await host.send("end")
    await receive_until(host.ws, "ended")
    await expect_closed(host.ws)
    closed = await worker.wait_for("close_room")
    assert closed["room"] == meeting.room_id
    assert pool_of(server).room_worker(meeting.room_id) is None


async def test_key_material_never_reaches_the_worker(
    server: Running, worker: FakeWorker, http: aiohttp.ClientSession, stack: AsyncExitStack
) -> None:
    meeting = await make_meeting(server, "ana", "ben")
    host = await join(server, http, stack, meeting, "hana")
    ana = await join(server, http, stack, meeting, "ana")
    ben = await join(server, http, stack, meeting, "ben")
    peers = (host, ana, ben)
    announced: list[str] = []
    for peer in peers:
        await publish(peer, worker)
        keys = announced_keys(peer.welcome)
        announced += keys.values()
        await peer.send("keys", **keys)
    payloads = []
    for sender in peers:
        for recipient in peers:
            if sender is not recipient:
                payload = f"sealed-{secrets.token_hex(8)}"
                payloads.append(payload)
                await sender.send("key", to=recipient.participant_id, payload=payload)
                got = await receive_until(recipient.ws, "key")
                assert got == {"type": "key", "from": sender.participant_id, "payload": payload}
    await worker.offer(meeting.room_id, ana.participant_id, 1, "v=0 reneg")
    await receive_until(ana.ws, "offer")
    await ana.send("answer", negotiation=1, answer={"type": "answer", "sdp": "v=0 ok"})
    await worker.wait_for("answer")

    # Everything each client sent is behind these in its own connection's order.
    await ana.ws.close()
    await worker.wait_for("leave")
    await host.send("end")
    await worker.wait_for("close_room")

    assert {m["type"] for m in worker.received} == WORKER_ONLY_SEES
    for text in worker.raw:
        for secret_ish in (*payloads, *announced):
            assert secret_ish not in text


def bad_ticket(case: str, genuine: FakeWorker) -> str | None:
    """An intruder's ticket header (None: no header at all)."""
    if case == "wrong_secret":
        return make_worker_ticket(Secret("not the secret"), "intruder", time.time())[0]
    if case == "replayed":
        return genuine.ticket
    if case == "expired":
        return make_worker_ticket(RELAY_SECRET, "intruder", time.time() - 600)[0]
    if case == "malformed":
        return "v1.intruder"
    assert case == "missing"
    return None


@pytest.mark.parametrize("case", ["wrong_secret", "replayed", "expired", "malformed", "missing"])
async def test_a_worker_with_a_bad_ticket_is_refused(
    case: str,
    server: Running,
    worker: FakeWorker,
    http: aiohttp.ClientSession,
    stack: AsyncExitStack,
) -> None:
    ticket = bad_ticket(case, worker)
    headers = {} if ticket is None else {HEADER: ticket}
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await stack.enter_async_context(
            http.ws_connect(f"{server.base_url}/relay", headers=headers)
        )
    assert refused.value.status == 401
    assert pool_of(server).worker_ids() == [worker.worker_id]

    # The genuine worker still serves the rooms.
    meeting = await make_meeting(server, "ana")
    ana = await join(server, http, stack, meeting, "ana")
    await publish(ana, worker)
    assert pool_of(server).room_worker(meeting.room_id) == worker.worker_id


def _used(meeting: Meeting) -> tuple[str, str]:
    return meeting.cred("ana"), "already_used"


def _forged(meeting: Meeting) -> tuple[str, str]:
    return f"{meeting.invite_id('ben')}.{secrets.token_urlsafe(32)}", "bad_invite"


@pytest.mark.parametrize("bad", [_used, _forged], ids=["used_invite", "forged_invite"])
async def test_a_refused_hello_never_reaches_the_worker(
    bad: Any,
    server: Running,
    worker: FakeWorker,
    http: aiohttp.ClientSession,
    stack: AsyncExitStack,
) -> None:
    meeting = await make_meeting(server, "ana", "ben")
    ana = await join(server, http, stack, meeting, "ana")

    invite, code = bad(meeting)
    ws = await connect(server, http, stack)
    # The offer rides right behind the hello, as an eager client would send it.
    await ws.send_str(hello_invite(meeting.room_id, invite))
    await ws.send_str(json.dumps({"type": "publish", "offer": OFFER}))
    await expect_refused(ws, code)

    await publish(ana, worker)
    assert [m["participant"] for m in worker.of_type("join")] == [ana.participant_id]


@asynccontextmanager
async def two_workers(
    server: Running, names: tuple[str, str] = ("w-one", "w-two")
) -> AsyncIterator[tuple[FakeWorker, FakeWorker]]:
    """Two fake workers, both ready in the pool."""
    async with (
        fake_worker(server.base_url, RELAY_SECRET, names[0]) as one,
        fake_worker(server.base_url, RELAY_SECRET, names[1]) as two,
    ):
        assert await pool_of(server).wait_for_workers(2, within=10)
        yield one, two


async def test_rooms_go_to_the_least_loaded_worker_and_stay_there(
    server: Running, http: aiohttp.ClientSession, stack: AsyncExitStack
) -> None:
    async with two_workers(server) as (one, two):
        pool = pool_of(server)
        first, second = await make_meeting(server, "ana", "ben"), await make_meeting(server, "cy")
        ana = await join(server, http, stack, first, "ana")
        cy = await join(server, http, stack, second, "cy")
        await negotiate(ana)
        await negotiate(cy)
        assigned = {pool.room_worker(first.room_id), pool.room_worker(second.room_id)}
        assert assigned == {"w-one", "w-two"}, "two rooms on two idle workers must spread"
        # A later participant of a room goes where the room already is.
        ben = await join(server, http, stack, first, "ben")
        home = one if pool.room_worker(first.room_id) == "w-one" else two
        await ben.send("publish", offer=OFFER)
        await receive_until(ben.ws, "answer")
        joined = await home.wait_for("join", lambda m: m["participant"] == ben.participant_id)
        assert joined["room"] == first.room_id


async def negotiate(peer: Peer) -> None:
    await peer.send("publish", offer=OFFER)
    assert await receive_until(peer.ws, "answer") == {"type": "answer", "answer": FAKE_ANSWER}


async def test_a_worker_cannot_offer_for_a_room_it_does_not_serve(
    server: Running, http: aiohttp.ClientSession, stack: AsyncExitStack
) -> None:
    async with two_workers(server) as (one, two):
        pool = pool_of(server)
        meeting = await make_meeting(server, "ana")
        ana = await join(server, http, stack, meeting, "ana")
        await negotiate(ana)
        home, other = (one, two) if pool.room_worker(meeting.room_id) == "w-one" else (two, one)

        # The worker that does not carry ana's room tries to renegotiate ana's media.
        await other.offer(meeting.room_id, ana.participant_id, 1, "v=0 from the wrong worker")
        await home.offer(meeting.room_id, ana.participant_id, 1, "v=0 from the room's worker")
        offers = [m for m in await collect_until(ana.ws, "offer") if m["type"] == "offer"]
        assert [m["offer"]["sdp"] for m in offers] == ["v=0 from the room's worker"]
        assert not [m for m in await ana.ping() if m["type"] == "offer"]


@pytest.mark.parametrize("lie", ["-1000", "NaN"])
async def test_a_worker_that_reports_an_impossible_load_wins_no_rooms(
    lie: str,
    server: Running,
    http: aiohttp.ClientSession,
    stack: AsyncExitStack,
    no_secrets_in_logs: Any,
) -> None:
    async with two_workers(server, ("w-honest", "w-liar")) as (_, liar):
        pool = pool_of(server)
        # Believed, a negative load would make the liar the least loaded worker for ever.
        await liar.ws.send_str(f'{{"type": "load", "rooms": {lie}, "participants": {lie}}}')
        lines: list[str] = no_secrets_in_logs.lines
        async with asyncio.timeout(10):
            while not [line for line in lines if "w-liar sent a bad message" in line]:
                await asyncio.sleep(0.01)

        first, second = await make_meeting(server, "ana"), await make_meeting(server, "ben")
        for meeting, who in ((first, "ana"), (second, "ben")):
            await negotiate(await join(server, http, stack, meeting, who))
        assigned = {pool.room_worker(first.room_id), pool.room_worker(second.room_id)}
        assert assigned == {"w-honest", "w-liar"}
