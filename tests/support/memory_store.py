"""``MemoryStore``: the ``Store`` protocol in dicts, for the fast tier of service tests.

It decides nothing the SQLite store does not: the rules live in ``bot.core.models`` and the
audit wording in ``bot.core.audit``, so both stores share them. Each transaction runs under
one asyncio lock and works on a copy of the tables that replaces them only if it finishes,
so a transaction that raises changes nothing, as a rolled-back SQLite one does. Every call
lets other tasks run first, as a call to a database does, so concurrent callers interleave
between their loads and their writes and conditional writes really lose races here too.
What this store cannot show is anything about processes, files or crashes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace

from bot.core import audit
from bot.core.models import (
    AuditEvent,
    EndReason,
    Invite,
    InviteState,
    Participant,
    ParticipantState,
    Room,
    RoomState,
    RoomSummary,
)
from bot.errors import StoreError
from bot.store.base import Replaced, SweepResult


@dataclass
class _Tables:
    rooms: dict[str, Room] = field(default_factory=dict)
    invites: dict[str, Invite] = field(default_factory=dict)
    participants: dict[str, Participant] = field(default_factory=dict)
    audit: list[AuditEvent] = field(default_factory=list)

    def copy(self) -> _Tables:
        # The records are frozen: copying the containers is a full snapshot.
        return _Tables(
            dict(self.rooms), dict(self.invites), dict(self.participants), list(self.audit)
        )

    def append(self, *events: AuditEvent) -> None:
        # Through JSON, as the SQLite store keeps the detail, so both read back the same.
        for e in events:
            self.audit.append(replace(e, detail=json.loads(json.dumps(e.detail))))

    def insert_invites(self, invites: Iterable[Invite], actor: str, now: float) -> None:
        for invite in invites:
            if invite.id in self.invites or invite.room_id not in self.rooms:
                raise StoreError(f"invite {invite.id} clashes or has no room")
            self.invites[invite.id] = invite
            self.append(audit.invite_issued(invite, actor, now))

    def revoke_session(self, participant_id: str, actor: str, now: float) -> bool:
        found = self.participants.get(participant_id)
        if found is None or found.state is not ParticipantState.ACTIVE:
            return False
        self.participants[found.id] = replace(found, state=ParticipantState.REVOKED)
        self.append(audit.participant_kicked(found.room_id, found.id, actor, now))
        return True

    def end(self, room_id: str, actor: str, now: float, reason: EndReason) -> bool:
        room = self.rooms.get(room_id)
        if room is None or room.state is RoomState.ENDED:
            return False
        self.rooms[room_id] = replace(room, state=RoomState.ENDED, ended_at=now)
        outcome = reason.invite_outcome
        closed = self.close_invites(lambda i: i.room_id == room_id, outcome)
        sessions = [
            p
            for p in self.participants.values()
            if p.room_id == room_id and p.state is ParticipantState.ACTIVE
        ]
        for p in sessions:
            self.participants[p.id] = replace(p, state=ParticipantState.REVOKED)
        self.append(
            audit.room_ended(room_id, reason, len(sessions), actor, now),
            *(audit.invite_closed(room_id, i.id, outcome, actor, now) for i in closed),
        )
        return True

    def close_invites(self, which: Callable[[Invite], bool], outcome: InviteState) -> list[Invite]:
        """Turn the issued invites ``which`` picks into ``outcome``."""
        closed = [i for i in self.invites.values() if i.state is InviteState.ISSUED and which(i)]
        for i in closed:
            self.invites[i.id] = replace(i, state=outcome)
        return closed


class MemoryStore:
    def __init__(self) -> None:
        self._tables: _Tables | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        if self._tables is None:
            self._tables = _Tables()

    async def close(self) -> None:
        """Keeps the tables: reopening finds them, as reopening a file does."""

    def _now_open(self) -> _Tables:
        if self._tables is None:
            raise StoreError("The store is not open.")
        return self._tables

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[_Tables]:
        await asyncio.sleep(0)
        async with self._lock:
            work = self._now_open().copy()
            yield work
            self._tables = work

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[_Tables]:
        await asyncio.sleep(0)
        async with self._lock:
            yield self._now_open()

    # --- rooms ---------------------------------------------------------------------------

    async def create_room(self, room: Room, invites: Sequence[Invite], actor: str) -> None:
        async with self._write() as t:
            if room.id in t.rooms:
                raise StoreError(f"room {room.id} exists")
            t.rooms[room.id] = room
            t.append(audit.room_created(room, actor))
            t.insert_invites(invites, actor, room.created_at)

    async def get_room(self, room_id: str) -> Room | None:
        async with self._read() as t:
            return t.rooms.get(room_id)

    async def rooms_hosted_by(
        self, platform: str, workspace: str, user_id: str, now: float
    ) -> list[RoomSummary]:
        async with self._read() as t:
            hosted = [
                r
                for r in t.rooms.values()
                if (r.platform, r.workspace, r.host_user_id) == (platform, workspace, user_id)
                and not r.is_over(now)
            ]
            hosted.sort(key=lambda r: r.id)
            hosted.sort(key=lambda r: r.created_at, reverse=True)
            return [
                RoomSummary(
                    room=r,
                    invited=sum(i.room_id == r.id for i in t.invites.values()),
                    joined=sum(p.room_id == r.id for p in t.participants.values()),
                )
                for r in hosted
            ]

    async def set_room_state(
        self, room_id: str, expected: RoomState, new: RoomState, actor: str, now: float
    ) -> bool:
        async with self._write() as t:
            room = t.rooms.get(room_id)
            if room is None or room.state is not expected or now >= room.expires_at:
                return False
            t.rooms[room_id] = replace(room, state=new)
            t.append(audit.room_state_changed(room_id, new, actor, now))
            return True

    async def end_room(self, room_id: str, actor: str, now: float, reason: EndReason) -> bool:
        async with self._write() as t:
            return t.end(room_id, actor, now, reason)

    # --- invites -------------------------------------------------------------------------

    async def add_invites(
        self, room_id: str, invites: Sequence[Invite], actor: str, now: float
    ) -> bool:
        async with self._write() as t:
            room = t.rooms.get(room_id)
            if room is None or room.state is RoomState.ENDED:
                return False
            t.insert_invites(invites, actor, now)
            return True

    async def replace_invite(
        self,
        old_invite_id: str,
        replaceable: Collection[InviteState],
        new: Invite,
        actor: str,
        now: float,
    ) -> Replaced | None:
        async with self._write() as t:
            old = t.invites.get(old_invite_id)
            if old is None or old.state not in replaceable:
                return None
            t.invites[old.id] = replace(old, state=InviteState.REVOKED, redeemed_at=None)
            t.append(audit.invite_reissued(new.room_id, old.id, actor, now))
            holder = next(
                (
                    p.id
                    for p in t.participants.values()
                    if p.invite_id == old.id and p.state is ParticipantState.ACTIVE
                ),
                None,
            )
            kicked = holder if holder and t.revoke_session(holder, actor, now) else None
            t.insert_invites([new], actor, now)
            return Replaced(kicked)

    async def get_invite(self, invite_id: str) -> Invite | None:
        async with self._read() as t:
            return t.invites.get(invite_id)

    async def invites_for_room(self, room_id: str) -> list[Invite]:
        async with self._read() as t:
            found = [i for i in t.invites.values() if i.room_id == room_id]
            return sorted(found, key=lambda i: (i.created_at, i.id))

    # --- admission and sessions ----------------------------------------------------------

    async def room_and_invite(
        self, room_id: str, invite_id: str
    ) -> tuple[Room | None, Invite | None]:
        async with self._read() as t:
            return t.rooms.get(room_id), t.invites.get(invite_id)

    async def redeem_invite(
        self, room: Room, invite: Invite, participant_id: str, resume_hash: bytes, now: float
    ) -> Participant | None:
        async with self._write() as t:
            current_room, current = t.rooms.get(room.id), t.invites.get(invite.id)
            if current_room is None or current_room.state is not room.state:
                return None
            if current is None or current.state is not invite.state:
                return None
            if participant_id in t.participants:
                raise StoreError(f"participant {participant_id} exists")
            t.invites[invite.id] = replace(current, state=InviteState.REDEEMED, redeemed_at=now)
            taken = [p.sender_index for p in t.participants.values() if p.room_id == room.id]
            seated = invite.seat(participant_id, max(taken, default=0) + 1, resume_hash, now)
            t.participants[seated.id] = seated
            t.append(audit.invite_redeemed(invite, seated.id, now))
            return seated

    async def participants_for_room(self, room_id: str) -> list[Participant]:
        async with self._read() as t:
            found = [p for p in t.participants.values() if p.room_id == room_id]
            return sorted(found, key=lambda p: p.sender_index)

    async def find_session(self, participant_id: str) -> tuple[Room, Participant] | None:
        async with self._read() as t:
            found = t.participants.get(participant_id)
            return None if found is None else (t.rooms[found.room_id], found)

    async def revoke_session(self, participant_id: str, actor: str, now: float) -> bool:
        async with self._write() as t:
            return t.revoke_session(participant_id, actor, now)

    async def replace_resume(self, before: Participant, after: Participant) -> bool:
        async with self._write() as t:
            found = t.participants.get(before.id)
            if (
                found is None
                or found.state is not ParticipantState.ACTIVE
                or (found.resume_hash, found.prev_resume_hash)
                != (before.resume_hash, before.prev_resume_hash)
            ):
                return False
            t.participants[found.id] = replace(
                found, resume_hash=after.resume_hash, prev_resume_hash=after.prev_resume_hash
            )
            return True

    async def admit_participant(
        self, room_id: str, participant_id: str, actor: str, now: float
    ) -> bool:
        async with self._write() as t:
            found = t.participants.get(participant_id)
            if (
                found is None
                or found.room_id != room_id
                or found.state is not ParticipantState.ACTIVE
                or found.admitted_at is not None
            ):
                return False
            t.participants[found.id] = replace(found, admitted_at=now)
            t.append(audit.participant_admitted(room_id, participant_id, actor, now))
            return True

    # --- audit and housekeeping ----------------------------------------------------------

    async def record_link_reuse(
        self, room_id: str, invite_id: str, participant_id: str, actor: str, now: float
    ) -> None:
        async with self._write() as t:
            t.append(audit.link_reused(room_id, invite_id, participant_id, actor, now))

    async def sweep(self, now: float) -> SweepResult:
        async with self._write() as t:
            live = [r for r in t.rooms.values() if r.state is not RoomState.ENDED]
            due = sorted((r for r in live if now >= r.expires_at), key=lambda r: r.expires_at)
            ended = [r.id for r in due if t.end(r.id, audit.SWEEPER, now, EndReason.EXPIRED)]
            stale = t.close_invites(lambda i: now >= i.expires_at, InviteState.EXPIRED)
            t.append(
                *(
                    audit.invite_closed(i.room_id, i.id, InviteState.EXPIRED, audit.SWEEPER, now)
                    for i in stale
                )
            )
        return SweepResult(ended_rooms=tuple(ended), expired_invites=len(stale))

    async def audit_log(self, room_id: str | None = None) -> list[AuditEvent]:
        async with self._read() as t:
            return [e for e in t.audit if room_id is None or e.room_id == room_id]

    async def check_writable(self) -> None:
        async with self._lock:
            self._now_open()
