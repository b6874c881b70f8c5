"""The hub checks a key announcement the way every client will (docs/PROTOCOL.md 4.2): signed
by the announced Ed25519 key for this connection's room, participant id and sender index. A
connection that announces anything else, or keys that do not parse as clients parse them, is
closed and its keys reach no roster."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.client.session import ClientSession
from bot.core.links import parse_link
from bot.e2ee.identity import MeetingKeys
from bot.signaling.hub import CLOSE_PROTOCOL
from tests.support.keys import announced_keys
from tests.support.meeting import Peer, collect_until, entry_of
from tests.support.server import expect_refused, hello_resume, receive_until, serve
from tests.support.world import World, roster_of


@pytest.fixture
async def world(tmp_path: Path, http: aiohttp.ClientSession, stack: AsyncExitStack) -> World:
    return World(await stack.enter_async_context(serve(tmp_path)), http, stack)


async def ben_then_ana(world: World) -> tuple[Peer, Peer]:
    """Ana and Ben in a room, Ben first."""
    await world.room("ana", "ben")
    ben, ana = await world.join_all("ben", "ana")
    return ana, ben


def with_keys_of(peer: Peer) -> Callable[[dict[str, Any]], bool]:
    """Matches a roster whose entry for ``peer`` carries keys."""
    return lambda m: any(
        e["participant_id"] == peer.participant_id and "keys" in e for e in m["roster"]
    )


def signed_for(peer: Peer, **signed: Any) -> dict[str, str]:
    return announced_keys(peer.welcome, **signed)


Case = Callable[[Peer, Peer], dict[str, Any]]


def with_keys(**keys: object) -> Case:
    """Malformed keys, with a well-formed signature: the keys alone are what is wrong."""
    return lambda ana, ben: {"signature": signed_for(ana)["signature"], **keys}


CASES: dict[str, Case] = {
    # Keys that do not parse as clients parse them.
    "too_short": with_keys(x25519="A" * 42, ed25519="B" * 43),
    "too_long": with_keys(x25519="A" * 43, ed25519="B" * 44),
    "padded": with_keys(x25519="A" * 42 + "=", ed25519="B" * 43),
    "standard_base64": with_keys(x25519="A+/" + "A" * 40, ed25519="B" * 43),
    "missing_ed25519": with_keys(x25519="A" * 43),
    "not_text": with_keys(x25519=7, ed25519="B" * 43),
    # 43 characters carry 258 bits; clients refuse a key whose last 2 bits are not zero.
    "non_canonical": with_keys(x25519="A" * 42 + "B", ed25519="A" * 43),
    # Keys signed for something other than this connection, or not signed.
    "another_room": lambda ana, ben: signed_for(ana, room="another-room"),
    "another_participant": lambda ana, ben: signed_for(ana, participant=ben.participant_id),
    "another_index": lambda ana, ben: signed_for(ana, index=int(ben.welcome["sender_index"])),
    "someone_elses_signature": lambda ana, ben: {
        **signed_for(ana),
        "signature": signed_for(ben)["signature"],
    },
    "no_signature": lambda ana, ben: {k: v for k, v in signed_for(ana).items() if k != "signature"},
    "short_signature": lambda ana, ben: {
        **signed_for(ana),
        "signature": signed_for(ana)["signature"][:-4],
    },
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_keys_not_signed_for_this_connection_or_malformed_are_refused(
    case: str, world: World
) -> None:
    ana, ben = await ben_then_ana(world)
    await ana.until("roster", roster_of(2))

    await ana.send("keys", **CASES[case](ana, ben))
    _, close_code = await expect_refused(ana.ws, "bad_message")
    assert close_code == CLOSE_PROTOCOL

    seen = await collect_until(ben.ws, "roster", roster_of(1))
    assert not [m for m in seen for e in m.get("roster", []) if "keys" in e]


async def test_a_signed_announcement_reaches_the_roster_with_its_signature(world: World) -> None:
    ana, ben = await ben_then_ana(world)
    keys: dict[str, Any] = announced_keys(ana.welcome)
    await ana.send("keys", **keys)
    update = await ben.until("roster", with_keys_of(ana))
    assert entry_of(update, ana.participant_id)["keys"] == keys
    assert set(keys) == {"x25519", "ed25519", "signature"}


# --- a participant's keys across its resumes ----------------------------------------------------


async def resume(world: World, peer: Peer) -> Peer:
    """Resume ``peer``'s session on a new connection while its old one is still open."""
    ws = await world.connect()
    await ws.send_str(hello_resume(peer.resume_token))
    welcome = await receive_until(ws, "welcome")
    return Peer(ws, welcome)


async def test_a_resumed_connection_shows_the_keys_announced_before(world: World) -> None:
    ana, ben = await ben_then_ana(world)
    keys = announced_keys(ana.welcome)
    await ana.send("keys", **keys)
    await ben.until("roster", with_keys_of(ana))

    again = await resume(world, ana)
    # No moment without keys (which would make every code pending): the roster the resume
    # sends already carries them...
    roster = await ben.until("roster", roster_of(2))
    assert entry_of(roster, ana.participant_id)["keys"] == keys
    # ...and announcing them again on the new connection is accepted, once.
    await again.send("keys", **keys)
    await again.send("keys", **keys)
    warning = await again.until("warning")
    assert warning["code"] == "keys_fixed"


async def test_new_keys_after_a_resume_show_as_a_leave_and_a_return(world: World) -> None:
    """A participant that resumes (its old connection still open, so no leave) and announces
    new keys. Honest clients take new keys for a known id as the server swapping them and
    leave, so the hub must show the participant leave first. Ben is a real client."""
    meeting = await world.room("ana", "ben")
    lines: list[str] = []
    ben = ClientSession(parse_link(meeting.invites["ben"].link.reveal()), lines.append)
    running = asyncio.ensure_future(ben.run(None))
    try:
        ana = await world.join("ana")
        await ana.send("keys", **announced_keys(ana.welcome))
        await until(lambda: any(CODE.fullmatch(line) for line in lines), "a code at ben's")
        first = [line for line in lines if CODE.fullmatch(line)][-1]

        again = await resume(world, ana)
        await again.send("keys", **announced_keys(again.welcome, MeetingKeys.generate()))
        await until(
            lambda: any(CODE.fullmatch(line) and line != first for line in lines),
            "a new code at ben's",
        )
        assert not running.done() and ben.ended is None, lines
        assert not any("tampering" in line for line in lines)
        # People are told to compare again, not left to spot a changed number.
        assert "the security code changed: compare it with the others again" in lines
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


CODE = re.compile(r"security code: \d{5}( \d{5}){5}")


async def test_a_kicked_participants_keys_are_not_kept(world: World) -> None:
    """The hub keeps announcements for resumes; a kicked session never resumes, so its keys
    go with it (the soak run saw a room that kicks often keep every one until it ended)."""
    meeting = await world.room("ana", "ben")
    host, ana, ben = await world.join_all("hana", "ana", "ben")
    for peer in (host, ana, ben):
        await peer.send("keys", **announced_keys(peer.welcome))
    await host.until("roster", with_keys_of(ben))
    hub = world.server.app.hub
    everyone = {host.participant_id, ana.participant_id, ben.participant_id}
    assert hub.held_keys(meeting.room_id) == everyone

    await host.send("kick", participant=ana.participant_id)
    await host.until("roster", roster_of(2))
    assert hub.held_keys(meeting.room_id) == everyone - {ana.participant_id}
