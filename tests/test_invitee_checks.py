"""Each check on whom a command invites is made once, where it belongs: someone named twice
is a slip in what was typed (the grammar), how many one command may invite is the
deployment's policy (the service's, asked before any platform look-up)."""

from __future__ import annotations

import pytest

from bot.commands.grammar import Mention
from bot.commands.handler import CommandHandler
from bot.core.models import UserRef
from bot.core.policy import MeetingPolicy
from bot.core.service import MeetingService
from bot.errors import TooManyInvitees
from tests.support.fakes import FakeClock, user

CAP = 3


@pytest.fixture
def policy() -> MeetingPolicy:
    return MeetingPolicy(max_invitees=CAP)


class Directory:
    """A platform's user look-up that remembers whom it was asked about."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def resolve(self, mention: Mention) -> UserRef:
        self.asked.append(mention.user_id)
        return user(mention.user_id)


def mentions(count: int) -> str:
    return " ".join(f"@u{i}" for i in range(count))


async def test_the_service_holds_the_cap_for_every_caller(
    service: MeetingService, host: UserRef
) -> None:
    with pytest.raises(TooManyInvitees, match=f"at most {CAP}"):
        await service.create_room(host, [user(f"u{i}") for i in range(CAP + 1)], "Big")
    made = await service.create_room(host, [user(f"u{i}") for i in range(CAP)], "Full")
    with pytest.raises(TooManyInvitees, match=f"That is {CAP + 1} invitees"):
        await service.invite(host, made.room.id, [user(f"v{i}") for i in range(CAP + 1)])
    assert len(await service.invite(host, made.room.id, [user("w")])) == 1


@pytest.mark.parametrize("verb", ["", "invite {room} "])
async def test_too_many_people_are_refused_before_anyone_is_looked_up(
    service: MeetingService, clock: FakeClock, host: UserRef, verb: str
) -> None:
    made = await service.create_room(host, [], "Sync")
    handler, directory = CommandHandler(service, clock), Directory()
    text = verb.format(room=made.room.id) + mentions(CAP + 1)
    out = await handler.handle(host, text, directory.resolve)
    assert not out.ok and f"at most {CAP}" in out.reply
    assert directory.asked == []
    out = await handler.handle(host, mentions(CAP) + " Full", directory.resolve)
    assert out.ok and len(directory.asked) == CAP


async def test_someone_named_twice_is_refused_before_anyone_is_looked_up(
    service: MeetingService, clock: FakeClock, host: UserRef
) -> None:
    handler, directory = CommandHandler(service, clock), Directory()
    out = await handler.handle(host, "@ana <@ana|Ana> Sync", directory.resolve)
    assert not out.ok and "mentioned more than once" in out.reply
    assert directory.asked == []
    assert await service.rooms_of(host) == []
