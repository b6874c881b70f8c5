"""The signaling hub after admission: lobby, host controls, key routing, limits, media requests.

Everything runs against the real application on loopback, over real websockets, with the real
SQLite store. ``error`` closes the connection; ``warning`` refuses one request and keeps it open.
To show that a message did *not* reach someone, a test sends a later marker down the same ordered
path and checks everything received before the marker.
"""

from __future__ import annotations

import asyncio
import json
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
from tests.support.meeting import Peer, collect_until, entry_of, roster_ids
from tests.support.server import expect_closed, expect_refused, hello_resume, receive_json, serve
from tests.support.world import World, roster_of

CAP = 2
# The hub's field limits, pinned here rather than read back from the hub, so a change shows.
MAX_KEY_PAYLOAD = 16_384
MAX_SDP = 200_000
RATE, BURST = 5, 10
OFFER = {"type": "offer", "sdp": "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n"}


@pytest.fixture
async def world(tmp_path: Path, http: aiohttp.ClientSession, stack: AsyncExitStack) -> World:
    return World(await stack.enter_async_context(serve(tmp_path)), http, stack)


@pytest.fixture
async def capped(tmp_path: Path, http: aiohttp.ClientSession, stack: AsyncExitStack) -> World:
    env = {"CONCLAVE_SIGNALING_MAX_PARTICIPANTS": str(CAP)}
    return World(await stack.enter_async_context(serve(tmp_path, env=env)), http, stack)


@pytest.fixture
async def throttled(tmp_path: Path, http: aiohttp.ClientSession, stack: AsyncExitStack) -> World:
    env = {
        "CONCLAVE_SIGNALING_RATE_LIMIT": str(RATE),
        "CONCLAVE_SIGNALING_RATE_BURST": str(BURST),
    }
    return World(await stack.enter_async_context(serve(tmp_path, env=env)), http, stack)


# --- lobby ------------------------------------------------------------------------------------


async def test_a_lobby_guest_waits_unseen_and_the_host_is_told(world: World) -> None:
    await world.room("ana", "ben", lobby=True)
    host = await world.join("hana")
    assert host.welcome["admitted"] is True
    assert roster_ids(host.welcome) == [host.participant_id]

    ana = await world.lobby("ana")
    ben = await world.lobby("ben")

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
    assert world.present() == [host.participant_id]
    for guest in (ana, ben):
        assert not [m for m in await guest.ping() if m["type"] in ("roster", "lobby_waiting")]


async def test_the_host_is_never_put_in_the_lobby(world: World) -> None:
    await world.room("ana", lobby=True)
    host = await world.join("hana")
    assert host.welcome["role"] == "host"
    assert host.welcome["admitted"] is True
    assert not [m for m in await host.ping() if m["type"] == "lobby"]

    await host.ws.close()
    again = await world.resume(host.resume_token)
    assert again.welcome["admitted"] is True
    assert roster_ids(again.welcome) == [host.participant_id]
    assert not [m for m in await again.ping() if m["type"] == "lobby"]


async def test_a_guest_in_the_lobby_can_only_wait(world: World) -> None:
    await world.room("ana", lobby=True)
    host = await world.join("hana")
    ana = await world.lobby("ana")

    attempts: list[dict[str, Any]] = [
        {"type": "publish", "offer": OFFER},
        {"type": "key", "to": host.participant_id, "payload": "ciphertext-from-the-lobby"},
        {"type": "keys", **announced_keys(ana.welcome)},
    ]
    for attempt in attempts:
        await ana.ws.send_str(json.dumps(attempt))
        await ana.warned("in_lobby")

    # Nothing got through: no key reached the host, no keys entered a roster.
    for message in await host.ping():
        assert message["type"] != "key"
        if message["type"] == "roster":
            assert roster_ids(message) == [host.participant_id]
    # Nor were the lobby's keys kept for later: once admitted, ana has announced none.
    admitted = await world.admit(host, ana)
    assert "keys" not in entry_of(admitted, ana.participant_id)


