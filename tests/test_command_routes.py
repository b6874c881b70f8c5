"""Every ``/meet`` subcommand reaches the service call it names and says what it did.

Each test drives a real adapter with the words a person types, then checks two things that a
misrouted command gets wrong: what the store now holds, and the exact reply. The console adapter
(the path every platform shares: parse, handle, render) comes first; then Slack, over signed
HTTP against the local fake Slack, where the direct messages must reach the fake.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.console import ConsoleAdapter
from bot.commands import render
from bot.commands.handler import CommandHandler
from bot.core.links import JoinLink, parse_link
from bot.core.models import InviteState, Role, RoomState
from bot.core.service import MeetingService
from bot.errors import InviteRevoked, RoomLocked
from bot.store.sqlite import SqliteStore
from tests.support.fake_slack import FakeSlack
from tests.support.fakes import FakeClock
from tests.support.server import Running
from tests.support.slack_commands import dm_link, meet, serve_slack

HOUR = 3600.0
DAY = 24 * HOUR


class Console:
    """One person at the console adapter: a line in, the lines it printed out."""

    def __init__(self, handler: CommandHandler, user_id: str) -> None:
        self._out = io.StringIO()
        self._adapter = ConsoleAdapter(handler, user_id, self._out)

    async def say(self, line: str) -> list[str]:
        start = len(self._out.getvalue())
        await self._adapter.handle_line(line)
        return self._out.getvalue()[start:].splitlines()


def dm_links(lines: list[str]) -> dict[str, JoinLink]:
    """The links the console "sent by DM", by recipient."""
    links: dict[str, JoinLink] = {}
    for line in lines:
        if line.startswith("DM to @"):
            to, _, link = line.removeprefix("DM to @").partition(": ")
            assert to not in links, f"two DMs to {to}"
            links[to] = parse_link(link)
    return links


@pytest.fixture
def handler(service: MeetingService, clock: FakeClock) -> CommandHandler:
    return CommandHandler(service, clock)


@pytest.fixture
def hana(handler: CommandHandler) -> Console:
    return Console(handler, "hana")


async def open_room(console: Console, text: str = "/meet @ana Sync") -> dict[str, JoinLink]:
    links = dm_links(await console.say(text))
    assert links, "the room was not created"
    return links


async def states(store: SqliteStore, room_id: str) -> dict[str, InviteState]:
    """The state of each person's latest invite to the room."""
    return {i.user_id: i.state for i in await store.invites_for_room(room_id)}


async def invites_of(store: SqliteStore, room_id: str, user_id: str) -> dict[str, InviteState]:
    """Every invite one person has had to the room, by id."""
    return {i.id: i.state for i in await store.invites_for_room(room_id) if i.user_id == user_id}


# --- the console -------------------------------------------------------------------------


async def test_console_create_with_every_option(
    hana: Console, store: SqliteStore, service: MeetingService, clock: FakeClock
) -> None:
    lines = await hana.say("/meet @ana @ben Weekly sync lobby ttl=2h announce")
    links = dm_links(lines)
    room_id = links["ana"].room_id
    assert lines == [
        f'Meeting "Weekly sync" is ready: room `{room_id}`, open for 2h '
        "(until 2027-01-15 10:00 UTC), lobby on (you admit guests).",
        "One-time links go by direct message to ana, ben and you.",
        f"Host controls: /meet invite {room_id} @user · /meet lock {room_id} · /meet end {room_id}",
        'Announced in the channel: hana started the end-to-end-encrypted meeting "Weekly sync". '
        f"Invitees: your personal link is in your direct messages (or type /meet join {room_id}).",
        f"DM to @ana: {links['ana'].base_url}/j/{room_id}#{links['ana'].credential.reveal()}",
        f"DM to @ben: {links['ben'].base_url}/j/{room_id}#{links['ben'].credential.reveal()}",
        f"DM to @hana: {links['hana'].base_url}/j/{room_id}#{links['hana'].credential.reveal()}",
    ]
    room = await store.get_room(room_id)
    assert room is not None
    assert (room.topic, room.lobby, room.state, room.host_user_id) == (
        "Weekly sync",
        True,
        RoomState.OPEN,
        "hana",
    )
    assert room.expires_at == clock.now() + 2 * HOUR
    invites = {i.user_id: i for i in await store.invites_for_room(room_id)}
    assert {u: (i.role, i.state) for u, i in invites.items()} == {
        "ana": (Role.GUEST, InviteState.ISSUED),
        "ben": (Role.GUEST, InviteState.ISSUED),
        "hana": (Role.HOST, InviteState.ISSUED),
    }
    assert {u: link.invite_id for u, link in links.items()} == {u: i.id for u, i in invites.items()}
    admitted = await service.redeem(room_id, links["ben"].credential.reveal())
    assert admitted.participant.user_id == "ben"


