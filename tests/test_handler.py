"""The shared command handler: what every adapter gets back for a line of text."""

from __future__ import annotations

from bot.commands.grammar import Mention
from bot.commands.handler import CommandHandler
from bot.core.models import UserRef
from bot.core.service import MeetingService
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
