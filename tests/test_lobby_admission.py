"""MeetingService.admit: letting a guest out of the lobby is the host's decision, and on record.

The hub knows who waits (connections are its business) and passes that in; the service decides
whether this participant may let that one in, and writes it to the audit log as it does a kick.
"""

from __future__ import annotations

import pytest

from bot.core.models import UserRef
from bot.core.service import MeetingService
from bot.errors import NotHost, NotWaiting
from bot.store.sqlite import SqliteStore
from tests.support.fakes import FakeClock, user
from tests.support.meeting import credential


async def lobby_room(service: MeetingService, host: UserRef) -> tuple[str, str, str, str]:
    """A lobby room: the ids of the room, its host's session, and Ana's and Ben's."""
    made = await service.create_room(host, [user("ana"), user("ben")], "Sync", lobby=True)
    room_id = made.room.id
    seats = [await service.redeem(room_id, credential(made.host_invite))]
    seats += [await service.redeem(room_id, credential(i)) for i in made.invites]
    host_seat, ana, ben = (a.participant.id for a in seats)
    return room_id, host_seat, ana, ben


async def admissions(store: SqliteStore, room_id: str) -> list[tuple[str, object]]:
    """Who let whom in, by the audit log."""
    log = await store.audit_log(room_id)
    return [(e.actor, e.detail["participant"]) for e in log if e.event == "participant_admitted"]


async def test_the_host_admits_a_waiting_guest_on_record(
    service: MeetingService, store: SqliteStore, host: UserRef, clock: FakeClock
) -> None:
    room_id, host_seat, ana, ben = await lobby_room(service, host)
    clock.advance(60)

    await service.admit(host_seat, ana, waiting=[ana, ben])

    # The host's chat identity, as a kick from chat or from the meeting records it.
    assert await admissions(store, room_id) == [(f"console:local:{host.user_id}", ana)]
    log = await store.audit_log(room_id)
    assert [e.at for e in log if e.event == "participant_admitted"] == [clock.now()]


async def test_a_guest_cannot_admit_and_nothing_is_recorded(
    service: MeetingService, store: SqliteStore, host: UserRef
) -> None:
    room_id, _, ana, ben = await lobby_room(service, host)
    with pytest.raises(NotHost):
        await service.admit(ana, ben, waiting=[ben])
    assert await admissions(store, room_id) == []


@pytest.mark.parametrize("who", ["admitted_already", "unknown", "the_host"])
async def test_only_someone_waiting_can_be_admitted(
    who: str, service: MeetingService, store: SqliteStore, host: UserRef
) -> None:
    room_id, host_seat, ana, ben = await lobby_room(service, host)
    target = {"admitted_already": ana, "unknown": "pNoSuchPerson", "the_host": host_seat}[who]
    with pytest.raises(NotWaiting) as refused:
        await service.admit(host_seat, target, waiting=[ben])
    assert refused.value.code == "not_waiting"
    assert await admissions(store, room_id) == []