async def admissions_on_record(world: World) -> list[str]:
    """Whom the audit log says the host let out of the lobby, in order."""
    audit = await world.server.app.store.audit_log(world.meeting.room_id)
    return [e.detail["participant"] for e in audit if e.event == "participant_admitted"]


async def ana_let_in_and_ben_waiting(world: World) -> tuple[Peer, Peer, Peer]:
    """A lobby room: the host, Ana whom the host let in, Ben still waiting."""
    await world.room("ana", "ben", lobby=True)
    host = await world.join("hana")
    ana = await world.lobby("ana")
    await world.admit(host, ana)
    ben = await world.lobby("ben")
    return host, ana, ben


async def test_only_the_host_can_admit(world: World) -> None:
    _, ana, ben = await ana_let_in_and_ben_waiting(world)

    await ana.send("admit", participant=ben.participant_id)
    await ana.warned("not_host")

    assert not [m for m in await ben.ping() if m["type"] == "admitted"]
    assert ben.participant_id not in world.present()
    assert await admissions_on_record(world) == [ana.participant_id]


async def test_the_host_admits_a_guest_into_everyones_roster(world: World) -> None:
    host, ana, ben = await ana_let_in_and_ben_waiting(world)
    await host.until("lobby_waiting", lambda m: len(m["waiting"]) == 1)

    await host.send("admit", participant=ben.participant_id)
    everyone = [host.participant_id, ana.participant_id, ben.participant_id]
    admitted = await ben.until("admitted")
    assert roster_ids(admitted) == everyone
    for peer in (host, ana, ben):
        assert roster_ids(await peer.until("roster", roster_of(3))) == everyone
    assert (await host.until("lobby_waiting"))["waiting"] == []

    # Admitted means admitted: the session messages a lobby guest may not send now work.
    keys = announced_keys(ben.welcome)
    await ben.send("keys", **keys)
    with_keys = await host.until("roster", lambda m: "keys" in entry_of(m, ben.participant_id))
    assert entry_of(with_keys, ben.participant_id)["keys"] == keys


async def test_an_admission_is_on_record_like_a_kick(world: World) -> None:
    """Who let whom in, and when: the host's chat identity admitted that participant."""
    await world.room("ana", lobby=True)
    host = await world.join("hana")
    ana = await world.lobby("ana")
    await world.admit(host, ana)

    assert await admissions_on_record(world) == [ana.participant_id]
    audit = await world.server.app.store.audit_log(world.meeting.room_id)
    (admission,) = [e for e in audit if e.event == "participant_admitted"]
    host_user = world.meeting.host
    assert admission.actor == f"{host_user.platform}:{host_user.workspace}:{host_user.user_id}"
    assert admission.at == world.server.clock.now()


@pytest.mark.parametrize("target", ["unknown", "already_admitted"])
async def test_admitting_someone_who_is_not_waiting_is_refused(target: str, world: World) -> None:
    await world.room("ana", lobby=True)
    host = await world.join("hana")
    who = {"unknown": "pNoSuchPerson", "already_admitted": host.participant_id}[target]
    await host.send("admit", participant=who)
    await host.warned("not_waiting")
    assert await admissions_on_record(world) == []


async def test_an_admitted_guest_who_resumes_skips_the_lobby(world: World) -> None:
    await world.room("ana", lobby=True)
    host = await world.join("hana")
    ana = await world.lobby("ana")
    await world.admit(host, ana)
    await host.until("lobby_waiting", lambda m: m["waiting"] == [])

    await ana.ws.close()
    await host.until("roster", roster_of(1))
    again = await world.resume(ana.resume_token)
    assert again.participant_id == ana.participant_id
    assert again.welcome["admitted"] is True
    assert roster_ids(again.welcome) == [host.participant_id, ana.participant_id]
    assert not [m for m in await again.ping() if m["type"] == "lobby"]

    seen_by_host = await collect_until(host.ws, "roster", roster_of(2)) + await host.ping()
    assert not [m for m in seen_by_host if m["type"] == "lobby_waiting" and m["waiting"]]


