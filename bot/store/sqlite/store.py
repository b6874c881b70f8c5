"""``SqliteStore``: the ``Store`` protocol as transactions over the table modules."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path

import aiosqlite

from bot.core import audit
from bot.core.models import (
    AuditEvent,
    EndReason,
    Invite,
    InviteState,
    Participant,
    Room,
    RoomState,
    RoomSummary,
)
from bot.store.base import Replaced, SweepResult
from bot.store.sqlite import auditlog
from bot.store.sqlite import invites as invite_table
from bot.store.sqlite import participants as participant_table
from bot.store.sqlite import rooms as room_table
from bot.store.sqlite.connection import Database
from bot.store.sqlite.invites import INVITES
from bot.store.sqlite.participants import PARTICIPANTS
from bot.store.sqlite.rooms import ROOMS


class SqliteStore:
    """``Store`` on one SQLite file (see ``Database`` for how transactions are run)."""

    def __init__(self, path: str | Path) -> None:
        self._db = Database(path)

    @property
    def path(self) -> Path:
        return self._db.path

    async def open(self) -> None:
        await self._db.open()

    async def close(self) -> None:
        await self._db.close()

    def _conn(self) -> aiosqlite.Connection:
        return self._db.conn()

    # --- rooms ---------------------------------------------------------------------------

    async def create_room(self, room: Room, invites: Sequence[Invite], actor: str) -> None:
        async with self._db.write() as db:
            await ROOMS.insert(db, room)
            await auditlog.append(db, audit.room_created(room, actor))
            await self._insert_invites(db, invites, actor, room.created_at)

    async def get_room(self, room_id: str) -> Room | None:
        async with self._db.read() as db:
            return await ROOMS.get(db, room_id)

    async def rooms_hosted_by(
        self, platform: str, workspace: str, user_id: str, now: float
    ) -> list[RoomSummary]:
        async with self._db.read() as db:
            return await room_table.hosted_by(db, platform, workspace, user_id, now)

    async def set_room_state(
        self, room_id: str, expected: RoomState, new: RoomState, actor: str, now: float
    ) -> bool:
        async with self._db.write() as db:
            if not await room_table.set_state(db, room_id, expected, new, now):
                return False
            await auditlog.append(db, audit.room_state_changed(room_id, new, actor, now))
            return True

    async def end_room(self, room_id: str, actor: str, now: float, reason: EndReason) -> bool:
        async with self._db.write() as db:
            return await self._end(db, room_id, actor, now, reason)

    async def _end(
        self, db: aiosqlite.Connection, room_id: str, actor: str, now: float, reason: EndReason
    ) -> bool:
        if not await room_table.end(db, room_id, now):
            return False
        outcome = reason.invite_outcome
        closed = await invite_table.close_for_room(db, room_id, outcome)
        revoked = await participant_table.revoke_room(db, room_id)
        await auditlog.append(
            db,
            audit.room_ended(room_id, reason, revoked, actor, now),
            *(audit.invite_closed(room_id, i, outcome, actor, now) for i, _ in closed),
        )
        return True

    # --- invites -------------------------------------------------------------------------

    async def add_invites(
        self, room_id: str, invites: Sequence[Invite], actor: str, now: float
    ) -> bool:
        async with self._db.write() as db:
            room = await ROOMS.get(db, room_id)
            if room is None or room.state is RoomState.ENDED:
                return False
            await self._insert_invites(db, invites, actor, now)
            return True

    async def replace_invite(
        self,
        old_invite_id: str,
        replaceable: Collection[InviteState],
        new: Invite,
        actor: str,
        now: float,
    ) -> Replaced | None:
        async with self._db.write() as db:
            if not await invite_table.revoke(db, old_invite_id, replaceable):
                return None
            await auditlog.append(db, audit.invite_reissued(new.room_id, old_invite_id, actor, now))
            holder = await participant_table.active_holder(db, old_invite_id)
            kicked = None
            if holder is not None and await self._revoke_session(db, holder, actor, now):
                kicked = holder
            await self._insert_invites(db, [new], actor, now)
            return Replaced(kicked)

    async def get_invite(self, invite_id: str) -> Invite | None:
        async with self._db.read() as db:
            return await INVITES.get(db, invite_id)

    async def invites_for_room(self, room_id: str) -> list[Invite]:
        async with self._db.read() as db:
            return await invite_table.for_room(db, room_id)

    async def _insert_invites(
        self, db: aiosqlite.Connection, invites: Sequence[Invite], actor: str, now: float
    ) -> None:
        for invite in invites:
            await INVITES.insert(db, invite)
            await auditlog.append(db, audit.invite_issued(invite, actor, now))

    # --- admission and sessions ----------------------------------------------------------

    async def room_and_invite(
        self, room_id: str, invite_id: str
    ) -> tuple[Room | None, Invite | None]:
        async with self._db.read() as db:
            return await ROOMS.get(db, room_id), await INVITES.get(db, invite_id)

    async def redeem_invite(
        self, room: Room, invite: Invite, participant_id: str, resume_hash: bytes, now: float
    ) -> Participant | None:
        async with self._db.write() as db:
            # Both conditions are checked under the write lock: the decision still holds.
            if not await room_table.state_is(db, room.id, room.state):
                return None
            if not await invite_table.redeem(db, invite, now):
                return None
            index = await participant_table.next_sender_index(db, room.id)
            seated = invite.seat(participant_id, index, resume_hash, now)
            await PARTICIPANTS.insert(db, seated)
            await auditlog.append(db, audit.invite_redeemed(invite, seated.id, now))
            return seated

    async def participants_for_room(self, room_id: str) -> list[Participant]:
        async with self._db.read() as db:
            return await participant_table.for_room(db, room_id)

    async def find_session(self, participant_id: str) -> tuple[Room, Participant] | None:
        async with self._db.read() as db:
            participant = await PARTICIPANTS.get(db, participant_id)
            if participant is None:
                return None
            room = await ROOMS.get(db, participant.room_id)
        assert room is not None  # foreign key
        return room, participant

    async def revoke_session(self, participant_id: str, actor: str, now: float) -> bool:
        async with self._db.write() as db:
            return await self._revoke_session(db, participant_id, actor, now)

    async def _revoke_session(
        self, db: aiosqlite.Connection, participant_id: str, actor: str, now: float
    ) -> bool:
        found = await PARTICIPANTS.get(db, participant_id)
        if found is None or not await participant_table.revoke(db, participant_id):
            return False
        await auditlog.append(db, audit.participant_kicked(found.room_id, found.id, actor, now))
        return True

    async def replace_resume(self, before: Participant, after: Participant) -> bool:
        async with self._db.write() as db:
            return await participant_table.replace_resume(db, before, after)

    async def admit_participant(
        self, room_id: str, participant_id: str, actor: str, now: float
    ) -> bool:
        async with self._db.write() as db:
            if not await participant_table.admit(db, room_id, participant_id, now):
                return False
            await auditlog.append(
                db, audit.participant_admitted(room_id, participant_id, actor, now)
            )
            return True

    # --- audit and housekeeping ----------------------------------------------------------

    async def record_link_reuse(
        self, room_id: str, invite_id: str, participant_id: str, actor: str, now: float
    ) -> None:
        await self._record(audit.link_reused(room_id, invite_id, participant_id, actor, now))

    async def _record(self, event: AuditEvent) -> None:
        async with self._db.write() as db:
            await auditlog.append(db, event)

    async def sweep(self, now: float) -> SweepResult:
        async with self._db.write() as db:
            ended = [
                room_id
                for room_id in await room_table.due(db, now)
                if await self._end(db, room_id, audit.SWEEPER, now, EndReason.EXPIRED)
            ]
            stale = await invite_table.expire_due(db, now)
            await auditlog.append(
                db,
                *(
                    audit.invite_closed(room_id, i, InviteState.EXPIRED, audit.SWEEPER, now)
                    for i, room_id in stale
                ),
            )
        return SweepResult(ended_rooms=tuple(ended), expired_invites=len(stale))

    async def audit_log(self, room_id: str | None = None) -> list[AuditEvent]:
        async with self._db.read() as db:
            return await auditlog.read(db, room_id)

    async def check_writable(self) -> None:
        await self._db.check_writable()
