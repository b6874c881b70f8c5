"""The signaling hub after admission: lobby, host controls, key routing, limits, media requests.

Everything runs against the real application on loopback, over real websockets, with the real
SQLite store. ``error`` closes the connection; ``warning`` refuses one request and keeps it open.
To show that a message did *not* reach someone, a test sends a later marker down the same ordered
path and checks everything received before the marker.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.core.models import InviteState, ParticipantState, RoomState
from bot.signaling.envelope import MAX_MESSAGE_BYTES
from bot.signaling.hub import (
    CLOSE_ENDED,
    CLOSE_KICKED,
    CLOSE_PROTOCOL,
    CLOSE_RATE,
    CLOSE_REFUSED,
)
from tests.support.keys import announced_keys
from tests.support.meeting import (
    Meeting,
    Peer,
    assert_unspent,
    audit_events,
    collect_until,
    connect,
    entry_of,
    join,
    make_meeting,
    refused,
    roster_ids,
)
from tests.support.server import (
    Running,
    expect_closed,
    expect_refused,
    hello_invite,
    hello_resume,
    receive_json,
    receive_until,
    serve,
)

CAP = 2
# The hub's field limits, pinned here rather than read back from the hub, so a change shows.
MAX_KEY_PAYLOAD = 16_384
MAX_SDP = 60_000
RATE, BURST = 5, 10
OFFER = {"type": "offer", "sdp": "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n"}


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Running]:
    async with serve(tmp_path) as running:
        yield running


@pytest.fixture
async def capped_server(tmp_path: Path) -> AsyncIterator[Running]:
    async with serve(tmp_path, env={"CONCLAVE_SIGNALING_MAX_PARTICIPANTS": str(CAP)}) as running:
        yield running


@pytest.fixture
async def throttled_server(tmp_path: Path) -> AsyncIterator[Running]:
    env = {
        "CONCLAVE_SIGNALING_RATE_LIMIT": str(RATE),
        "CONCLAVE_SIGNALING_RATE_BURST": str(BURST),
    }
    async with serve(tmp_path, env=env) as running:
        yield running


def roster_of(n: int) -> Callable[[dict[str, Any]], bool]:
    return lambda m: len(m["roster"]) == n


async def expect_warning(peer: Peer, code: str) -> dict[str, Any]:
    """The next warning names ``code``; the connection stays open (a ping is still answered)."""
    warning = await receive_until(peer.ws, "warning")
    assert warning["code"] == code, warning
    assert isinstance(warning["message"], str) and warning["message"]
    await peer.ping()
    return warning


async def resume(
    server: Running, http: aiohttp.ClientSession, stack: AsyncExitStack, token: str
) -> Peer:
    ws = await connect(server, http, stack)
    await ws.send_str(hello_resume(token))
    welcome = await receive_json(ws)
    assert welcome["type"] == "welcome", welcome
    return Peer(ws, welcome)


# --- lobby ------------------------------------------------------------------------------------


async def enter_lobby(
    server: Running,
    http: aiohttp.ClientSession,
    stack: AsyncExitStack,
    meeting: Meeting,
    who: str,
) -> Peer:
    """Join a lobby room as a guest: welcomed unadmitted, with an empty roster, then ``lobby``."""
    peer = await join(server, http, stack, meeting, who)
    assert peer.welcome["admitted"] is False
    assert peer.welcome["roster"] == []
    assert peer.welcome["room"]["lobby"] is True
    lobby = await receive_json(peer.ws)
    assert lobby["type"] == "lobby", lobby
    return peer


async def test_a_lobby_guest_waits_unseen_and_the_host_is_told(
    server: Running, http: aiohttp.ClientSession, stack: AsyncExitStack
) -> None:
    meeting = await make_meeting(server, "ana", "ben", lobby=True)
    host = await join(server, http, stack, meeting, "hana")
    assert host.welcome["admitted"] is True
    assert roster_ids(host.welcome) == [host.participant_id]

    ana = await enter_lobby(server, http, stack, meeting, "ana")
    ben = await enter_lobby(server, http, stack, meeting, "ben")

    told = await collect_until(
        host.ws, "lobby_waiting", lambda m: len(m["waiting"]) == 2, timeout=10
    )
    assert told[-1]["waiting"] == [
        {"participant_id": ana.participant_id, "name": "Ana"},
        {"participant_id": ben.participant_id, "name": "Ben"},
    ]
    seen_by_host = told + await host.ping()
    # Nobody waiting shows up in a roster: not the host's, not the other guest's.
    for message in seen_by_host:
        if message["type"] == "roster":
            assert roster_ids(message) == [host.participant_id]
    assert [e["participant_id"] for e in server.app.hub.roster(meeting.room_id)] == [
        host.participant_id
    ]
    for guest in (ana, ben):
        assert not [m for m in await guest.ping() if m["type"] in ("roster", "lobby_waiting")]


async def test_the_host_is_never_put_in_the_lobby(
    server: Running, http: aiohttp.ClientSession, stack: AsyncExitStack
) -> None:
    meeting = await make_meeting(server, "ana", lobby=True)
    host = await join(server, http, stack, meeting, "hana")
    assert host.welcome["role"] == "host"
    assert host.welcome["admitted"] is True
    assert not [m for m in await host.ping() if m["type"] == "lobby"]

    await host.ws.close()
    again = await resume(server, http, stack, host.resume_token)
    assert again.welcome["admitted"] is True
    assert roster_ids(again.welcome) == [host.participant_id]
    assert not [m for m in await again.ping() if m["type"] == "lobby"]


async def test_a_guest_in_the_lobby_can_only_wait(
    server: Running, http: aiohttp.ClientSession, stack: AsyncExitStack
) -> None:
    meeting = await make_meeting(server, "ana", lobby=True)
    host = await join(server, http, stack, meeting, "hana")
    ana = await enter_lobby(server, http, stack, meeting, "ana")

    attempts: list[dict[str, Any]] = [
        {"type": "publish", "offer": OFFER},
        {"type": "key", "to": host.participant_id, "payload": "ciphertext-from-the-lobby"},
        {"type": "keys", **announced_keys(ana.welcome)},
    ]
    for attempt in attempts:
        await ana.ws.send_str(json.dumps(attempt))
        await expect_warning(ana, "in_lobby")

    # Nothing got through: no key reached the host, no keys entered a roster.
    for message in await host.ping():
        assert message["type"] != "key"
        if message["type"] == "roster":
            assert roster_ids(message) == [host.participant_id]
    # Nor were the lobby's keys kept for later: once admitted, ana has announced none.
    await host.send("admit", participant=ana.participant_id)
    admitted = await receive_until(ana.ws, "admitted")
    assert "keys" not in entry_of(admitted, ana.participant_id)


async def test_only_the_host_can_admit(
    server: Running, http: aiohttp.ClientSession, stack: AsyncExitStack
) -> None:
    meeting = await make_meeting(server, "ana", "ben", lobby=True)
    host = await join(server, http, stack, meeting, "hana")
    ana = await enter_lobby(server, http, stack, meeting, "ana")
    await host.send("admit", participant=ana.participant_id)
    await receive_until(ana.ws, "admitted")
    ben = await enter_lobby(server, http, stack, meeting, "ben")

    await ana.send("admit", participant=ben.participant_id)
    await expect_warning(ana, "not_host")

    assert not [m for m in await ben.ping() if m["type"] == "admitted"]
    present = [e["participant_id"] for e in server.app.hub.roster(meeting.room_id)]
    assert ben.participant_id not in present


async def test_the_host_admits_a_guest_into_everyones_roster(
    server: Running, http: aiohttp.ClientSession, stack: AsyncExitStack
) -> None:
    meeting = await make_meeting(server, "ana", "ben", lobby=True)
    host = await join(server, http, stack, meeting, "hana")
    ana = await enter_lobby(server, http, stack, meeting, "ana")
    await host.send("admit", participant=ana.participant_id)
    await receive_until(ana.ws, "admitted")
    ben = await enter_lobby(server, http, stack, meeting, "ben")
    await receive_until(host.ws, "lobby_waiting", lambda m: len(m["waiting"]) == 1)

    await host.send("admit", participant=ben.participant_id)
    everyone = [host.participant_id, ana.participant_id, ben.participant_id]
    admitted = await receive_until(ben.ws, "admitted")
    assert roster_ids(admitted) == everyone
    for peer in (host, ana, ben):
        assert roster_ids(await receive_until(peer.ws, "roster", roster_of(3))) == everyone
    assert (await receive_until(host.ws, "lobby_waiting"))["waiting"] == []

    # Admitted means admitted: the session messages a lobby guest may not send now work.
    keys = announced_keys(ben.welcome)
    await ben.send("keys", **keys)
    with_keys = await receive_until(
        host.ws, "roster", lambda m: "keys" in entry_of(m, ben.participant_id)
    )
    assert entry_of(with_keys, ben.participant_id)["keys"] == keys


@pytest.mark.parametrize("target", ["unknown", "already_admitted"])
async def test_admitting_someone_who_is_not_waiting_is_refused(
    target: str, server: Running, http: aiohttp.ClientSession, stack: AsyncExitStack
) -> None:
    meeting = await make_meeting(server, "ana", lobby=True)
    host = await join(server, http, stack, meeting, "hana")
    who = {"unknown": "pNoSuchPerson", "already_admitted": host.participant_id}[target]
    await host.send("admit", participant=who)
    await expect_warning(host, "not_waiting")


async def test_an_admitted_guest_who_resumes_skips_the_lobby(
    server: Running, http: aiohttp.ClientSession, stack: AsyncExitStack
) -> None:
    meeting = await make_meeting(server, "ana", lobby=True)
    host = await join(server, http, stack, meeting, "hana")
    ana = await enter_lobby(server, http, stack, meeting, "ana")
    await host.send("admit", participant=ana.participant_id)
    await receive_until(ana.ws, "admitted")
    await receive_until(host.ws, "lobby_waiting", lambda m: m["waiting"] == [])

    await ana.ws.close()
    await receive_until(host.ws, "roster", roster_of(1))
    again = await resume(server, http, stack, ana.resume_token)
    assert again.participant_id == ana.participant_id
    assert again.welcome["admitted"] is True
    assert roster_ids(again.welcome) == [host.participant_id, ana.participant_id]
    assert not [m for m in await again.ping() if m["type"] == "lobby"]

    seen_by_host = await collect_until(host.ws, "roster", roster_of(2)) + await host.ping()
    assert not [m for m in seen_by_host if m["type"] == "lobby_waiting" and m["waiting"]]


async def test_a_guest_who_leaves_the_lobby_drops_off_the_waiting_list(
    server: Running, http: aiohttp.ClientSession, stack: AsyncExitStack
) -> None:
    meeting = await make_meeting(server, "ana", lobby=True)
    host = await join(server, http, stack, meeting, "hana")
    ana = await enter_lobby(server, http, stack, meeting, "ana")
    await receive_until(host.ws, "lobby_waiting", lambda m: len(m["waiting"]) == 1)

    # Waiting and dropping does not count as admitted: a resume waits again.
    await ana.ws.close()
    await receive_until(host.ws, "lobby_waiting", lambda m: m["waiting"] == [])
    ws = await connect(server, http, stack)
    await ws.send_str(hello_resume(ana.resume_token))
    welcome = await receive_json(ws)
    assert welcome["participant_id"] == ana.participant_id
    assert welcome["admitted"] is False
    assert (await receive_json(ws))["type"] == "lobby"
    waiting = await receive_until(host.ws, "lobby_waiting", lambda m: len(m["waiting"]) == 1)
    assert waiting["waiting"][0]["participant_id"] == ana.participant_id


async def test_a_host_who_connects_after_a_guest_is_told_who_is_waiting(
    server: Running, http: aiohttp.ClientSession, stack: AsyncExitStack
) -> None:
    meeting = await make_meeting(server, "ana", lobby=True)
    ana = await enter_lobby(server, http, stack, meeting, "ana")
    host = await join(server, http, stack, meeting, "hana")

    # Without being told, the host cannot let the guest in: the guest would wait forever.
    seen = await host.ping()
    waiting = [m for m in seen if m["type"] == "lobby_waiting"]
    assert waiting, f"the host was never told that Ana is waiting; it received {seen}"
    assert waiting[-1]["waiting"] == [{"participant_id": ana.participant_id, "name": "Ana"}]


# --- host controls ----------------------------------------------------------------------------


async def test_the_host_locks_and_unlocks_over_the_websocket(
    server: Running, http: aiohttp.ClientSession, stack: AsyncExitStack
) -> None:
    meeting = await make_meeting(server, "ana", "ben")
    host = await join(server, http, stack, meeting, "hana")
    ana = await join(server, http, stack, meeting, "ana")

    await host.send("lock")
    for peer in (host, ana):
        assert await receive_until(peer.ws, "room") == {"type": "room", "locked": True}
    room = await server.app.store.get_room(meeting.room_id)
    assert room is not None and room.state is RoomState.LOCKED
    assert "room_locked" in await audit_events(server, meeting.room_id)

    close_code = await refused(
        server, http, stack, hello_invite(meeting.room_id, meeting.cred("ben")), "room_locked"
    )
    assert close_code == CLOSE_REFUSED
    await assert_unspent(server, meeting, "ben")

    await host.send("unlock")
    for peer in (host, ana):
        assert await receive_until(peer.ws, "room") == {"type": "room", "locked": False}
    ben = await join(server, http, stack, meeting, "ben")
    assert ben.welcome["room"]["state"] == "open"
    assert "room_unlocked" in await audit_events(server, meeting.room_id)


@pytest.mark.parametrize("control", ["lock", "unlock", "end", "kick"])
async def test_a_guest_cannot_use_host_controls(
    control: str, server: Running, http: aiohttp.ClientSession, stack: AsyncExitStack
) -> None:
    meeting = await make_meeting(server, "ana", "ben")
    host = await join(server, http, stack, meeting, "hana")
    ana = await join(server, http, stack, meeting, "ana")
    ben = await join(server, http, stack, meeting, "ben")
    audit_before = await audit_events(server, meeting.room_id)
    if control == "unlock":  # something to unlock
        await server.app.service.lock(meeting.host, meeting.room_id)
        audit_before = await audit_events(server, meeting.room_id)
    before = await server.app.store.get_room(meeting.room_id)
    assert before is not None

    fields = {"participant": ben.participant_id} if control == "kick" else {}
    await ana.send(control, **fields)
    await expect_warning(ana, "not_host")

    room = await server.app.store.get_room(meeting.room_id)
    assert room is not None and room.state is before.state
    assert await audit_events(server, meeting.room_id) == audit_before
    for peer in (host, ben):
        seen = await peer.ping()
        assert not [m for m in seen if m["type"] in ("ended", "kicked")]
        assert not [m for m in seen if m["type"] == "room" and m["locked"] != (control == "unlock")]
    sessions = await server.app.store.participants_for_room(meeting.room_id)
    assert len(sessions) == 3
    assert all(p.state is ParticipantState.ACTIVE for p in sessions)
    assert len(server.app.hub.roster(meeting.room_id)) == 3


async def test_the_host_kicks_a_guest_for_good(
    server: Running, http: aiohttp.ClientSession, stack: AsyncExitStack
) -> None:
    meeting = await make_meeting(server, "ana", "ben")
    host = await join(server, http, stack, meeting, "hana")
    ana = await join(server, http, stack, meeting, "ana")
    ben = await join(server, http, stack, meeting, "ben")
    await receive_until(ana.ws, "roster", roster_of(3))

    await host.send("kick", participant=ana.participant_id)
    kicked = await receive_until(ana.ws, "kicked")
    assert isinstance(kicked["message"], str) and kicked["message"]
    assert await expect_closed(ana.ws) == CLOSE_KICKED

    for peer in (host, ben):
        await receive_until(peer.ws, "roster", roster_of(3))
        left = await receive_until(peer.ws, "roster")
        assert roster_ids(left) == [host.participant_id, ben.participant_id]

    sessions = {p.id: p for p in await server.app.store.participants_for_room(meeting.room_id)}
    assert sessions[ana.participant_id].state is ParticipantState.REVOKED
    assert sessions[ben.participant_id].state is ParticipantState.ACTIVE
    audit = await server.app.store.audit_log(meeting.room_id)
    assert [e.detail.get("participant") for e in audit if e.event == "participant_kicked"] == [
        ana.participant_id
    ]

    close_code = await refused(server, http, stack, hello_resume(ana.resume_token), "bad_resume")
    assert close_code == CLOSE_REFUSED
    await ben.ping()


@pytest.mark.parametrize("target", ["self", "unknown", "other_room", "already_kicked"])
async def test_a_kick_that_cannot_apply_is_a_warning(
    target: str, server: Running, http: aiohttp.ClientSession, stack: AsyncExitStack
) -> None:
    meeting = await make_meeting(server, "ana")
    elsewhere = await make_meeting(server, "cy")
    host = await join(server, http, stack, meeting, "hana")
    ana = await join(server, http, stack, meeting, "ana")
    cy = await join(server, http, stack, elsewhere, "cy")
    if target == "already_kicked":
        await host.send("kick", participant=ana.participant_id)
        await receive_until(ana.ws, "kicked")
    kicks_before = (await audit_events(server, meeting.room_id)).count("participant_kicked")
    who = {
        "self": host.participant_id,
        "unknown": "pNoSuchPerson",
        "other_room": cy.participant_id,
        "already_kicked": ana.participant_id,
    }[target]

    await host.send("kick", participant=who)
    await expect_warning(host, "bad_command")

    after = await audit_events(server, meeting.room_id)
    assert after.count("participant_kicked") == kicks_before
    assert "participant_kicked" not in await audit_events(server, elsewhere.room_id)
    assert not [m for m in await cy.ping() if m["type"] == "kicked"]
    assert host.participant_id in roster_ids({"roster": server.app.hub.roster(meeting.room_id)})


async def test_the_host_ends_the_meeting_over_the_websocket(
    server: Running, http: aiohttp.ClientSession, stack: AsyncExitStack
) -> None:
    meeting = await make_meeting(server, "ana", "ben")
    host = await join(server, http, stack, meeting, "hana")
    ana = await join(server, http, stack, meeting, "ana")

    await host.send("end")
    for peer in (host, ana):
        assert await receive_until(peer.ws, "ended") == {"type": "ended", "reason": "ended by host"}
        assert await expect_closed(peer.ws) == CLOSE_ENDED

    room = await server.app.store.get_room(meeting.room_id)
    assert room is not None and room.state is RoomState.ENDED
    assert "room_ended" in await audit_events(server, meeting.room_id)
    stored = await server.app.store.get_invite(meeting.invite_id("ben"))
    assert stored is not None and stored.state is InviteState.REVOKED
    await refused(
        server, http, stack, hello_invite(meeting.room_id, meeting.cred("ben")), "revoked"
    )
    assert server.app.hub.roster(meeting.room_id) == []


# --- public keys and key routing -------------------------------------------------------------


async def test_announced_keys_are_in_everyones_roster(
    server: Running, http: aiohttp.ClientSession, stack: AsyncExitStack
) -> None:
    meeting = await make_meeting(server, "ana", "ben", "cy")
    ana = await join(server, http, stack, meeting, "ana")
    ben = await join(server, http, stack, meeting, "ben")
    keys = announced_keys(ana.welcome)

    await ana.send("keys", **keys)
    for peer in (ana, ben):
        update = await receive_until(
            peer.ws, "roster", lambda m: "keys" in entry_of(m, ana.participant_id)
        )
        assert entry_of(update, ana.participant_id)["keys"] == keys
        assert "keys" not in entry_of(update, ben.participant_id)

    cy = await join(server, http, stack, meeting, "cy")
    assert entry_of(cy.welcome, ana.participant_id)["keys"] == keys


async def test_keys_cannot_be_announced_twice(
    server: Running, http: aiohttp.ClientSession, stack: AsyncExitStack
) -> None:
    meeting = await make_meeting(server, "ana", "ben")
    ana = await join(server, http, stack, meeting, "ana")
    ben = await join(server, http, stack, meeting, "ben")
    first = announced_keys(ana.welcome)
    second = announced_keys(ana.welcome)

    await ana.send("keys", **first)
    await receive_until(ben.ws, "roster", lambda m: "keys" in entry_of(m, ana.participant_id))
    await ana.send("keys", **second)
    await expect_warning(ana, "keys_fixed")

    assert (
        entry_of({"roster": server.app.hub.roster(meeting.room_id)}, ana.participant_id)["keys"]
        == first
    )
    for message in await ben.ping():
        if message["type"] == "roster":
            assert entry_of(message, ana.participant_id)["keys"] == first


async def test_a_key_message_reaches_only_its_recipient(
    server: Running, http: aiohttp.ClientSession, stack: AsyncExitStack
) -> None:
    meeting = await make_meeting(server, "ana", "ben", "cy")
    ana = await join(server, http, stack, meeting, "ana")
    ben = await join(server, http, stack, meeting, "ben")
    cy = await join(server, http, stack, meeting, "cy")
    # The largest payload allowed, passed through untouched.
    payload = ("sealed-for-ben:" * MAX_KEY_PAYLOAD)[:MAX_KEY_PAYLOAD]

    await ana.send("key", to=ben.participant_id, payload=payload)
    got = await receive_until(ben.ws, "key")
    assert got == {"type": "key", "from": ana.participant_id, "payload": payload}

    # Sent after the first by the same connection: anything cy got of the first comes before.
    await ana.send("key", to=cy.participant_id, payload="marker-for-cy")
    seen_by_cy = await collect_until(cy.ws, "key")
    assert seen_by_cy[-1] == {"type": "key", "from": ana.participant_id, "payload": "marker-for-cy"}
    assert not [m for m in seen_by_cy if "sealed-for-ben" in json.dumps(m)]
    assert not [m for m in await ana.ping() if m["type"] == "key"]
    assert not [m for m in await ben.ping() if m["type"] == "key"]


@pytest.mark.parametrize("target", ["self", "unknown", "waiting_in_lobby", "departed"])
async def test_an_undeliverable_key_message_is_a_warning(
    target: str, server: Running, http: aiohttp.ClientSession, stack: AsyncExitStack
) -> None:
    meeting = await make_meeting(server, "ana", "ben", lobby=True)
    host = await join(server, http, stack, meeting, "hana")
    ben = await enter_lobby(server, http, stack, meeting, "ben")
    ana = await enter_lobby(server, http, stack, meeting, "ana")
    await host.send("admit", participant=ana.participant_id)
    await receive_until(ana.ws, "admitted")
    if target == "departed":
        await ana.ws.close()
        await receive_until(host.ws, "roster", roster_of(1))
    who = {
        "self": host.participant_id,
        "unknown": "pNoSuchPerson",
        "waiting_in_lobby": ben.participant_id,
        "departed": ana.participant_id,
    }[target]

    await host.send("key", to=who, payload="sealed-for-nobody")
    await expect_warning(host, "undeliverable")
    assert not [m for m in await ben.ping() if m["type"] == "key"]


async def test_a_key_payload_over_the_limit_is_a_protocol_error(
    server: Running, http: aiohttp.ClientSession, stack: AsyncExitStack
) -> None:
    meeting = await make_meeting(server, "ana", "ben")
    ben = await join(server, http, stack, meeting, "ben")
    ana = await join(server, http, stack, meeting, "ana")
    await receive_until(ana.ws, "roster", roster_of(2))

    await ana.send("key", to=ben.participant_id, payload="x" * (MAX_KEY_PAYLOAD + 1))
    # Well under the 64 KiB envelope limit: this is the key message's own field limit.
    _, close_code = await expect_refused(ana.ws, "bad_message")
    assert close_code == CLOSE_PROTOCOL

    seen = await collect_until(ben.ws, "roster", roster_of(1))
    assert not [m for m in seen if m["type"] == "key"]
    await ben.ping()


async def test_an_oversized_message_in_a_meeting_closes_only_its_connection(
    server: Running, http: aiohttp.ClientSession, stack: AsyncExitStack
) -> None:
    meeting = await make_meeting(server, "ana", "ben")
    ben = await join(server, http, stack, meeting, "ben")
    ana = await join(server, http, stack, meeting, "ana")
    await receive_until(ana.ws, "roster", roster_of(2))

    message = json.dumps(
        {"type": "key", "to": ben.participant_id, "payload": "y" * MAX_MESSAGE_BYTES}
    )
    assert len(message.encode()) > MAX_MESSAGE_BYTES
    await ana.ws.send_str(message)
    _, close_code = await expect_refused(ana.ws, "too_large")
    assert close_code == CLOSE_PROTOCOL

    seen = await collect_until(ben.ws, "roster", roster_of(1))
    assert not [m for m in seen if m["type"] == "key"]
    await ben.ping()


# --- limits -----------------------------------------------------------------------------------


async def test_a_full_room_refuses_without_spending_the_invite(
    capped_server: Running, http: aiohttp.ClientSession, stack: AsyncExitStack
) -> None:
    server = capped_server
    meeting = await make_meeting(server, "ana", "ben")
    host = await join(server, http, stack, meeting, "hana")
    ana = await join(server, http, stack, meeting, "ana")

    close_code = await refused(
        server, http, stack, hello_invite(meeting.room_id, meeting.cred("ben")), "room_full"
    )
    assert close_code == CLOSE_REFUSED
    await assert_unspent(server, meeting, "ben")
    await host.ping()
    await ana.ping()

    await ana.ws.close()
    await receive_until(host.ws, "roster", roster_of(1))
    ben = await join(server, http, stack, meeting, "ben")
    assert roster_ids(ben.welcome) == [host.participant_id, ben.participant_id]


async def test_hellos_arriving_together_cannot_overfill_the_room(
    capped_server: Running, http: aiohttp.ClientSession, stack: AsyncExitStack
) -> None:
    server = capped_server
    meeting = await make_meeting(server, "ana", "ben")
    host = await join(server, http, stack, meeting, "hana")

    ana_ws = await connect(server, http, stack)
    ben_ws = await connect(server, http, stack)
    await ana_ws.send_str(hello_invite(meeting.room_id, meeting.cred("ana")))
    await ben_ws.send_str(hello_invite(meeting.room_id, meeting.cred("ben")))
    answers = await asyncio.gather(receive_json(ana_ws), receive_json(ben_ws))

    kinds = sorted((a["type"], a.get("code")) for a in answers)
    assert kinds == [("error", "room_full"), ("welcome", None)], kinds
    await host.ping()
    assert len(server.app.hub.roster(meeting.room_id)) == CAP
    # And the one turned away keeps an invite that still works.
    refused = "ana" if answers[0]["type"] == "error" else "ben"
    await assert_unspent(server, meeting, refused)


async def test_a_flooding_connection_is_cut_off_alone(
    throttled_server: Running, http: aiohttp.ClientSession, stack: AsyncExitStack
) -> None:
    server = throttled_server
    meeting = await make_meeting(server, "ana", "ben")
    ben = await join(server, http, stack, meeting, "ben")
    ana = await join(server, http, stack, meeting, "ana")

    for _ in range(50):
        await ana.send("ping")
    seen = await collect_until(ana.ws, "error", timeout=20)
    assert seen[-1]["code"] == "rate_limited"
    assert len([m for m in seen if m["type"] == "pong"]) < 50
    assert await expect_closed(ana.ws) == CLOSE_RATE

    left = await receive_until(ben.ws, "roster", roster_of(1))
    assert roster_ids(left) == [ben.participant_id]
    await ben.ping()
    # ben's connection still carries roster updates: ana, back with a fresh connection.
    again = await resume(server, http, stack, ana.resume_token)
    assert roster_ids(await receive_until(ben.ws, "roster", roster_of(2))) == [
        ben.participant_id,
        again.participant_id,
    ]


# --- media requests without a relay --------------------------------------------------------


async def test_publish_without_a_relay_is_a_warning(
    server: Running, http: aiohttp.ClientSession, stack: AsyncExitStack
) -> None:
    meeting = await make_meeting(server, "ana")
    ana = await join(server, http, stack, meeting, "ana")

    await ana.send("publish", offer=OFFER)
    await expect_warning(ana, "relay_unavailable")
    # Refused, not half-done: the next attempt is refused the same way, not "already published".
    biggest = {"type": "offer", "sdp": "v" * MAX_SDP}
    await ana.send("publish", offer=biggest)
    await expect_warning(ana, "relay_unavailable")
    await ana.send("answer", negotiation=1, answer={"type": "answer", "sdp": "v=0"})
    await expect_warning(ana, "no_negotiation")


MALFORMED_OFFERS: dict[str, dict[str, Any]] = {
    "missing_offer": {},
    "missing_sdp": {"offer": {"type": "offer"}},
    "wrong_type": {"offer": {"type": "answer", "sdp": "v=0"}},
    "sdp_not_text": {"offer": {"type": "offer", "sdp": 0}},
    "offer_not_object": {"offer": "v=0"},
    "sdp_over_limit": {"offer": {"type": "offer", "sdp": "v" * (MAX_SDP + 1)}},
}


@pytest.mark.parametrize("case", sorted(MALFORMED_OFFERS))
async def test_a_malformed_offer_is_a_protocol_error(
    case: str, server: Running, http: aiohttp.ClientSession, stack: AsyncExitStack
) -> None:
    meeting = await make_meeting(server, "ana", "ben")
    ben = await join(server, http, stack, meeting, "ben")
    ana = await join(server, http, stack, meeting, "ana")
    await receive_until(ana.ws, "roster", roster_of(2))

    await ana.send("publish", **MALFORMED_OFFERS[case])
    _, close_code = await expect_refused(ana.ws, "bad_message")
    assert close_code == CLOSE_PROTOCOL
    await receive_until(ben.ws, "roster", roster_of(1))
    await ben.ping()