async def test_a_guest_who_leaves_the_lobby_drops_off_the_waiting_list(world: World) -> None:
    await world.room("ana", lobby=True)
    host = await world.join("hana")
    ana = await world.lobby("ana")
    await host.until("lobby_waiting", lambda m: len(m["waiting"]) == 1)

    # Waiting and dropping does not count as admitted: a resume waits again.
    await ana.ws.close()
    await host.until("lobby_waiting", lambda m: m["waiting"] == [])
    again = await world.resume(ana.resume_token)
    assert again.participant_id == ana.participant_id
    assert again.welcome["admitted"] is False
    assert (await again.until("lobby"))["type"] == "lobby"
    waiting = await host.until("lobby_waiting", lambda m: len(m["waiting"]) == 1)
    assert waiting["waiting"][0]["participant_id"] == ana.participant_id


async def test_a_host_who_connects_after_a_guest_is_told_who_is_waiting(world: World) -> None:
    await world.room("ana", lobby=True)
    ana = await world.lobby("ana")
    host = await world.join("hana")

    # Without being told, the host cannot let the guest in: the guest would wait forever.
    seen = await host.ping()
    waiting = [m for m in seen if m["type"] == "lobby_waiting"]
    assert waiting, f"the host was never told that Ana is waiting; it received {seen}"
    assert waiting[-1]["waiting"] == [{"participant_id": ana.participant_id, "name": "Ana"}]


# --- host controls ----------------------------------------------------------------------------


async def test_the_host_locks_and_unlocks_over_the_websocket(world: World) -> None:
    meeting = await world.room("ana", "ben")
    host, ana = await world.join_all("hana", "ana")

    await host.send("lock")
    for peer in (host, ana):
        assert await peer.until("room") == {"type": "room", "locked": True}
    room = await world.server.app.store.get_room(meeting.room_id)
    assert room is not None and room.state is RoomState.LOCKED
    assert "room_locked" in await world.audit()

    assert await world.refused(world.hello("ben"), "room_locked") == CLOSE_REFUSED
    await world.assert_unspent("ben")

    await host.send("unlock")
    for peer in (host, ana):
        assert await peer.until("room") == {"type": "room", "locked": False}
    ben = await world.join("ben")
    assert ben.welcome["room"]["state"] == "open"
    assert "room_unlocked" in await world.audit()


@pytest.mark.parametrize("control", ["lock", "unlock", "end", "kick"])
async def test_a_guest_cannot_use_host_controls(control: str, world: World) -> None:
    meeting = await world.room("ana", "ben")
    host, ana, ben = await world.join_all("hana", "ana", "ben")
    store = world.server.app.store
    if control == "unlock":  # something to unlock
        await world.server.app.service.lock(meeting.host, meeting.room_id)
    audit_before = await world.audit()
    before = await store.get_room(meeting.room_id)
    assert before is not None

    fields = {"participant": ben.participant_id} if control == "kick" else {}
    await ana.send(control, **fields)
    await ana.warned("not_host")

    room = await store.get_room(meeting.room_id)
    assert room is not None and room.state is before.state
    assert await world.audit() == audit_before
    for peer in (host, ben):
        seen = await peer.ping()
        assert not [m for m in seen if m["type"] in ("ended", "kicked")]
        assert not [m for m in seen if m["type"] == "room" and m["locked"] != (control == "unlock")]
    sessions = await store.participants_for_room(meeting.room_id)
    assert len(sessions) == 3
    assert all(p.state is ParticipantState.ACTIVE for p in sessions)
    assert len(world.present()) == 3


