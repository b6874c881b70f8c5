"""The shared command handler: what every adapter gets back for a line of text."""

from __future__ import annotations

import pytest

from bot.commands.grammar import Mention
from bot.commands.handler import CommandHandler
from bot.commands.notices import Notice
from bot.core.models import UserRef
from bot.core.service import MeetingService
from bot.errors import InviteAlreadyUsed
from tests.support.fakes import FakeClock, user


async def resolve(m: Mention) -> UserRef:
    return user(m.user_id)


async def test_create_reports_and_invites(service: MeetingService, clock: FakeClock) -> None:
    handler = CommandHandler(service, clock)
    out = await handler.handle(user("hana"), "@ana @ben Sync announce", resolve)
    assert out.ok
    assert [i.to.user_id for i in out.invitations] == ["ana", "ben", "hana"]
    assert out.announcement is not None
    for inv in out.invitations:
        link = inv.invite.link.reveal()
        assert link not in out.reply and link not in out.announcement
        assert link in inv.text()


async def test_errors_become_sentences_and_bot_cannot_be_invited(
    service: MeetingService, clock: FakeClock
) -> None:
    handler = CommandHandler(service, clock)
    out = await handler.handle(user("hana"), "@conclave Sync", resolve, bot_user_id="conclave")
    assert not out.ok and "can't be invited" in out.reply
    out = await handler.handle(user("hana"), "end nosuchroom", resolve)
    assert not out.ok and "no meeting room" in out.reply
    assert await service.rooms_of(user("hana")) == []


async def test_join_gives_the_caller_a_private_link(
    service: MeetingService, clock: FakeClock
) -> None:
    handler = CommandHandler(service, clock)
    made = await handler.handle(user("hana"), "@ana Sync", resolve)
    room_id = made.invitations[0].room.id
    out = await handler.handle(user("ana"), f"join {room_id}", resolve)
    assert out.ok and out.own_link is not None and not out.invitations
    link = out.own_link.invite.link.reveal()
    assert link not in out.reply
    assert link in out.private_text()


async def test_reissue_sends_the_invitee_a_new_link_and_says_who_was_removed(
    service: MeetingService, clock: FakeClock
) -> None:
    handler = CommandHandler(service, clock)
    made = await handler.handle(user("hana"), "@ana Sync", resolve)
    ana_invite = made.invitations[0]
    room_id = ana_invite.room.id
    thief = await service.redeem(room_id, ana_invite.invite.link.reveal().split("#", 1)[1])

    out = await handler.handle(user("hana"), f"reissue {room_id} @ana", resolve)
    assert out.ok, out.reply
    assert out.reply.startswith(f'New link for Ana in "Sync" (`{room_id}`)')
    assert f"Removed participant {thief.participant.id}" in out.reply
    (invitation,) = out.invitations
    assert invitation.to == user("ana") and out.own_link is None
    assert invitation.invite.link.reveal() not in out.reply
    assert invitation.invite.link.reveal() in invitation.text()

    refused = await handler.handle(user("ana"), f"reissue {room_id} @ana", resolve)
    assert not refused.ok and "Only the host" in refused.reply and not refused.invitations
    assert "/meet reissue ROOM @user" in (await handler.handle(user("ana"), "help", resolve)).reply


async def test_hosts_are_notified_on_their_own_platform_only(
    service: MeetingService, clock: FakeClock
) -> None:
    handler = CommandHandler(service, clock)
    console: list[Notice] = []
    slack: list[Notice] = []

    async def to_console(notice: Notice) -> None:
        console.append(notice)

    async def to_slack(notice: Notice) -> None:
        slack.append(notice)

    handler.notify_hosts("console", to_console)
    handler.notify_hosts("slack", to_slack)
    made = await service.create_room(user("hana"), [user("ana")], "Sync")
    cred = made.invites[0].link.reveal().split("#", 1)[1]
    await service.redeem(made.room.id, cred)
    with pytest.raises(InviteAlreadyUsed):
        await service.redeem(made.room.id, cred)
    (notice,) = console
    assert slack == []
    assert notice.to == user("hana")
    assert notice.text.startswith(
        f'Meeting "Sync" (`{made.room.id}`): Someone tried to join as Ana'
    )
