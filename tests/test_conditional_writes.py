"""Each store writes only if what the service decided on still holds, and says whether it
won; the service then decides again on what won. Run on each store: a rule that lived in
one store's SQL alone would fail here on the other."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.core.models import (
    REPLACEABLE_BY_HOST,
    UNUSED,
    CreatedRoom,
    InviteState,
    RoomState,
    UserRef,
)
from bot.core.service import MeetingService
from bot.errors import RoomLocked
from bot.secret import Secret
from bot.store.base import Store
from bot.tokens import hash_secret, new_secret
from tests.support.fakes import FakeClock, user
from tests.support.meeting import credential
from tests.support.stores import STORES, each_store


@pytest.fixture(params=STORES)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with each_store(request, tmp_path) as s:
        yield s


@pytest.fixture
async def made(service: MeetingService, host: UserRef) -> CreatedRoom:
    return await service.create_room(host, [user("ana"), user("ben")], "Sync")


async def test_a_redemption_decided_before_a_lock_loses_to_it(
    store: Store, made: CreatedRoom, clock: FakeClock, host: UserRef
) -> None:
    room, invite = await store.room_and_invite(made.room.id, made.invites[0].invite.id)
    assert room is not None and invite is not None
    resume = hash_secret(new_secret())
    # The rule passes on what was loaded...
    invite.check_redeemable(room, invite.secret_hash, clock.now())
    # ...then the host locks the room before the write.
    assert await store.set_room_state(room.id, RoomState.OPEN, RoomState.LOCKED, "h", clock.now())
    assert await store.redeem_invite(room, invite, "plate", resume, clock.now()) is None
    # Nothing was written, and the rule, asked again, says why.
    assert await store.participants_for_room(room.id) == []
    again, fresh = await store.room_and_invite(room.id, invite.id)
    assert again is not None and fresh is not None and fresh.state is InviteState.ISSUED
    with pytest.raises(RoomLocked):
        fresh.check_redeemable(again, invite.secret_hash, clock.now())
    assert "invite_redeemed" not in [e.event for e in await store.audit_log(room.id)]


async def test_a_redemption_decided_before_a_reissue_loses_to_it(
    service: MeetingService, store: Store, made: CreatedRoom, clock: FakeClock
) -> None:
    room, invite = await store.room_and_invite(made.room.id, made.invites[0].invite.id)
    assert room is not None and invite is not None
    await service.reissue(user("ana"), room.id)  # revokes the loaded invite
    resume = hash_secret(new_secret())
    assert await store.redeem_invite(room, invite, "plate", resume, clock.now()) is None
    assert await store.participants_for_room(room.id) == []


async def test_of_two_redemptions_decided_together_one_wins(
    store: Store, made: CreatedRoom, clock: FakeClock
) -> None:
    room, invite = await store.room_and_invite(made.room.id, made.invites[0].invite.id)
    assert room is not None and invite is not None
    resume = hash_secret(new_secret())
    first = await store.redeem_invite(room, invite, "pfirst", resume, clock.now())
    second = await store.redeem_invite(room, invite, "psecond", resume, clock.now())
    assert first is not None and first.sender_index == 1 and second is None
    assert [p.id for p in await store.participants_for_room(room.id)] == ["pfirst"]


async def test_a_resume_rotation_decided_on_stale_hashes_loses(
    service: MeetingService, store: Store, made: CreatedRoom
) -> None:
    ana = await service.redeem(made.room.id, credential(made.invites[0]))
    token = ana.resume_token.reveal()
    presented = hash_secret(new_secret_from(token))
    before = ana.participant
    one = before.rotated(presented, hash_secret(new_secret()))
    other = before.rotated(presented, hash_secret(new_secret()))
    assert one is not None and other is not None
    assert await store.replace_resume(before, one)
    assert not await store.replace_resume(before, other)  # decided on what `one` replaced
    found = await store.find_session(before.id)
    assert found is not None and found[1].resume_hash == one.resume_hash


async def test_a_kick_beats_a_resume_decided_before_it(
    service: MeetingService, store: Store, made: CreatedRoom, clock: FakeClock
) -> None:
    ana = await service.redeem(made.room.id, credential(made.invites[0]))
    presented = hash_secret(new_secret_from(ana.resume_token.reveal()))
    after = ana.participant.rotated(presented, hash_secret(new_secret()))
    assert after is not None
    assert await store.revoke_session(ana.participant.id, "h", clock.now())
    assert not await store.replace_resume(ana.participant, after)


async def test_a_replacement_only_replaces_what_it_may(
    service: MeetingService, store: Store, made: CreatedRoom, clock: FakeClock
) -> None:
    ana = await service.redeem(made.room.id, credential(made.invites[0]))
    old = made.invites[0].invite
    fresh = service._issue(made.room, user("ana"), old.role, clock.now()).invite
    assert await store.replace_invite(old.id, UNUSED, fresh, "h", clock.now()) is None
    assert await store.get_invite(fresh.id) is None  # nothing added either
    done = await store.replace_invite(old.id, REPLACEABLE_BY_HOST, fresh, "h", clock.now())
    assert done is not None and done.kicked == ana.participant.id
    assert await store.replace_invite(old.id, REPLACEABLE_BY_HOST, fresh, "h", 0) is None


async def test_invites_are_not_added_to_a_room_that_ended(
    service: MeetingService, store: Store, made: CreatedRoom, host: UserRef, clock: FakeClock
) -> None:
    late = service._issue(made.room, user("cy"), made.invites[0].invite.role, clock.now())
    await service.end(host, made.room.id)
    assert not await store.add_invites(made.room.id, [late.invite], "h", clock.now())
    assert await store.get_invite(late.invite.id) is None


async def test_a_lock_that_lands_while_a_redemption_is_decided_refuses_it(
    service: MeetingService, store: Store, made: CreatedRoom, host: UserRef
) -> None:
    # The lock reads the room first, the redemption loads; the lock writes before the
    # redemption does, so the redemption's write loses and its next attempt sees the lock.
    locked, refused = await asyncio.gather(
        service.lock(host, made.room.id),
        service.redeem(made.room.id, credential(made.invites[0])),
        return_exceptions=True,
    )
    assert not isinstance(locked, BaseException) and locked.state is RoomState.LOCKED
    assert isinstance(refused, RoomLocked)
    assert await store.participants_for_room(made.room.id) == []


async def test_two_resumes_with_one_token_both_get_in(
    service: MeetingService, store: Store, made: CreatedRoom
) -> None:
    """As if the first welcome was lost: the second resume, decided on the hashes the first
    replaced, decides again and uses the token as the previous one."""
    ana = await service.redeem(made.room.id, credential(made.invites[0]))
    token = ana.resume_token.reveal()
    first, second = await asyncio.gather(service.resume(token), service.resume(token))
    assert first.resume_token != second.resume_token
    found = await store.find_session(ana.participant.id)
    assert found is not None
    session = found[1]
    assert session.prev_resume_hash == hash_secret(new_secret_from(token))
    # Of the two tokens handed out, the one replaced before anyone used it is dead.
    handed_out = [new_secret_from(a.resume_token.reveal()) for a in (first, second)]
    assert sorted(session.holds_resume(hash_secret(s)) for s in handed_out) == [False, True]
    assert (await service.resume(token)).participant.id == ana.participant.id


def new_secret_from(token: str) -> Secret:
    return Secret(token.split(".", 1)[1])