async def test_the_host_kicks_a_guest_for_good(world: World) -> None:
    meeting = await world.room("ana", "ben")
    host, ana, ben = await world.join_all("hana", "ana", "ben")
    await ana.until("roster", roster_of(3))

    await host.send("kick", participant=ana.participant_id)
    kicked = await ana.until("kicked")
    assert isinstance(kicked["message"], str) and kicked["message"]
    assert await expect_closed(ana.ws) == CLOSE_KICKED

    for peer in (host, ben):
        await peer.until("roster", roster_of(3))
        left = await peer.until("roster")
        assert roster_ids(left) == [host.participant_id, ben.participant_id]

    store = world.server.app.store
    sessions = {p.id: p for p in await store.participants_for_room(meeting.room_id)}
    assert sessions[ana.participant_id].state is ParticipantState.REVOKED
    assert sessions[ben.participant_id].state is ParticipantState.ACTIVE
    audit = await store.audit_log(meeting.room_id)
    assert [e.detail.get("participant") for e in audit if e.event == "participant_kicked"] == [
        ana.participant_id
    ]

    assert await world.refused(hello_resume(ana.resume_token), "bad_resume") == CLOSE_REFUSED
    await ben.ping()


@pytest.mark.parametrize("target", ["self", "unknown", "other_room", "already_kicked"])
async def test_a_kick_that_cannot_apply_is_a_warning(target: str, world: World) -> None:
    elsewhere = await world.room("cy")
    cy = await world.join("cy")
    await world.room("ana")
    host, ana = await world.join_all("hana", "ana")
    if target == "already_kicked":
        await host.send("kick", participant=ana.participant_id)
        await ana.until("kicked")
    kicks_before = (await world.audit()).count("participant_kicked")
    who = {
        "self": host.participant_id,
        "unknown": "pNoSuchPerson",
        "other_room": cy.participant_id,
        "already_kicked": ana.participant_id,
    }[target]

    await host.send("kick", participant=who)
    await host.warned("bad_command")

    assert (await world.audit()).count("participant_kicked") == kicks_before
    assert "participant_kicked" not in await world.audit(elsewhere)
    assert not [m for m in await cy.ping() if m["type"] == "kicked"]
    assert host.participant_id in world.present()


async def test_the_host_ends_the_meeting_over_the_websocket(world: World) -> None:
    meeting = await world.room("ana", "ben")
    host, ana = await world.join_all("hana", "ana")

    await host.send("end")
    for peer in (host, ana):
        assert await peer.until("ended") == {"type": "ended", "reason": "ended by host"}
        assert await expect_closed(peer.ws) == CLOSE_ENDED

    store = world.server.app.store
    room = await store.get_room(meeting.room_id)
    assert room is not None and room.state is RoomState.ENDED
    assert "room_ended" in await world.audit()
    stored = await store.get_invite(meeting.invite_id("ben"))
    assert stored is not None and stored.state is InviteState.REVOKED
    await world.refused(world.hello("ben"), "revoked")
    assert world.present() == []


# --- public keys and key routing -------------------------------------------------------------


async def test_announced_keys_are_in_everyones_roster(world: World) -> None:
    await world.room("ana", "ben", "cy")
    ana, ben = await world.join_all("ana", "ben")
    keys = announced_keys(ana.welcome)

    await ana.send("keys", **keys)
    for peer in (ana, ben):
        update = await peer.until("roster", lambda m: "keys" in entry_of(m, ana.participant_id))
        assert entry_of(update, ana.participant_id)["keys"] == keys
        assert "keys" not in entry_of(update, ben.participant_id)

    cy = await world.join("cy")
    assert entry_of(cy.welcome, ana.participant_id)["keys"] == keys


async def test_keys_cannot_be_announced_twice(world: World) -> None:
    await world.room("ana", "ben")
    ana, ben = await world.join_all("ana", "ben")
    first = announced_keys(ana.welcome)
    second = announced_keys(ana.welcome)

    await ana.send("keys", **first)
    await ben.until("roster", lambda m: "keys" in entry_of(m, ana.participant_id))
    await ana.send("keys", **second)
    await ana.warned("keys_fixed")

    hub_roster = {"roster": world.server.app.hub.roster(world.meeting.room_id)}
    assert entry_of(hub_roster, ana.participant_id)["keys"] == first
    for message in await ben.ping():
        if message["type"] == "roster":
            assert entry_of(message, ana.participant_id)["keys"] == first