async def test_console_create_without_options_uses_the_defaults(
    hana: Console, store: SqliteStore, clock: FakeClock
) -> None:
    lines = await hana.say("/meet @ana")
    room_id = dm_links(lines)["ana"].room_id
    assert lines[:3] == [
        f'Meeting "Meeting" is ready: room `{room_id}`, open for 1d '
        "(until 2027-01-16 08:00 UTC), lobby off.",
        "One-time links go by direct message to ana and you.",
        f"Host controls: /meet invite {room_id} @user · /meet lock {room_id} · /meet end {room_id}",
    ]
    assert [line.split(":")[0] for line in lines[3:]] == ["DM to @ana", "DM to @hana"]
    room = await store.get_room(room_id)
    assert room is not None
    assert (room.topic, room.lobby, room.expires_at) == ("Meeting", False, clock.now() + DAY)


async def test_console_create_with_a_topic_only_invites_the_host(
    hana: Console, store: SqliteStore
) -> None:
    lines = await hana.say("/meet Standup notes")
    (room_id,) = {link.room_id for link in dm_links(lines).values()}
    assert lines[1] == (
        "One-time links go by direct message to you (invite others with /meet invite)."
    )
    assert list(dm_links(lines)) == ["hana"]
    assert await states(store, room_id) == {"hana": InviteState.ISSUED}


async def test_console_help(hana: Console) -> None:
    lines = await hana.say("/meet help")
    assert lines == render.HELP.splitlines()
    assert "  /meet list                    the rooms you host" in lines


async def test_console_list_shows_the_callers_open_rooms(
    hana: Console, handler: CommandHandler, service: MeetingService, clock: FakeClock
) -> None:
    assert await hana.say("/meet list") == [
        "You host no open meetings. Start one with /meet @someone Topic."
    ]
    sync = await open_room(hana, "/meet @ana Sync")
    clock.advance(60)
    retro = (await open_room(hana, "/meet @ben @cat Retro lobby ttl=2h"))["ben"].room_id
    await service.redeem(sync["ana"].room_id, sync["ana"].credential.reveal())
    await hana.say(f"/meet lock {sync['ana'].room_id}")
    gone = (await open_room(hana, "/meet @dan Gone"))["dan"].room_id
    await hana.say(f"/meet end {gone}")

    assert await hana.say("/meet list") == [
        "Meetings you host:",
        f'  `{retro}` "Retro": open, lobby, 0 joined of 3 invited, until 2027-01-15 10:01 UTC',
        f'  `{sync["ana"].room_id}` "Sync": locked, 1 joined of 2 invited, '
        "until 2027-01-16 08:00 UTC",
    ]
    # Someone else's list holds none of Hana's rooms.
    assert await Console(handler, "ana").say("/meet list") == [
        "You host no open meetings. Start one with /meet @someone Topic."
    ]


