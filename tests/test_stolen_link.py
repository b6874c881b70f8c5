"""A stolen link: the thief joins first, as "Ana". The real Ana is told when her link was used,
the host is told (in the meeting and in chat), and `/meet reissue ROOM @ana` removes the thief
and gives Ana a link that works. The attack runs against the real service, hub and console."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.client.session import ClientSession, MediaOptions
from bot.commands.grammar import Mention
from bot.core.events import Event, LinkReused, ParticipantKicked
from bot.core.links import parse_link
from bot.core.models import InviteState, ParticipantState, UserRef
from bot.core.service import MeetingService
from bot.errors import (
    BadInvite,
    BadResumeToken,
    CommandError,
    InviteAlreadyUsed,
    InviteRevoked,
    NotHost,
    RoomEnded,
    UnknownRoom,
    utc_minute,
)
from bot.signaling.hub import CLOSE_KICKED
from bot.store.sqlite import SqliteStore
from tests.support.fakes import FakeClock, user
from tests.support.meeting import (
    Peer,
    credential,
    roster_ids,
)
from tests.support.secrets_scan import secret_shaped
from tests.support.server import (
    Running,
    expect_closed,
    expect_refused,
    hello_invite,
    hello_resume,
    receive_until,
    serve,
)
from tests.support.world import World, roster_of

# --- the core ---------------------------------------------------------------------------------


def listen(service: MeetingService) -> list[Event]:
    seen: list[Event] = []

    async def record(event: Event) -> None:
        seen.append(event)

    service.events.subscribe(record)
    return seen


async def test_a_reused_link_says_when_and_tells_the_host_once_a_minute(
    service: MeetingService, store: SqliteStore, clock: FakeClock, host: UserRef
) -> None:
    made = await service.create_room(host, [user("ana")], "Sync")
    ana_link = credential(made.invites[0])
    thief = await service.redeem(made.room.id, ana_link)
    used_at = clock.now()
    seen = listen(service)
    clock.advance(125)

    with pytest.raises(InviteAlreadyUsed) as refusal:
        await service.redeem(made.room.id, ana_link)
    assert f"already used at {utc_minute(used_at)}" in str(refusal.value)
    assert "If that was not you, tell the host." in str(refusal.value)
    (event,) = seen
    assert isinstance(event, LinkReused)
    assert event.participant_id == thief.participant.id
    assert event.host.user_id == "hana" and event.room_id == made.room.id
    assert (event.invitee_user_id, event.invitee_name, event.used_at) == ("ana", "Ana", used_at)
    assert event.message.startswith("Someone tried to join as Ana with Ana's link")
    assert f"/meet reissue {made.room.id} @ana" in event.message

    # Whoever holds the link cannot flood the host: one notice per invite per interval.
    for _ in range(5):
        with pytest.raises(InviteAlreadyUsed):
            await service.redeem(made.room.id, ana_link)
    assert len(seen) == 1
    clock.advance(service.policy.reuse_notice_interval)
    with pytest.raises(InviteAlreadyUsed):
        await service.redeem(made.room.id, ana_link)
    assert len(seen) == 2

    # Audited, by invite and participant id; the audit never holds the link's secret.
    audit = [e for e in await store.audit_log(made.room.id) if e.event == "link_reused"]
    assert [e.detail for e in audit] == [
        {"invite": made.invites[0].invite.id, "participant": thief.participant.id}
    ] * 2
    text = json.dumps([e.detail for e in await store.audit_log()]) + repr(audit)
    assert ana_link.split(".")[1] not in text and secret_shaped(text) == []


async def test_a_forged_key_for_a_used_invite_tells_nobody(
    service: MeetingService, host: UserRef
) -> None:
    made = await service.create_room(host, [user("ana")], "Sync")
    await service.redeem(made.room.id, credential(made.invites[0]))
    seen = listen(service)
    forged = f"{made.invites[0].invite.id}.{'A' * 43}"
    with pytest.raises(BadInvite):  # a forger learns no time of use...
        await service.redeem(made.room.id, forged)
    assert seen == []  # ...and raises no alarm


async def test_meet_join_with_a_used_link_says_when_and_tells_the_host(
    service: MeetingService, clock: FakeClock, host: UserRef
) -> None:
    made = await service.create_room(host, [user("ana")], "Sync")
    await service.redeem(made.room.id, credential(made.invites[0]))
    seen = listen(service)
    with pytest.raises(CommandError, match=f"already used at {utc_minute(clock.now())}"):
        await service.reissue(user("ana"), made.room.id)
    (event,) = seen
    assert isinstance(event, LinkReused) and event.asked_in_chat
    assert event.message.startswith("Ana asked for a new link, but Ana's link was already used")


async def test_host_reissue_removes_the_thief_and_gives_ana_a_working_link(
    service: MeetingService, store: SqliteStore, host: UserRef
) -> None:
    made = await service.create_room(host, [user("ana"), user("ben")], "Sync")
    ana_link = credential(made.invites[0])
    thief = await service.redeem(made.room.id, ana_link)
    ben = await service.redeem(made.room.id, credential(made.invites[1]))
    before = await store.audit_log(made.room.id)

    # Nobody but the host can do it, and a refusal changes nothing.
    with pytest.raises(NotHost):
        await service.reissue_for(user("ben"), made.room.id, "ana")
    with pytest.raises(UnknownRoom):
        await service.reissue_for(user("hana", workspace="other"), made.room.id, "ana")
    with pytest.raises(UnknownRoom):
        await service.reissue_for(host, "nosuchroom", "ana")
    with pytest.raises(CommandError, match="@eve is not invited"):
        await service.reissue_for(host, made.room.id, "eve")
    assert await store.audit_log(made.room.id) == before

    seen = listen(service)
    done = await service.reissue_for(host, made.room.id, "ana")
    assert done.kicked == thief.participant.id
    assert done.invitee == UserRef("console", "local", "ana", "Ana")
    assert seen == [ParticipantKicked(made.room.id, thief.participant.id)]
    with pytest.raises(BadResumeToken):
        await service.resume(thief.resume_token.reveal())
    with pytest.raises(InviteRevoked):
        await service.redeem(made.room.id, ana_link)
    ana = await service.redeem(made.room.id, credential(done.invite))
    assert (ana.participant.user_id, ana.participant.display_name) == ("ana", "Ana")
    assert (await service.resume(ben.resume_token.reveal())).participant.id == ben.participant.id

    states = {i.id: i.state for i in await store.invites_for_room(made.room.id)}
    assert states[made.invites[0].invite.id] is InviteState.REVOKED
    assert states[done.invite.invite.id] is InviteState.REDEEMED
    sessions = {p.id: p.state for p in await store.participants_for_room(made.room.id)}
    assert sessions[thief.participant.id] is ParticipantState.REVOKED
    # Ana's new link being used, then presented again, is a reuse like any other.
    with pytest.raises(InviteAlreadyUsed):
        await service.redeem(made.room.id, credential(done.invite))

    # A second reissue (nobody joined with it yet) just replaces the unused link.
    again = await service.reissue_for(host, made.room.id, "ben")
    assert again.kicked == ben.participant.id
    unused = await service.reissue_for(host, made.room.id, "ben")
    assert unused.kicked is None
    await service.end(host, made.room.id)
    with pytest.raises(RoomEnded):
        await service.reissue_for(host, made.room.id, "ana")


# --- over the wire: the hub, the console and the command ---------------------------------------


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Running]:
    async with serve(tmp_path, {"CONCLAVE_CONSOLE_USER": "hana"}) as running:
        yield running


async def console_line(server: Running, match: Callable[[str], bool]) -> str:
    """The first line the console printed that ``match`` accepts (waits up to 10 s)."""
    for _ in range(200):
        for line in server.console_out.getvalue().splitlines():
            if match(line):
                return line
        await asyncio.sleep(0.05)
    raise AssertionError(f"the console never printed it: {server.console_out.getvalue()!r}")


async def resolve(mention: Mention) -> UserRef:
    return user(mention.user_id)


async def test_the_attack_over_the_wire(
    server: Running, http: aiohttp.ClientSession, stack: AsyncExitStack
) -> None:
    world = World(server, http, stack)
    meeting = await world.room("ana", "ben")
    host, ben = await world.join_all("hana", "ben")
    # The thief read Ana's DM and is first: admitted, and shown to everyone as "Ana".
    thief = await world.join("ana")
    assert thief.welcome["name"] == "Ana"
    used_at = server.clock.now()
    server.clock.advance(3 * 60)

    # The real Ana is refused, and told when her link was used.
    ws = await world.connect()
    await ws.send_str(world.hello("ana"))
    error, _ = await expect_refused(ws, "already_used")
    assert f"already used at {utc_minute(used_at)}" in error["message"]
    assert "tell the host" in error["message"]

    # The host hears of it in the meeting, naming the thief's participant id...
    notice = await host.until("notice")
    assert notice["code"] == "link_reused"
    assert notice["participant"] == thief.participant_id
    assert "Someone tried to join as Ana" in notice["message"]
    assert f"/meet reissue {meeting.room_id} @ana" in notice["message"]
    # ...and nobody else does.
    assert not [m for m in await ben.ping() if m["type"] == "notice"]
    assert not [m for m in await thief.ping() if m["type"] == "notice"]
    # ...and in chat (the console prints the host's DM).
    dm = await console_line(server, lambda s: s.startswith("Notice to @hana: "))
    assert "Someone tried to join as Ana" in dm and meeting.room_id in dm

    # An ordinary user's reissue is refused and changes nothing.
    audit_before = await server.app.store.audit_log(meeting.room_id)
    out = await server.app.handler.handle(user("ben"), f"reissue {meeting.room_id} @ana", resolve)
    assert not out.ok and "Only the host" in out.reply and not out.invitations
    assert await server.app.store.audit_log(meeting.room_id) == audit_before
    await thief.ping()

    # One command from the host: the thief is out, and Ana has a new link by DM.
    server.console.feed(f"/meet reissue {meeting.room_id} @ana")
    kicked = await thief.until("kicked")
    assert "removed" in kicked["message"]
    assert await expect_closed(thief.ws) == CLOSE_KICKED
    left = await host.until("roster", roster_of(2))
    assert thief.participant_id not in roster_ids(left)
    await console_line(server, lambda s: s.startswith("New link for Ana"))
    new_dm = await console_line(server, lambda s: s.startswith("DM to @ana: "))
    link = parse_link(new_dm.removeprefix("DM to @ana: "))
    assert link.credential.reveal() != meeting.cred("ana")
    # The thief cannot come back: its resume token is dead, and so is the old link.
    await world.refused(hello_resume(thief.resume_token), "bad_resume")
    await world.refused(world.hello("ana"), "revoked")

    ana_ws = await world.connect()
    await ana_ws.send_str(hello_invite(meeting.room_id, link.credential.reveal()))
    welcome: dict[str, Any] = await receive_until(ana_ws, "welcome")
    ana = Peer(ana_ws, welcome)
    assert welcome["name"] == "Ana" and ana.participant_id != thief.participant_id
    joined = await host.until("roster", roster_of(3))
    assert ana.participant_id in roster_ids(joined)


async def test_a_host_whose_own_link_was_stolen_takes_it_back_from_chat(
    service: MeetingService, host: UserRef
) -> None:
    made = await service.create_room(host, [user("ana")], "Sync")
    thief = await service.redeem(made.room.id, credential(made.host_invite))
    assert thief.participant.role.value == "host"
    done = await service.reissue_for(host, made.room.id, host.user_id)
    assert done.kicked == thief.participant.id
    with pytest.raises(NotHost):  # the thief's host controls are gone with its session
        await service.host_of(thief.participant.id)
    back = await service.redeem(made.room.id, credential(done.invite))
    assert back.participant.role.value == "host"
    room, actor = await service.host_of(back.participant.id)
    assert room.id == made.room.id and actor.user_id == host.user_id


async def test_the_hosts_conclave_join_shows_the_notice_and_stays_in(server: Running) -> None:
    made = await server.app.service.create_room(user("hana"), [user("ana")], "Sync")
    hana_link = parse_link(made.host_invite.link.reveal())
    ana_link = parse_link(made.invites[0].link.reveal())
    lines: list[str] = []
    host = ClientSession(hana_link, lines.append, MediaOptions(enabled=False))
    running = asyncio.ensure_future(host.run(None))
    try:
        for _ in range(200):
            if host.keyring is not None:
                break
            await asyncio.sleep(0.05)
        await server.app.service.redeem(made.room.id, ana_link.credential.reveal())
        with pytest.raises(InviteAlreadyUsed):
            await server.app.service.redeem(made.room.id, ana_link.credential.reveal())
        for _ in range(200):
            if any(line.startswith("notice: Someone tried to join as Ana") for line in lines):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"the host's client never showed the notice: {lines}")
        await asyncio.sleep(0.2)
        assert not running.done() and host.ended is None
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
