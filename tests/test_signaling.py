"""The signaling websocket, against the real application listening on loopback.

Every refusal is an ``error`` naming its code, then the server closing the connection; every
refusal leaves the invite unspent and the rest of the room undisturbed.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import pytest

from bot.core.models import InviteState
from bot.signaling.envelope import MAX_MESSAGE_BYTES
from bot.signaling.hub import CLOSE_ENDED, CLOSE_PROTOCOL, CLOSE_REFUSED, WIRE_LIMIT
from tests.support.meeting import Meeting, Peer, roster_ids
from tests.support.server import (
    expect_closed,
    expect_refused,
    hello_invite,
    hello_resume,
    receive_json,
    serve,
)
from tests.support.world import World, roster_of

HELLO_TIMEOUT = 1
INVITE_TTL_SECONDS = 3600  # shorter than the room's default day, so invites expire first


@pytest.fixture
async def world(tmp_path: Path, http: aiohttp.ClientSession, stack: AsyncExitStack) -> World:
    env = {
        "CONCLAVE_SIGNALING_HELLO_TIMEOUT": str(HELLO_TIMEOUT),
        "CONCLAVE_MEETINGS_INVITE_TTL": f"{INVITE_TTL_SECONDS}s",
    }
    return World(await stack.enter_async_context(serve(tmp_path, env=env)), http, stack)


# --- admission --------------------------------------------------------------------------------


async def test_hello_with_a_valid_invite_is_welcomed(world: World) -> None:
    meeting = await world.room("ana", topic="Weekly sync")
    ana = await world.join("ana")

    w = ana.welcome
    assert w["participant_id"].startswith("p")
    assert w["name"] == "Ana"
    assert w["role"] == "guest"
    assert w["sender_index"] == 1
    assert w["room"] == {
        "id": meeting.room_id,
        "topic": "Weekly sync",
        "state": "open",
        "lobby": False,
    }
    assert roster_ids(w) == [w["participant_id"]]
    assert w["roster"][0]["name"] == "Ana"
    participant_id, dot, secret = w["resume_token"].partition(".")
    assert participant_id == w["participant_id"] and dot and len(secret) >= 43

    # The redemption is on record: one session, the invite spent.
    store = world.server.app.store
    stored = await store.get_invite(meeting.invite_id("ana"))
    assert stored is not None and stored.state is InviteState.REDEEMED
    (participant,) = await store.participants_for_room(meeting.room_id)
    assert participant.id == w["participant_id"]
    assert participant.invite_id == meeting.invite_id("ana")


async def test_the_host_invite_joins_as_host(world: World) -> None:
    await world.room("ana")
    host = await world.join("hana")
    assert host.welcome["role"] == "host"
    assert host.welcome["roster"][0]["role"] == "host"


async def test_ping_is_answered_with_pong(world: World) -> None:
    await world.room("ana")
    ana = await world.join("ana")
    await ana.until("roster")  # the join's own broadcast
    await ana.ws.send_str(json.dumps({"type": "ping"}))
    assert await receive_json(ana.ws) == {"type": "pong"}


async def test_each_participant_sees_the_others_join_and_leave(world: World) -> None:
    await world.room("ana", "ben")
    ana, ben = await world.join_all("ana", "ben")

    both = [ana.participant_id, ben.participant_id]
    assert roster_ids(ben.welcome) == both
    seen_by_ana = await ana.until("roster", roster_of(2))
    assert roster_ids(seen_by_ana) == both
    assert [e["name"] for e in seen_by_ana["roster"]] == ["Ana", "Ben"]
    assert [e["sender_index"] for e in seen_by_ana["roster"]] == [1, 2]

    # A third joins: both who were there hear of it.
    host = await world.join("hana")
    all_three = [*both, host.participant_id]
    for peer in (ana, ben):
        update = await peer.until("roster", roster_of(3))
        assert roster_ids(update) == all_three

    # One says bye: the other two hear of it.
    await ana.ws.send_str(json.dumps({"type": "bye"}))
    await expect_closed(ana.ws, skip_text=True)
    for peer in (ben, host):
        update = await peer.until("roster", roster_of(2))
        assert roster_ids(update) == [ben.participant_id, host.participant_id]

    # A dropped connection (no bye) is noticed too.
    await host.ws.close()
    gone = await ben.until("roster", roster_of(1))
    assert roster_ids(gone) == [ben.participant_id]
    assert world.present() == [ben.participant_id]


# --- refusals before admission ----------------------------------------------------------------

Frame = str | bytes
BadHello = Callable[[Meeting], tuple[Frame, str]]


def _pad_over_limit(m: Meeting) -> tuple[Frame, str]:
    message = {"type": "hello", "version": 2, "room": m.room_id, "invite": m.cred("ana")}
    message["pad"] = "x" * (MAX_MESSAGE_BYTES + 1024)
    return json.dumps(message), "too_large"


def _forged_secret(m: Meeting) -> tuple[Frame, str]:
    forged = f"{m.invite_id('ana')}.{secrets.token_urlsafe(32)}"
    return hello_invite(m.room_id, forged), "bad_invite"


BAD_HELLOS: dict[str, BadHello] = {
    "not_json": lambda m: ("this is not json {", "bad_message"),
    "json_array": lambda m: (json.dumps(["hello", m.room_id, m.cred("ana")]), "bad_message"),
    "json_number": lambda m: ("42", "bad_message"),
    "missing_type": lambda m: (
        json.dumps({"room": m.room_id, "invite": m.cred("ana")}),
        "bad_message",
    ),
    "type_not_a_string": lambda m: (
        json.dumps({"type": 7, "room": m.room_id, "invite": m.cred("ana")}),
        "bad_message",
    ),
    "unknown_type_before_admission": lambda m: (json.dumps({"type": "ping"}), "unknown_type"),
    "binary_frame": lambda m: (hello_invite(m.room_id, m.cred("ana")).encode(), "bad_message"),
    "over_64_kib": _pad_over_limit,
    "no_version": lambda m: (
        json.dumps({"type": "hello", "room": m.room_id, "invite": m.cred("ana")}),
        "unsupported_version",
    ),
    "version_1": lambda m: (
        json.dumps({"type": "hello", "version": 1, "room": m.room_id, "invite": m.cred("ana")}),
        "unsupported_version",
    ),
    "version_true": lambda m: (
        json.dumps({"type": "hello", "version": True, "room": m.room_id, "invite": m.cred("ana")}),
        "unsupported_version",
    ),
    "missing_room": lambda m: (
        json.dumps({"type": "hello", "version": 2, "invite": m.cred("ana")}),
        "bad_message",
    ),
    "unknown_room": lambda m: (
        hello_invite("NoSuchRoom0000000000aa", m.cred("ana")),
        "unknown_room",
    ),
    "malformed_invite": lambda m: (hello_invite(m.room_id, "not-an-invite"), "bad_invite"),
    "invite_without_secret": lambda m: (hello_invite(m.room_id, m.invite_id("ana")), "bad_invite"),
    "forged_secret": _forged_secret,
}
PROTOCOL_ERRORS = {"bad_message", "unknown_type", "too_large", "unsupported_version"}


@pytest.mark.parametrize("case", sorted(BAD_HELLOS))
async def test_a_bad_hello_is_refused_and_changes_nothing(case: str, world: World) -> None:
    meeting = await world.room("ana", "ben")
    ben = await world.join("ben")

    frame, code = BAD_HELLOS[case](meeting)
    ws = await world.connect()
    await send_frame(ws, frame)
    error, close_code = await expect_refused(ws, code)
    assert close_code == (CLOSE_PROTOCOL if code in PROTOCOL_ERRORS else CLOSE_REFUSED)
    assert meeting.cred("ana").partition(".")[2] not in json.dumps(error)  # never echoed

    await ben.ping()
    await world.assert_unspent("ana")
    # Unspent means usable: the real invitee still gets in with the same link.
    ana = await world.join("ana")
    assert ana.welcome["name"] == "Ana"


async def test_an_invite_for_another_room_is_a_bad_invite(world: World) -> None:
    room_a = await world.room("ana")
    room_b = await world.room("ben")
    ben = await world.join("ben")

    close_code = await world.refused(hello_invite(room_b.room_id, room_a.cred("ana")), "bad_invite")
    assert close_code == CLOSE_REFUSED

    await ben.ping()
    await world.assert_unspent("ana", room_a)
    participants = await world.server.app.store.participants_for_room(room_b.room_id)
    assert [p.invite_id for p in participants] == [room_b.invite_id("ben")]


async def test_a_used_invite_is_refused_as_already_used(world: World) -> None:
    meeting = await world.room("ana", "ben")
    ana = await world.join("ana")

    await world.refused(world.hello("ana"), "already_used")

    await ana.ping()
    participants = await world.server.app.store.participants_for_room(meeting.room_id)
    assert [p.id for p in participants] == [ana.participant_id]
    assert (await world.audit()).count("invite_redeemed") == 1


async def test_an_expired_invite_is_refused(world: World) -> None:
    await world.room("ana", "ben")
    ben = await world.join("ben")

    world.server.clock.advance(INVITE_TTL_SECONDS + 1)  # past the invite, within the room's day
    assert await world.refused(world.hello("ana"), "expired") == CLOSE_REFUSED

    await ben.ping()
    await world.assert_unspent("ana")


async def test_an_invite_one_second_before_expiry_still_works(world: World) -> None:
    await world.room("ana")
    world.server.clock.advance(INVITE_TTL_SECONDS - 1)
    ana = await world.join("ana")
    assert ana.welcome["name"] == "Ana"


async def test_invites_of_an_ended_room_are_revoked(world: World) -> None:
    elsewhere = await world.room("ben")
    ben = await world.join("ben", elsewhere)
    meeting = await world.room("ana")

    await world.server.app.service.end(meeting.host, meeting.room_id)
    assert await world.refused(world.hello("ana"), "revoked") == CLOSE_REFUSED

    await ben.ping()
    store = world.server.app.store
    stored = await store.get_invite(meeting.invite_id("ana"))
    assert stored is not None and stored.state is InviteState.REVOKED
    assert await store.participants_for_room(meeting.room_id) == []


async def test_a_locked_room_admits_nobody_new(world: World) -> None:
    meeting = await world.room("ana")
    host = await world.join("hana")

    await world.server.app.service.lock(meeting.host, meeting.room_id)
    assert await host.until("room") == {"type": "room", "locked": True}

    assert await world.refused(world.hello("ana"), "room_locked") == CLOSE_REFUSED

    await host.ping()
    await world.assert_unspent("ana")

    # Unlocking lets the same invite in.
    await world.server.app.service.unlock(meeting.host, meeting.room_id)
    ana = await world.join("ana")
    assert ana.welcome["room"]["state"] == "open"


async def test_no_hello_in_time_is_refused(world: World) -> None:
    await world.room("ana")
    ana = await world.join("ana")

    silent = await world.connect()
    _, close_code = await expect_refused(silent, "bad_message", timeout=HELLO_TIMEOUT + 10)
    assert close_code == CLOSE_PROTOCOL
    await ana.ping()


async def test_a_frame_over_the_wire_limit_is_dropped_by_aiohttp(world: World) -> None:
    meeting = await world.room("ana", "ben")
    ben = await world.join("ben")

    ws = await world.connect()
    message = {
        "type": "hello",
        "version": 2,
        "room": meeting.room_id,
        "invite": meeting.cred("ana"),
    }
    message["pad"] = "x" * (WIRE_LIMIT + 1024)
    await ws.send_str(json.dumps(message))
    close_code = await expect_closed(ws)
    assert close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG  # 1009

    await ben.ping()
    await world.assert_unspent("ana")


# --- refusals after admission -----------------------------------------------------------------

BadMessage = tuple[Frame, str]
BAD_SESSION_MESSAGES: dict[str, BadMessage] = {
    "not_json": ("{{{", "bad_message"),
    "json_array": ("[]", "bad_message"),
    "json_null": ("null", "bad_message"),
    "missing_type": (json.dumps({"kind": "ping"}), "bad_message"),
    "empty_type": (json.dumps({"type": ""}), "bad_message"),
    "unknown_type": (json.dumps({"type": "frobnicate"}), "unknown_type"),
    "hello_again": (json.dumps({"type": "hello", "resume": "x.y"}), "unknown_type"),
    "binary_frame": (b'{"type": "ping"}', "bad_message"),
    "over_64_kib": (json.dumps({"type": "ping", "pad": "x" * MAX_MESSAGE_BYTES}), "too_large"),
}


async def ben_sees_ana(world: World) -> tuple[Peer, Peer]:
    """Ben, then Ana, in a room of their own; each has seen both in the roster."""
    await world.room("ana", "ben")
    ben, ana = await world.join_all("ben", "ana")
    await ben.until("roster", roster_of(2))
    await ana.until("roster", roster_of(2))
    return ana, ben


async def sees_leave_alone(ben: Peer) -> None:
    """Ben sees Ana leave, and is still served."""
    left = await ben.until("roster", roster_of(1))
    assert roster_ids(left) == [ben.participant_id]
    await ben.ping()


@pytest.mark.parametrize("case", sorted(BAD_SESSION_MESSAGES))
async def test_a_bad_message_after_admission_closes_only_that_connection(
    case: str, world: World
) -> None:
    ana, ben = await ben_sees_ana(world)

    frame, code = BAD_SESSION_MESSAGES[case]
    await send_frame(ana.ws, frame)
    _, close_code = await expect_refused(ana.ws, code)
    assert close_code == CLOSE_PROTOCOL
    await sees_leave_alone(ben)


async def test_a_frame_over_the_wire_limit_after_admission_closes_with_1009(world: World) -> None:
    await world.room("ana", "ben")
    ben, ana = await world.join_all("ben", "ana")

    await ana.ws.send_str(json.dumps({"type": "ping", "pad": "x" * (WIRE_LIMIT + 1)}))
    # Anything queued before the close (roster broadcasts) may come first.
    close_code = await expect_closed(ana.ws, skip_text=True)
    assert close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG  # 1009
    await sees_leave_alone(ben)


# --- resume -----------------------------------------------------------------------------------


async def test_resume_after_a_drop_keeps_the_participant_id(world: World) -> None:
    meeting = await world.room("ana", "ben")
    ben, ana = await world.join_all("ben", "ana")
    token = ana.welcome["resume_token"]

    await ana.ws.close()  # the drop
    await ben.until("roster", roster_of(1))

    again = (await world.resume(token)).welcome
    assert again["type"] == "welcome"
    assert again["participant_id"] == ana.participant_id
    assert again["sender_index"] == ana.welcome["sender_index"]
    assert again["name"] == "Ana"
    assert again["room"]["id"] == meeting.room_id
    assert set(roster_ids(again)) == {ana.participant_id, ben.participant_id}
    back = await ben.until("roster", roster_of(2))
    assert ana.participant_id in roster_ids(back)

    # Resuming redeems nothing: still one session per invite.
    participants = await world.server.app.store.participants_for_room(meeting.room_id)
    assert sorted(p.id for p in participants) == sorted([ana.participant_id, ben.participant_id])


async def test_a_resume_replaces_a_connection_still_open(world: World) -> None:
    await world.room("ana")
    ana = await world.join("ana")

    again = (await world.resume(ana.welcome["resume_token"])).welcome
    assert again["participant_id"] == ana.participant_id

    replaced = await ana.until("error")
    assert replaced["code"] == "replaced"
    await expect_closed(ana.ws)
    assert roster_ids(again) == [ana.participant_id]  # once, not twice


async def refused_resume(world: World, token: str) -> int:
    """A resume with ``token`` gets ``room_ended`` or ``bad_resume``; the close code."""
    ws = await world.connect()
    await ws.send_str(hello_resume(token))
    message = await receive_json(ws)
    assert message["type"] == "error"
    assert message["code"] in ("room_ended", "bad_resume")
    return await expect_closed(ws)


async def test_resume_after_the_room_ends_is_refused(world: World) -> None:
    meeting = await world.room("ana")
    ana = await world.join("ana")
    token = ana.welcome["resume_token"]
    await ana.ws.close()

    await world.server.app.service.end(meeting.host, meeting.room_id)
    assert await refused_resume(world, token) == CLOSE_REFUSED


async def test_resume_after_the_room_expires_is_refused(world: World) -> None:
    await world.room("ana")
    ana = await world.join("ana")
    token = ana.welcome["resume_token"]
    await ana.ws.close()

    world.server.clock.advance(world.server.app.settings.meetings.default_ttl + 1)
    await refused_resume(world, token)


@pytest.mark.parametrize("shape", ["forged_secret", "unknown_participant", "malformed"])
async def test_a_forged_resume_token_is_refused(shape: str, world: World) -> None:
    await world.room("ana", "ben")
    ana, ben = await world.join_all("ana", "ben")
    token = {
        "forged_secret": f"{ana.participant_id}.{secrets.token_urlsafe(32)}",
        "unknown_participant": f"pNoSuchPerson.{secrets.token_urlsafe(32)}",
        "malformed": "not-a-token",
    }[shape]

    assert await world.refused(hello_resume(token), "bad_resume") == CLOSE_REFUSED

    # The real ana was not displaced by the attempt.
    await ana.ping()
    await ben.ping()
    assert set(world.present()) == {ana.participant_id, ben.participant_id}


# --- ending -----------------------------------------------------------------------------------


async def test_ending_the_room_tells_everyone_and_closes_them(world: World) -> None:
    other = await world.room("cy")
    cy = await world.join("cy")
    meeting = await world.room("ana", "ben")
    ana, ben = await world.join_all("ana", "ben")

    await world.server.app.service.end(meeting.host, meeting.room_id)
    for peer in (ana, ben):
        ended = await peer.until("ended")
        assert ended == {"type": "ended", "reason": "ended by host"}
        assert await expect_closed(peer.ws) == CLOSE_ENDED

    assert world.present() == []
    await cy.ping()  # another room is untouched
    assert [e["participant_id"] for e in world.server.app.hub.roster(other.room_id)] == [
        cy.participant_id
    ]


async def send_frame(ws: aiohttp.ClientWebSocketResponse, frame: Frame) -> None:
    if isinstance(frame, bytes):
        await ws.send_bytes(frame)
    else:
        await ws.send_str(frame)
