"""MeetingService over each store (a real SQLite file, and memory): admission, policy,
expiry and the audit trail. What only SQLite can show (processes sharing a file, the
append-only triggers) runs on SQLite alone."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.core.events import Event, MeetingEnded
from bot.core.models import CreatedRoom, EndReason, InviteState, RoomState, UserRef
from bot.core.policy import MeetingPolicy
from bot.core.service import MeetingService
from bot.errors import (
    BadInvite,
    BadResumeToken,
    CommandError,
    InviteAlreadyUsed,
    InviteExpired,
    InviteRevoked,
    NotHost,
    NotInvited,
    RoomEnded,
    RoomLocked,
    TooManyInvitees,
    UnknownRoom,
)
from bot.store.base import Store
from bot.store.sqlite import SqliteStore
from tests.support.fakes import FakeClock, user
from tests.support.stores import STORES, each_store, sqlite_only


@pytest.fixture(params=STORES)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with each_store(request, tmp_path) as s:
        yield s


def credential(made: CreatedRoom, index: int) -> str:
    return made.invites[index].link.reveal().split("#", 1)[1]


async def test_fifty_concurrent_redemptions_one_winner(
    service: MeetingService, host: UserRef
) -> None:
    made = await service.create_room(host, [user("ana")], "Sync")
    cred = credential(made, 0)
    results = await asyncio.gather(
        *(service.redeem(made.room.id, cred) for _ in range(50)), return_exceptions=True
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(winners) == 1
    assert len(losers) == 49
    assert all(isinstance(r, InviteAlreadyUsed) for r in losers)
    assert all("already used" in str(r) for r in losers)


async def test_concurrent_redemptions_across_connections(
    tmp_path: Path, clock: FakeClock, host: UserRef
) -> None:
    # Five stores on one file stand in for five processes: SQLite's own lock must decide.
    path = tmp_path / "shared.db"
    stores = [SqliteStore(path) for _ in range(5)]
    for s in stores:
        await s.open()
    try:
        services = [MeetingService(s, MeetingPolicy(), "http://h", clock) for s in stores]
        made = await services[0].create_room(host, [user("ana")], "Sync")
        cred = credential(made, 0)
        results = await asyncio.gather(
            *(services[i % 5].redeem(made.room.id, cred) for i in range(50)),
            return_exceptions=True,
        )
        assert sum(not isinstance(r, BaseException) for r in results) == 1
        losers = [r for r in results if isinstance(r, BaseException)]
        assert len(losers) == 49
        assert all(isinstance(r, InviteAlreadyUsed) for r in losers)
        participants = await stores[0].participants_for_room(made.room.id)
        assert len(participants) == 1
    finally:
        for s in stores:
            await s.close()


async def test_invite_expiry_is_exact_to_the_second(
    service: MeetingService, store: Store, clock: FakeClock, host: UserRef, policy: MeetingPolicy
) -> None:
    made = await service.create_room(host, [user("ana"), user("ben")], "Sync", ttl=7200)
    expires = made.invites[0].invite.expires_at
    assert expires == clock.now() + min(policy.invite_ttl, 7200)
    clock.advance(expires - clock.now() - 1)
    await service.redeem(made.room.id, credential(made, 0))  # one second before: fine
    clock.advance(2)  # one second past expiry
    with pytest.raises(InviteExpired):
        await service.redeem(made.room.id, credential(made, 1))
    invite = made.invites[1].invite
    assert (await store.get_invite(invite.id)).state is InviteState.ISSUED  # type: ignore[union-attr]


async def test_ending_revokes_invites_and_sessions(
    service: MeetingService, store: Store, host: UserRef
) -> None:
    made = await service.create_room(host, [user("ana"), user("ben")], "Sync")
    admission = await service.redeem(made.room.id, credential(made, 0))
    seen: list[Event] = []

    async def listen(event: Event) -> None:
        seen.append(event)

    service.events.subscribe(listen)
    ended = await service.end(host, made.room.id)
    assert ended.state is RoomState.ENDED
    assert seen == [MeetingEnded(made.room.id, EndReason.BY_HOST)]
    with pytest.raises(InviteRevoked, match="revoked"):
        await service.redeem(made.room.id, credential(made, 1))
    with pytest.raises(RoomEnded):
        await service.resume(admission.resume_token.reveal())
    states = {i.user_id: i.state for i in await store.invites_for_room(made.room.id)}
    assert states == {
        "hana": InviteState.REVOKED,
        "ana": InviteState.REDEEMED,
        "ben": InviteState.REVOKED,
    }
    sessions = await store.participants_for_room(made.room.id)
    assert [p.user_id for p in sessions] == ["ana"]  # the one who joined, now revoked
    assert all(p.state.value == "revoked" for p in sessions)
    # A room never reopens.
    with pytest.raises(RoomEnded):
        await service.unlock(host, made.room.id)
    with pytest.raises(RoomEnded):
        await service.end(host, made.room.id)


async def test_locked_room_refuses_valid_invites_until_unlocked(
    service: MeetingService, store: Store, host: UserRef
) -> None:
    made = await service.create_room(host, [user("ana")], "Sync")
    await service.lock(host, made.room.id)
    with pytest.raises(RoomLocked):
        await service.redeem(made.room.id, credential(made, 0))
    assert (await store.get_invite(made.invites[0].invite.id)).state is InviteState.ISSUED  # type: ignore[union-attr]
    with pytest.raises(CommandError, match="already locked"):
        await service.lock(host, made.room.id)
    await service.unlock(host, made.room.id)
    admission = await service.redeem(made.room.id, credential(made, 0))
    assert admission.participant.user_id == "ana"


async def test_only_the_host_may_lock_unlock_end_or_invite(
    service: MeetingService, store: Store, host: UserRef
) -> None:
    made = await service.create_room(host, [user("ana")], "Sync")
    ana = user("ana")
    with pytest.raises(NotHost):
        await service.end(ana, made.room.id)
    with pytest.raises(NotHost):
        await service.lock(ana, made.room.id)
    with pytest.raises(NotHost):
        await service.unlock(ana, made.room.id)
    with pytest.raises(NotHost):
        await service.invite(ana, made.room.id, [user("eve")])
    room = await store.get_room(made.room.id)
    assert room is not None and room.state is RoomState.OPEN
    events = [e.event for e in await store.audit_log(made.room.id)]
    assert "room_ended" not in events and "room_locked" not in events
    assert len(await store.invites_for_room(made.room.id)) == 2
    # The same user id in another workspace is somebody else, and cannot see the room at all.
    impostor = user("hana", workspace="other")
    with pytest.raises(UnknownRoom):
        await service.end(impostor, made.room.id)


async def test_wrong_room_and_forged_invites_are_bad(
    service: MeetingService, host: UserRef
) -> None:
    a = await service.create_room(host, [user("ana")], "A")
    b = await service.create_room(host, [user("ben")], "B")
    with pytest.raises(BadInvite):
        await service.redeem(b.room.id, credential(a, 0))
    invite_id, secret = credential(a, 0).split(".")
    forged = f"{invite_id}.{'A' * len(secret)}"
    with pytest.raises(BadInvite):
        await service.redeem(a.room.id, forged)
    with pytest.raises(BadInvite):
        await service.redeem(a.room.id, "not-a-credential")
    with pytest.raises(UnknownRoom):
        await service.redeem("no-such-room", credential(a, 0))
    # None of that spent the real invite.
    await service.redeem(a.room.id, credential(a, 0))


async def test_resume_token_rejoins_until_room_ends(service: MeetingService, host: UserRef) -> None:
    made = await service.create_room(host, [user("ana")], "Sync")
    admission = await service.redeem(made.room.id, credential(made, 0))
    again = await service.resume(admission.resume_token.reveal())
    assert again.participant.id == admission.participant.id
    pid, secret = admission.resume_token.reveal().split(".")
    with pytest.raises(BadResumeToken):
        await service.resume(f"{pid}.{'B' * len(secret)}")
    with pytest.raises(BadResumeToken):
        await service.resume("garbage")


async def test_invalid_creations_write_nothing(
    service: MeetingService, store: Store, host: UserRef
) -> None:
    # Someone mentioned twice is refused by the grammar (tests/test_grammar.py), before this.
    cap = service.policy.max_invitees
    with pytest.raises(TooManyInvitees):
        await service.create_room(host, [user(f"u{i}") for i in range(cap + 1)], "Big")
    with pytest.raises(CommandError, match="yourself"):
        await service.create_room(host, [host], "Self")
    with pytest.raises(CommandError, match="out of range"):
        await service.create_room(host, [user("ana")], "Long", ttl=30 * 24 * 3600)
    with pytest.raises(CommandError, match="topic"):
        await service.create_room(host, [user("ana")], "x" * 500)
    assert await store.rooms_hosted_by("console", "local", "hana", 0) == []
    assert await store.audit_log() == []


async def test_inviting_more_and_listing(service: MeetingService, host: UserRef) -> None:
    made = await service.create_room(host, [user("ana")], "Sync", lobby=True)
    issued = await service.invite(host, made.room.id, [user("ben"), user("cy")])
    assert [i.invite.user_id for i in issued] == ["ben", "cy"]
    with pytest.raises(CommandError, match="Already invited"):
        await service.invite(host, made.room.id, [user("ana")])
    listed = await service.rooms_of(host)
    assert [(s.room.id, s.invited, s.joined, s.room.lobby) for s in listed] == [
        (made.room.id, 4, 0, True)
    ]
    await service.end(host, made.room.id)
    assert await service.rooms_of(host) == []


async def test_sweeper_expires_rooms_and_invites(
    service: MeetingService, store: Store, clock: FakeClock, host: UserRef
) -> None:
    short = await service.create_room(host, [user("ana")], "Short", ttl=600)
    long = await service.create_room(host, [user("ben")], "Long", ttl=5 * 24 * 3600)
    seen: list[Event] = []

    async def listen(event: Event) -> None:
        seen.append(event)

    service.events.subscribe(listen)
    clock.advance(599)
    assert (await service.sweep()).ended_rooms == ()
    clock.advance(1)
    result = await service.sweep()
    assert result.ended_rooms == (short.room.id,)
    assert seen == [MeetingEnded(short.room.id, EndReason.EXPIRED)]
    assert {i.state for i in await store.invites_for_room(short.room.id)} == {InviteState.EXPIRED}
    # Invites live a day (invite_ttl) even in a longer room.
    clock.advance(24 * 3600)
    result = await service.sweep()
    assert result.ended_rooms == ()
    assert result.expired_invites == 2
    room = await store.get_room(long.room.id)
    assert room is not None and room.state is RoomState.OPEN
    with pytest.raises(InviteExpired):
        await service.redeem(long.room.id, credential(long, 0))


async def test_audit_log_records_events(
    service: MeetingService, store: Store, host: UserRef
) -> None:
    made = await service.create_room(host, [user("ana")], "Sync")
    await service.redeem(made.room.id, credential(made, 0))
    await service.lock(host, made.room.id)
    await service.unlock(host, made.room.id)
    await service.end(host, made.room.id)
    events = [(e.event, e.actor) for e in await store.audit_log(made.room.id)]
    assert events == [
        ("room_created", "console:local:hana"),
        ("invite_issued", "console:local:hana"),
        ("invite_issued", "console:local:hana"),
        ("invite_redeemed", "ana"),
        ("room_locked", "console:local:hana"),
        ("room_unlocked", "console:local:hana"),
        ("room_ended", "console:local:hana"),
        ("invite_revoked", "console:local:hana"),
    ]


@sqlite_only
async def test_audit_log_is_append_only(
    service: MeetingService, store: SqliteStore, host: UserRef
) -> None:
    made = await service.create_room(host, [user("ana")], "Sync")
    await service.end(host, made.room.id)
    assert len(await store.audit_log(made.room.id)) == 6  # so there is a row to change
    with sqlite3.connect(store.path) as raw:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            raw.execute("UPDATE audit SET actor = 'x'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            raw.execute("DELETE FROM audit")
    raw.close()


async def test_reissue_replaces_an_unused_link(
    service: MeetingService, store: Store, host: UserRef
) -> None:
    made = await service.create_room(host, [user("ana")], "Sync")
    old = credential(made, 0)
    fresh = await service.reissue(user("ana"), made.room.id)
    assert fresh.invite.role.value == "guest"
    with pytest.raises(InviteRevoked):
        await service.redeem(made.room.id, old)
    admission = await service.redeem(made.room.id, fresh.link.reveal().split("#", 1)[1])
    assert admission.participant.user_id == "ana"
    with pytest.raises(CommandError, match="already used at 2027-01-15 08:00 UTC"):
        await service.reissue(user("ana"), made.room.id)
    with pytest.raises(NotInvited):
        await service.reissue(user("eve"), made.room.id)
    with pytest.raises(UnknownRoom):
        await service.reissue(user("ana", workspace="elsewhere"), made.room.id)
    host_link = await service.reissue(host, made.room.id)
    assert host_link.invite.role.value == "host"
    events = [e.event for e in await store.audit_log(made.room.id)]
    assert events.count("invite_revoked") == 2


async def test_a_host_cannot_kick_someone_from_another_meeting(
    service: MeetingService, host: UserRef
) -> None:
    mine = await service.create_room(host, [user("ana")], "Mine")
    other = await service.create_room(user("olga"), [user("ben")], "Theirs")
    me = await service.redeem(mine.room.id, mine.host_invite.link.reveal().split("#", 1)[1])
    ben = await service.redeem(other.room.id, credential(other, 0))
    with pytest.raises(CommandError, match="no such participant in this meeting"):
        await service.kick(me.participant.id, ben.participant.id)
    # Ben is untouched: his session still resumes.
    assert (await service.resume(ben.resume_token.reveal())).participant.id == ben.participant.id