async def test_console_lock(hana: Console, store: SqliteStore, service: MeetingService) -> None:
    link = (await open_room(hana))["ana"]
    assert await hana.say(f"/meet lock {link.room_id}") == [
        f'Locked "Sync" (`{link.room_id}`): nobody new can join until you unlock it.'
    ]
    room = await store.get_room(link.room_id)
    assert room is not None and room.state is RoomState.LOCKED
    with pytest.raises(RoomLocked):
        await service.redeem(link.room_id, link.credential.reveal())


async def test_console_unlock(hana: Console, store: SqliteStore, service: MeetingService) -> None:
    link = (await open_room(hana))["ana"]
    await hana.say(f"/meet lock {link.room_id}")
    assert await hana.say(f"/meet unlock {link.room_id}") == [
        f'Unlocked "Sync" (`{link.room_id}`): invited people can join again.'
    ]
    room = await store.get_room(link.room_id)
    assert room is not None and room.state is RoomState.OPEN
    admitted = await service.redeem(link.room_id, link.credential.reveal())
    assert admitted.participant.user_id == "ana"


async def test_console_unlock_of_an_open_room_leaves_it_open(
    hana: Console, store: SqliteStore
) -> None:
    room_id = (await open_room(hana))["ana"].room_id
    assert await hana.say(f"/meet unlock {room_id}") == [f"Room {room_id} is already unlocked."]
    room = await store.get_room(room_id)
    assert room is not None and room.state is RoomState.OPEN


async def test_console_end(
    hana: Console, store: SqliteStore, service: MeetingService, clock: FakeClock
) -> None:
    link = (await open_room(hana))["ana"]
    assert await hana.say(f"/meet end {link.room_id}") == [
        f'Ended "Sync" (`{link.room_id}`): everyone is out and every link is revoked.'
    ]
    room = await store.get_room(link.room_id)
    assert room is not None
    assert (room.state, room.ended_at) == (RoomState.ENDED, clock.now())
    assert await states(store, link.room_id) == {
        "ana": InviteState.REVOKED,
        "hana": InviteState.REVOKED,
    }
    with pytest.raises(InviteRevoked):
        await service.redeem(link.room_id, link.credential.reveal())


async def test_console_invite_dms_each_new_invitee(
    hana: Console, store: SqliteStore, service: MeetingService
) -> None:
    room_id = (await open_room(hana))["ana"].room_id
    lines = await hana.say(f"/meet invite {room_id} @cat @dan")
    links = dm_links(lines)
    assert lines == [
        f'Invited cat, dan to "Sync" (`{room_id}`); links go by direct message.',
        f"DM to @cat: {links['cat'].base_url}/j/{room_id}#{links['cat'].credential.reveal()}",
        f"DM to @dan: {links['dan'].base_url}/j/{room_id}#{links['dan'].credential.reveal()}",
    ]
    invites = {i.user_id: i for i in await store.invites_for_room(room_id)}
    assert sorted(invites) == ["ana", "cat", "dan", "hana"]
    for who in ("cat", "dan"):
        assert (invites[who].id, invites[who].role) == (links[who].invite_id, Role.GUEST)
        admitted = await service.redeem(room_id, links[who].credential.reveal())
        assert admitted.participant.user_id == who


async def test_console_join_gives_the_caller_a_fresh_private_link(
    hana: Console, handler: CommandHandler, store: SqliteStore, service: MeetingService
) -> None:
    old = (await open_room(hana))["ana"]
    lines = await Console(handler, "ana").say(f"/meet join {old.room_id}")
    assert len(lines) == 2 and not dm_links(lines)
    head, _, link_text = lines[0].rpartition(" ")
    assert head == 'Your personal link for "Sync" (visible only to you):'
    assert lines[1] == (
        "It works once and expires 2027-01-16 08:00 UTC. "
        "Any earlier link of yours for this meeting no longer works."
    )
    fresh = parse_link(link_text)
    assert await invites_of(store, old.room_id, "ana") == {
        old.invite_id: InviteState.REVOKED,
        fresh.invite_id: InviteState.ISSUED,
    }
    with pytest.raises(InviteRevoked):
        await service.redeem(old.room_id, old.credential.reveal())
    admitted = await service.redeem(old.room_id, fresh.credential.reveal())
    assert admitted.participant.user_id == "ana"


