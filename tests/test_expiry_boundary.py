"""Expiry is a closed boundary: at exactly ``expires_at`` an invite or a room is over, and one
second before it is not. The clock is moved by hand; each test runs on real SQLite and on
the in-memory store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.core.models import CreatedRoom, InviteState, RoomState
from bot.core.policy import MeetingPolicy
from bot.core.service import MeetingService
from bot.errors import InviteExpired, RoomEnded
from bot.store.base import Store
from tests.support.fakes import FakeClock, user
from tests.support.stores import STORES, each_store

INVITE_TTL = 3600
ROOM_TTL = 4 * 3600  # longer than an invite, so each expiry is seen on its own


@pytest.fixture(params=STORES)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with each_store(request, tmp_path) as s:
        yield s


@pytest.fixture
def policy() -> MeetingPolicy:
    return MeetingPolicy(invite_ttl=INVITE_TTL)


@pytest.fixture
async def made(service: MeetingService) -> CreatedRoom:
    return await service.create_room(user("hana"), [user("ana")], "Sync", ttl=ROOM_TTL)


def credential(made: CreatedRoom) -> str:
    return made.invites[0].link.reveal().split("#", 1)[1]


def move_to(clock: FakeClock, moment: float) -> None:
    clock.advance(moment - clock.now())
    assert clock.now() == moment


async def test_an_invite_is_accepted_one_second_before_it_expires(
    service: MeetingService, clock: FakeClock, made: CreatedRoom
) -> None:
    expires_at = made.invites[0].invite.expires_at
    assert expires_at == made.room.created_at + INVITE_TTL < made.room.expires_at
    move_to(clock, expires_at - 1)
    admitted = await service.redeem(made.room.id, credential(made))
    assert admitted.participant.user_id == "ana"


async def test_an_invite_is_refused_at_exactly_its_expiry(
    service: MeetingService, store: Store, clock: FakeClock, made: CreatedRoom
) -> None:
    move_to(clock, made.invites[0].invite.expires_at)
    with pytest.raises(InviteExpired):
        await service.redeem(made.room.id, credential(made))
    assert await store.participants_for_room(made.room.id) == []
    invite = await store.get_invite(made.invites[0].invite.id)
    assert invite is not None and invite.state is InviteState.ISSUED  # refused, not spent


async def test_the_sweeper_expires_an_invite_at_exactly_its_expiry_not_before(
    service: MeetingService, store: Store, clock: FakeClock, made: CreatedRoom
) -> None:
    ana = made.invites[0].invite
    move_to(clock, ana.expires_at - 1)
    assert (await service.sweep()).expired_invites == 0
    clock.advance(1)
    result = await service.sweep()
    assert (result.expired_invites, result.ended_rooms) == (2, ())  # Ana's and the host's
    invite = await store.get_invite(ana.id)
    assert invite is not None and invite.state is InviteState.EXPIRED


async def test_a_room_works_one_second_before_it_expires(
    service: MeetingService, store: Store, clock: FakeClock, made: CreatedRoom
) -> None:
    admitted = await service.redeem(made.room.id, credential(made))
    move_to(clock, made.room.expires_at - 1)
    resumed = await service.resume(admitted.resume_token.reveal())
    assert resumed.participant.id == admitted.participant.id
    assert [s.room.id for s in await service.rooms_of(user("hana"))] == [made.room.id]
    locked = await service.lock(user("hana"), made.room.id)
    assert locked.state is RoomState.LOCKED
    assert (await service.sweep()).ended_rooms == ()
    room = await store.get_room(made.room.id)
    assert room is not None and room.state is RoomState.LOCKED


async def test_a_room_is_over_at_exactly_its_expiry(
    service: MeetingService, store: Store, clock: FakeClock, made: CreatedRoom
) -> None:
    admitted = await service.redeem(made.room.id, credential(made))
    move_to(clock, made.room.expires_at)
    with pytest.raises(RoomEnded):
        await service.resume(admitted.resume_token.reveal())
    with pytest.raises(RoomEnded):
        await service.lock(user("hana"), made.room.id)
    with pytest.raises(RoomEnded):
        await service.reissue(user("hana"), made.room.id)
    assert await service.rooms_of(user("hana")) == []
    assert (await service.sweep()).ended_rooms == (made.room.id,)
    room = await store.get_room(made.room.id)
    assert room is not None and room.state is RoomState.ENDED


async def test_the_store_changes_a_room_one_second_before_expiry_and_not_at_it(
    store: Store, made: CreatedRoom
) -> None:
    # The store's own guard, for a room that expires between the service's check and the write.
    room_id, expires_at = made.room.id, made.room.expires_at
    late = await store.set_room_state(room_id, RoomState.OPEN, RoomState.LOCKED, "t", expires_at)
    assert not late
    on_time = expires_at - 1
    assert await store.set_room_state(room_id, RoomState.OPEN, RoomState.LOCKED, "t", on_time)
    room = await store.get_room(room_id)
    assert room is not None and room.state is RoomState.LOCKED