async def test_a_key_message_reaches_only_its_recipient(world: World) -> None:
    await world.room("ana", "ben", "cy")
    ana, ben, cy = await world.join_all("ana", "ben", "cy")
    # The largest payload allowed, passed through untouched.
    payload = ("sealed-for-ben:" * MAX_KEY_PAYLOAD)[:MAX_KEY_PAYLOAD]

    await ana.send("key", to=ben.participant_id, payload=payload)
    got = await ben.until("key")
    assert got == {"type": "key", "from": ana.participant_id, "payload": payload}

    # Sent after the first by the same connection: anything cy got of the first comes before.
    await ana.send("key", to=cy.participant_id, payload="marker-for-cy")
    seen_by_cy = await collect_until(cy.ws, "key")
    assert seen_by_cy[-1] == {"type": "key", "from": ana.participant_id, "payload": "marker-for-cy"}
    assert not [m for m in seen_by_cy if "sealed-for-ben" in json.dumps(m)]
    assert not [m for m in await ana.ping() if m["type"] == "key"]
    assert not [m for m in await ben.ping() if m["type"] == "key"]


@pytest.mark.parametrize("target", ["self", "unknown", "waiting_in_lobby", "departed"])
async def test_an_undeliverable_key_message_is_a_warning(target: str, world: World) -> None:
    await world.room("ana", "ben", lobby=True)
    host = await world.join("hana")
    ben = await world.lobby("ben")
    ana = await world.lobby("ana")
    await world.admit(host, ana)
    if target == "departed":
        await ana.ws.close()
        await host.until("roster", roster_of(1))
    who = {
        "self": host.participant_id,
        "unknown": "pNoSuchPerson",
        "waiting_in_lobby": ben.participant_id,
        "departed": ana.participant_id,
    }[target]

    await host.send("key", to=who, payload="sealed-for-nobody")
    await host.warned("undeliverable")
    assert not [m for m in await ben.ping() if m["type"] == "key"]


async def two_in_a_room(world: World) -> tuple[Peer, Peer]:
    """Ben, then Ana, in a room of their own; Ana has seen Ben."""
    await world.room("ana", "ben")
    ben, ana = await world.join_all("ben", "ana")
    await ana.until("roster", roster_of(2))
    return ana, ben


async def cut_off_alone(sender: Peer, other: Peer, code: str) -> None:
    """``sender`` is refused with ``code`` and closed as a protocol breach; ``other`` sees it
    leave, received no key message meanwhile, and is still served."""
    _, close_code = await expect_refused(sender.ws, code)
    assert close_code == CLOSE_PROTOCOL
    seen = await collect_until(other.ws, "roster", roster_of(1))
    assert not [m for m in seen if m["type"] == "key"]
    await other.ping()


async def test_a_key_payload_over_the_limit_is_a_protocol_error(world: World) -> None:
    ana, ben = await two_in_a_room(world)

    await ana.send("key", to=ben.participant_id, payload="x" * (MAX_KEY_PAYLOAD + 1))
    # Well under the 64 KiB envelope limit: this is the key message's own field limit.
    await cut_off_alone(ana, ben, "bad_message")


async def test_an_oversized_message_in_a_meeting_closes_only_its_connection(world: World) -> None:
    ana, ben = await two_in_a_room(world)

    message = json.dumps(
        {"type": "key", "to": ben.participant_id, "payload": "y" * MAX_MESSAGE_BYTES}
    )
    assert len(message.encode()) > MAX_MESSAGE_BYTES
    await ana.ws.send_str(message)
    await cut_off_alone(ana, ben, "too_large")


# --- limits -----------------------------------------------------------------------------------