async def test_console_reissue_removes_the_thief_and_dms_a_new_link(
    hana: Console, store: SqliteStore, service: MeetingService
) -> None:
    old = (await open_room(hana))["ana"]
    thief = await service.redeem(old.room_id, old.credential.reveal())
    lines = await hana.say(f"/meet reissue {old.room_id} @ana")
    fresh = dm_links(lines)["ana"]
    assert lines == [
        f'New link for ana in "Sync" (`{old.room_id}`): their old link no longer works. '
        f"Removed participant {thief.participant.id}, who had joined with the old link.",
        f"DM to @ana: {fresh.base_url}/j/{old.room_id}#{fresh.credential.reveal()}",
    ]
    (participant,) = await store.participants_for_room(old.room_id)
    assert participant.state.value == "revoked"
    assert await invites_of(store, old.room_id, "ana") == {
        old.invite_id: InviteState.REVOKED,
        fresh.invite_id: InviteState.ISSUED,
    }
    admitted = await service.redeem(old.room_id, fresh.credential.reveal())
    assert admitted.participant.user_id == "ana"


# --- Slack -------------------------------------------------------------------------------


@pytest.fixture
def slack() -> FakeSlack:
    return FakeSlack.with_people()


@pytest.fixture
async def running(tmp_path: Path, slack: FakeSlack) -> AsyncIterator[Running]:
    async with serve_slack(tmp_path, slack) as running:
        yield running


async def slack_room(running: Running, slack: FakeSlack, text: str = "<@UANA> Sync") -> str:
    await meet(running, slack, text)
    return dm_link(slack, "UANA").room_id


async def room_state(running: Running, room_id: str) -> RoomState:
    room = await running.app.service.get_room(room_id)
    assert room is not None
    return room.state


async def test_slack_create_with_every_option(running: Running, slack: FakeSlack) -> None:
    private, public = await meet(
        running, slack, "<@UANA> <@UBEN> Weekly sync lobby ttl=2h announce", replies=2
    )
    assert sorted(slack.dms()) == ["UANA", "UBEN", "UHANA"]
    room_id = dm_link(slack, "UANA").room_id
    now = running.clock.now()
    assert private == {
        "_key": private["_key"],
        "response_type": "ephemeral",
        "text": f'Meeting "Weekly sync" is ready: room `{room_id}`, open for 2h '
        "(until 2027-01-15 10:00 UTC), lobby on (you admit guests).\n"
        "One-time links go by direct message to Ana, Ben and you.\n"
        f"Host controls: /meet invite {room_id} @user · /meet lock {room_id} · "
        f"/meet end {room_id}\n"
        "Sent a private link to Ana, Ben, Hana.",
    }
    assert (public["response_type"], public["text"]) == (
        "in_channel",
        'Hana started the end-to-end-encrypted meeting "Weekly sync". Invitees: your personal '
        f"link is in your direct messages (or type /meet join {room_id}).",
    )
    room = await running.app.service.get_room(room_id)
    assert room is not None
    assert (room.topic, room.lobby, room.expires_at) == ("Weekly sync", True, now + 2 * HOUR)
    invites = {i.user_id: i.id for i in await running.app.store.invites_for_room(room_id)}
    assert invites == {u: dm_link(slack, u).invite_id for u in ("UANA", "UBEN", "UHANA")}


async def test_slack_help(running: Running, slack: FakeSlack) -> None:
    (reply,) = await meet(running, slack, "help")
    assert (reply["response_type"], reply["text"]) == ("ephemeral", render.HELP)
    assert slack.dms() == {}


async def test_slack_list(running: Running, slack: FakeSlack) -> None:
    (empty,) = await meet(running, slack, "list")
    assert empty["text"] == "You host no open meetings. Start one with /meet @someone Topic."
    room_id = await slack_room(running, slack, "<@UANA> <@UBEN> Sync lobby")
    (reply,) = await meet(running, slack, "list")
    assert reply["text"] == (
        "Meetings you host:\n"
        f'  `{room_id}` "Sync": open, lobby, 0 joined of 3 invited, until 2027-01-16 08:00 UTC'
    )