async def test_a_full_room_refuses_without_spending_the_invite(capped: World) -> None:
    world = capped
    await world.room("ana", "ben")
    host, ana = await world.join_all("hana", "ana")

    assert await world.refused(world.hello("ben"), "room_full") == CLOSE_REFUSED
    await world.assert_unspent("ben")
    await host.ping()
    await ana.ping()

    await ana.ws.close()
    await host.until("roster", roster_of(1))
    ben = await world.join("ben")
    assert roster_ids(ben.welcome) == [host.participant_id, ben.participant_id]


async def test_hellos_arriving_together_cannot_overfill_the_room(capped: World) -> None:
    world = capped
    await world.room("ana", "ben")
    host = await world.join("hana")

    ana_ws = await world.connect()
    ben_ws = await world.connect()
    await ana_ws.send_str(world.hello("ana"))
    await ben_ws.send_str(world.hello("ben"))
    answers = await asyncio.gather(receive_json(ana_ws), receive_json(ben_ws))

    kinds = sorted((a["type"], a.get("code")) for a in answers)
    assert kinds == [("error", "room_full"), ("welcome", None)], kinds
    await host.ping()
    assert len(world.present()) == CAP
    # And the one turned away keeps an invite that still works.
    await world.assert_unspent("ana" if answers[0]["type"] == "error" else "ben")


async def test_a_flooding_connection_is_cut_off_alone(throttled: World) -> None:
    world = throttled
    await world.room("ana", "ben")
    ben, ana = await world.join_all("ben", "ana")

    for _ in range(50):
        await ana.send("ping")
    seen = await collect_until(ana.ws, "error", timeout=20)
    assert seen[-1]["code"] == "rate_limited"
    assert len([m for m in seen if m["type"] == "pong"]) < 50
    assert await expect_closed(ana.ws) == CLOSE_RATE

    left = await ben.until("roster", roster_of(1))
    assert roster_ids(left) == [ben.participant_id]
    await ben.ping()
    # ben's connection still carries roster updates: ana, back with a fresh connection.
    again = await world.resume(ana.resume_token)
    assert roster_ids(await ben.until("roster", roster_of(2))) == [
        ben.participant_id,
        again.participant_id,
    ]


# --- media requests without a relay --------------------------------------------------------


async def test_publish_without_a_relay_is_a_warning(world: World) -> None:
    await world.room("ana")
    ana = await world.join("ana")

    await ana.send("publish", offer=OFFER)
    await ana.warned("relay_unavailable")
    # Refused, not half-done: the next attempt is refused the same way, not "already published".
    biggest = {"type": "offer", "sdp": "v" * MAX_SDP}
    await ana.send("publish", offer=biggest)
    await ana.warned("relay_unavailable")
    await ana.send("answer", negotiation=1, answer={"type": "answer", "sdp": "v=0"})
    await ana.warned("no_negotiation")
    # An answer as long as a meeting of some 80 needs passes the 64 KiB every other message
    # has (bot/signaling/envelope.py SDP_CARRIERS); it is heard, and found stale.
    await ana.send("answer", negotiation=1, answer={"type": "answer", "sdp": "v" * MAX_SDP})
    await ana.warned("no_negotiation")


MALFORMED_OFFERS: dict[str, dict[str, Any]] = {
    "missing_offer": {},
    "missing_sdp": {"offer": {"type": "offer"}},
    "wrong_type": {"offer": {"type": "answer", "sdp": "v=0"}},
    "sdp_not_text": {"offer": {"type": "offer", "sdp": 0}},
    "offer_not_object": {"offer": "v=0"},
    "sdp_over_limit": {"offer": {"type": "offer", "sdp": "v" * (MAX_SDP + 1)}},
}


@pytest.mark.parametrize("case", sorted(MALFORMED_OFFERS))
async def test_a_malformed_offer_is_a_protocol_error(case: str, world: World) -> None:
    ana, ben = await two_in_a_room(world)

    await ana.send("publish", **MALFORMED_OFFERS[case])
    await cut_off_alone(ana, ben, "bad_message")