async def test_slack_lock_unlock_and_end(running: Running, slack: FakeSlack) -> None:
    room_id = await slack_room(running, slack)
    (locked,) = await meet(running, slack, f"lock {room_id}")
    assert locked["text"] == (
        f'Locked "Sync" (`{room_id}`): nobody new can join until you unlock it.'
    )
    assert await room_state(running, room_id) is RoomState.LOCKED
    (unlocked,) = await meet(running, slack, f"unlock {room_id}")
    assert unlocked["text"] == f'Unlocked "Sync" (`{room_id}`): invited people can join again.'
    assert await room_state(running, room_id) is RoomState.OPEN
    (ended,) = await meet(running, slack, f"end {room_id}")
    assert ended["text"] == (
        f'Ended "Sync" (`{room_id}`): everyone is out and every link is revoked.'
    )
    assert await room_state(running, room_id) is RoomState.ENDED
    invites = await running.app.store.invites_for_room(room_id)
    assert {i.state for i in invites} == {InviteState.REVOKED}
    assert all(r["response_type"] == "ephemeral" for r in (locked, unlocked, ended))


async def test_slack_invite_dms_each_new_invitee(running: Running, slack: FakeSlack) -> None:
    room_id = await slack_room(running, slack)
    (reply,) = await meet(running, slack, f"invite {room_id} <@UBEN> <@UCAT>")
    assert reply["text"] == (
        f'Invited Ben, Cat to "Sync" (`{room_id}`); links go by direct message.\n'
        "Sent a private link to Ben, Cat."
    )
    assert sorted(slack.dms()) == ["UANA", "UBEN", "UCAT", "UHANA"]
    invites = {i.user_id: i for i in await running.app.store.invites_for_room(room_id)}
    for who in ("UBEN", "UCAT"):
        link = dm_link(slack, who)
        assert (link.room_id, link.invite_id) == (room_id, invites[who].id)
        assert link.secret.reveal() not in reply["text"]
        admitted = await running.app.service.redeem(room_id, link.credential.reveal())
        assert admitted.participant.user_id == who


async def test_slack_join_replies_privately_with_a_fresh_link(
    running: Running, slack: FakeSlack
) -> None:
    room_id = await slack_room(running, slack)
    old = dm_link(slack, "UANA")
    posts = len(slack.called("chat.postMessage"))
    (reply,) = await meet(running, slack, f"join {room_id}", user_id="UANA")
    assert reply["response_type"] == "ephemeral"
    head, _, rest = reply["text"].partition(": ")
    assert head == 'Your personal link for "Sync" (visible only to you)'
    fresh = parse_link(rest.split("\n")[0])
    assert len(slack.called("chat.postMessage")) == posts  # a reply, not a DM
    assert await invites_of(running.app.store, room_id, "UANA") == {
        old.invite_id: InviteState.REVOKED,
        fresh.invite_id: InviteState.ISSUED,
    }


async def test_slack_reissue_dms_the_invitee_a_new_link(running: Running, slack: FakeSlack) -> None:
    room_id = await slack_room(running, slack)
    old = dm_link(slack, "UANA")
    (reply,) = await meet(running, slack, f"reissue {room_id} <@UANA>")
    assert reply["text"] == (
        f'New link for Ana in "Sync" (`{room_id}`): their old link no longer works.\n'
        "Sent a private link to Ana."
    )
    fresh = dm_link(slack, "UANA")
    assert len(slack.dms()["UANA"]) == 2 and fresh.invite_id != old.invite_id
    assert await invites_of(running.app.store, room_id, "UANA") == {
        old.invite_id: InviteState.REVOKED,
        fresh.invite_id: InviteState.ISSUED,
    }
