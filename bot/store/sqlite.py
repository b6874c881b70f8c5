"""The embedded store: one SQLite file in WAL mode, driven through aiosqlite."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

import aiosqlite

from bot.core.models import (
    AuditEvent,
    Invite,
    InviteState,
    Participant,
    ParticipantState,
    Role,
    Room,
    RoomState,
    RoomSummary,
)
from bot.errors import (
    BadInvite,
    InviteAlreadyUsed,
    InviteExpired,
    InviteRevoked,
    RoomEnded,
    RoomLocked,
    StoreError,
    UnknownRoom,
)
from bot.store.base import SweepResult
from bot.store.migrations import MIGRATIONS

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS: Final = 5_000
BUSY_RETRIES: Final = 3

_ROOM_COLUMNS = (
    "id, topic, platform, workspace, host_user_id, host_name, state, lobby, "
    "created_at, expires_at, ended_at"
)
_INVITE_COLUMNS = (
    "id, room_id, user_id, display_name, role, state, created_at, expires_at, redeemed_at, "
    "secret_hash"
)
_PARTICIPANT_COLUMNS = (
    "id, room_id, invite_id, user_id, display_name, role, sender_index, state, joined_at, "
    "resume_hash, prev_resume_hash"
)


def _room(row: Sequence[Any]) -> Room:
    return Room(
        id=row[0],
        topic=row[1],
        platform=row[2],
        workspace=row[3],
        host_user_id=row[4],
        host_name=row[5],
        state=RoomState(row[6]),
        lobby=bool(row[7]),
        created_at=row[8],
        expires_at=row[9],
        ended_at=row[10],
    )


def _invite(row: Sequence[Any]) -> Invite:
    return Invite(
        id=row[0],
        room_id=row[1],
        user_id=row[2],
        display_name=row[3],
        role=Role(row[4]),
        state=InviteState(row[5]),
        created_at=row[6],
        expires_at=row[7],
        redeemed_at=row[8],
        secret_hash=bytes(row[9]),
    )


def _participant(row: Sequence[Any]) -> Participant:
    return Participant(
        id=row[0],
        room_id=row[1],
        invite_id=row[2],
        user_id=row[3],
        display_name=row[4],
        role=Role(row[5]),
        sender_index=row[6],
        state=ParticipantState(row[7]),
        joined_at=row[8],
        resume_hash=bytes(row[9]),
        prev_resume_hash=None if row[10] is None else bytes(row[10]),
    )


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


class SqliteStore:
    """``Store`` on one SQLite file.

    One connection per store, its transactions serialised by an asyncio lock; ``BEGIN
    IMMEDIATE`` takes SQLite's write lock up front so that other processes (or other stores on
    the same file) wait for it under the busy timeout instead of failing half-way.
    """

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    @property
    def path(self) -> Path:
        return self._path

    async def open(self) -> None:
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            db = await aiosqlite.connect(self._path, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"Cannot open the database {self._path}: {exc}") from exc
        self._db = db
        try:
            await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            await db.execute("PRAGMA journal_mode = WAL")
            # FULL, not NORMAL: a redeemed invite that power loss "un-redeems" could be spent twice.
            await db.execute("PRAGMA synchronous = FULL")
            await db.execute("PRAGMA foreign_keys = ON")
            await self._migrate(db)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await db.close()

    async def _migrate(self, db: aiosqlite.Connection) -> None:
        async with self._lock:
            await self._begin(db)
            try:
                version = await self._scalar(db, "PRAGMA user_version")
                if version > len(MIGRATIONS):
                    raise StoreError(
                        f"The database {self._path} has schema version {version}, newer than "
                        f"this Conclave understands ({len(MIGRATIONS)}); upgrade Conclave."
                    )
                for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                    for statement in _statements(script):
                        await db.execute(statement)
                    await db.execute(f"PRAGMA user_version = {number}")
                    log.info("applied database migration %d", number)
            except BaseException:
                await db.execute("ROLLBACK")
                raise
            await db.execute("COMMIT")

    # --- plumbing ------------------------------------------------------------------------

    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreError("The store is not open.")
        return self._db

    async def _begin(self, db: aiosqlite.Connection) -> None:
        for attempt in range(1, BUSY_RETRIES + 1):
            try:
                await db.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or attempt == BUSY_RETRIES:
                    raise StoreError("The database is busy; please try again in a moment.") from exc
                log.warning("database busy, retrying (attempt %d)", attempt)
                await asyncio.sleep(0.05 * attempt)

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[aiosqlite.Connection]:
        db = self._conn()
        async with self._lock:
            await self._begin(db)
            try:
                yield db
            except BaseException:
                await db.execute("ROLLBACK")
                raise
            await db.execute("COMMIT")

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[aiosqlite.Connection]:
        db = self._conn()
        async with self._lock:
            yield db

    @staticmethod
    async def _scalar(db: aiosqlite.Connection, sql: str, params: Iterable[Any] = ()) -> Any:
        async with db.execute(sql, tuple(params)) as cur:
            row = await cur.fetchone()
        return None if row is None else row[0]

    @staticmethod
    async def _one(
        db: aiosqlite.Connection, sql: str, params: Iterable[Any] = ()
    ) -> Sequence[Any] | None:
        async with db.execute(sql, tuple(params)) as cur:
            row = await cur.fetchone()
        return None if row is None else tuple(row)

    @staticmethod
    async def _all(
        db: aiosqlite.Connection, sql: str, params: Iterable[Any] = ()
    ) -> list[Sequence[Any]]:
        async with db.execute(sql, tuple(params)) as cur:
            return [tuple(r) for r in await cur.fetchall()]

    @staticmethod
    async def _audit(
        db: aiosqlite.Connection,
        at: float,
        room_id: str | None,
        actor: str,
        event: str,
        **detail: Any,
    ) -> None:
        await db.execute(
            "INSERT INTO audit (at, room_id, actor, event, detail) VALUES (?, ?, ?, ?, ?)",
            (at, room_id, actor, event, json.dumps(detail, sort_keys=True)),
        )

    async def _insert_invites(
        self, db: aiosqlite.Connection, invites: Sequence[Invite], actor: str, now: float
    ) -> None:
        for inv in invites:
            await db.execute(
                f"INSERT INTO invites ({_INVITE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    inv.id,
                    inv.room_id,
                    inv.user_id,
                    inv.display_name,
                    inv.role.value,
                    inv.state.value,
                    inv.created_at,
                    inv.expires_at,
                    inv.redeemed_at,
                    inv.secret_hash,
                ),
            )
            await self._audit(
                db,
                now,
                inv.room_id,
                actor,
                "invite_issued",
                invite=inv.id,
                invitee=inv.user_id,
                role=inv.role.value,
                expires_at=inv.expires_at,
            )

    # --- rooms and invites ---------------------------------------------------------------

    async def create_room(self, room: Room, invites: Sequence[Invite], actor: str) -> None:
        async with self._write() as db:
            await db.execute(
                f"INSERT INTO rooms ({_ROOM_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    room.id,
                    room.topic,
                    room.platform,
                    room.workspace,
                    room.host_user_id,
                    room.host_name,
                    room.state.value,
                    int(room.lobby),
                    room.created_at,
                    room.expires_at,
                    room.ended_at,
                ),
            )
            await self._audit(
                db,
                room.created_at,
                room.id,
                actor,
                "room_created",
                platform=room.platform,
                workspace=room.workspace,
                lobby=room.lobby,
                expires_at=room.expires_at,
            )
            await self._insert_invites(db, invites, actor, room.created_at)

    async def add_invites(
        self, room_id: str, invites: Sequence[Invite], actor: str, now: float
    ) -> None:
        async with self._write() as db:
            row = await self._one(db, "SELECT state FROM rooms WHERE id = ?", (room_id,))
            if row is None:
                raise UnknownRoom(room_id)
            if row[0] == RoomState.ENDED:
                raise RoomEnded(room_id)
            await self._insert_invites(db, invites, actor, now)

    async def replace_invite(
        self, old_invite_id: str, new: Invite, actor: str, now: float, *, spent: bool = False
    ) -> str | None:
        states = "('issued', 'expired', 'redeemed')" if spent else "('issued', 'expired')"
        async with self._write() as db:
            # A spent invite becomes revoked too; when it was used stays in the audit log and
            # in its session's joined_at (the schema ties redeemed_at to the redeemed state).
            cur = await db.execute(
                "UPDATE invites SET state = 'revoked', redeemed_at = NULL "
                f"WHERE id = ? AND state IN {states}",
                (old_invite_id,),
            )
            if cur.rowcount != 1:
                raise InviteRevoked(old_invite_id) if spent else InviteAlreadyUsed(old_invite_id)
            await self._audit(
                db,
                now,
                new.room_id,
                actor,
                "invite_revoked",
                invite=old_invite_id,
                reason="reissued",
            )
            kicked = None
            if spent:
                holder = await self._scalar(
                    db,
                    "SELECT id FROM participants WHERE invite_id = ? AND state = 'active'",
                    (old_invite_id,),
                )
                if holder is not None and await self._revoke_session(db, holder, actor, now):
                    kicked = str(holder)
            await self._insert_invites(db, [new], actor, now)
            return kicked

    async def get_room(self, room_id: str) -> Room | None:
        async with self._read() as db:
            row = await self._one(db, f"SELECT {_ROOM_COLUMNS} FROM rooms WHERE id = ?", (room_id,))
        return None if row is None else _room(row)

    async def get_invite(self, invite_id: str) -> Invite | None:
        async with self._read() as db:
            row = await self._one(
                db, f"SELECT {_INVITE_COLUMNS} FROM invites WHERE id = ?", (invite_id,)
            )
        return None if row is None else _invite(row)

    async def invites_for_room(self, room_id: str) -> list[Invite]:
        async with self._read() as db:
            rows = await self._all(
                db,
                f"SELECT {_INVITE_COLUMNS} FROM invites WHERE room_id = ? ORDER BY created_at, id",
                (room_id,),
            )
        return [_invite(r) for r in rows]

    async def participants_for_room(self, room_id: str) -> list[Participant]:
        async with self._read() as db:
            rows = await self._all(
                db,
                f"SELECT {_PARTICIPANT_COLUMNS} FROM participants WHERE room_id = ? "
                "ORDER BY sender_index",
                (room_id,),
            )
        return [_participant(r) for r in rows]

    async def rooms_hosted_by(
        self, platform: str, workspace: str, user_id: str, now: float
    ) -> list[RoomSummary]:
        async with self._read() as db:
            rows = await self._all(
                db,
                f"""
                SELECT {_ROOM_COLUMNS},
                    (SELECT count(*) FROM invites i WHERE i.room_id = rooms.id),
                    (SELECT count(*) FROM participants p WHERE p.room_id = rooms.id)
                FROM rooms
                WHERE platform = ? AND workspace = ? AND host_user_id = ?
                    AND state != 'ended' AND expires_at > ?
                ORDER BY created_at DESC, id
                """,
                (platform, workspace, user_id, now),
            )
        return [RoomSummary(room=_room(r), invited=r[11], joined=r[12]) for r in rows]

    async def set_room_state(
        self, room_id: str, expected: RoomState, new: RoomState, actor: str, now: float
    ) -> bool:
        async with self._write() as db:
            cur = await db.execute(
                "UPDATE rooms SET state = ? WHERE id = ? AND state = ? AND expires_at > ?",
                (new.value, room_id, expected.value, now),
            )
            if cur.rowcount != 1:
                return False
            event = {RoomState.LOCKED: "room_locked", RoomState.OPEN: "room_unlocked"}[new]
            await self._audit(db, now, room_id, actor, event)
            return True

    async def _end(
        self, db: aiosqlite.Connection, room_id: str, actor: str, now: float, reason: str
    ) -> bool:
        cur = await db.execute(
            "UPDATE rooms SET state = 'ended', ended_at = ? WHERE id = ? AND state != 'ended'",
            (now, room_id),
        )
        if cur.rowcount != 1:
            return False
        # An invite that simply ran out of time says so; every other outstanding one is revoked.
        outcome = "expired" if reason == "expired" else "revoked"
        pending = await self._all(
            db, "SELECT id FROM invites WHERE room_id = ? AND state = 'issued'", (room_id,)
        )
        await db.execute(
            "UPDATE invites SET state = ? WHERE room_id = ? AND state = 'issued'",
            (outcome, room_id),
        )
        sessions = await db.execute(
            "UPDATE participants SET state = 'revoked' WHERE room_id = ? AND state = 'active'",
            (room_id,),
        )
        await self._audit(
            db, now, room_id, actor, "room_ended", reason=reason, sessions_revoked=sessions.rowcount
        )
        for (invite_id,) in pending:
            await self._audit(db, now, room_id, actor, f"invite_{outcome}", invite=invite_id)
        return True

    async def end_room(self, room_id: str, actor: str, now: float, reason: str) -> bool:
        async with self._write() as db:
            return await self._end(db, room_id, actor, now, reason)

    # --- admission -----------------------------------------------------------------------

    async def redeem_invite(
        self,
        room_id: str,
        invite_id: str,
        secret_hash: bytes,
        participant_id: str,
        resume_hash: bytes,
        now: float,
    ) -> tuple[Room, Participant]:
        async with self._write() as db:
            room_row = await self._one(
                db, f"SELECT {_ROOM_COLUMNS} FROM rooms WHERE id = ?", (room_id,)
            )
            if room_row is None:
                raise UnknownRoom(room_id)
            room = _room(room_row)
            inv_row = await self._one(
                db, f"SELECT {_INVITE_COLUMNS} FROM invites WHERE id = ?", (invite_id,)
            )
            if inv_row is None:
                raise BadInvite()
            invite = _invite(inv_row)
            # Hash compared in constant time; an invite for another room is as bad as a forgery.
            if (
                not hmac.compare_digest(invite.secret_hash, secret_hash)
                or invite.room_id != room_id
            ):
                raise BadInvite()
            if invite.state is InviteState.REDEEMED:
                raise InviteAlreadyUsed(invite.id, invite.redeemed_at)
            if invite.state is InviteState.REVOKED:
                raise InviteRevoked(invite.id)
            if invite.state is InviteState.EXPIRED or now >= invite.expires_at:
                raise InviteExpired(invite.id)
            if room.is_over(now):
                raise RoomEnded(room.id)
            if room.state is RoomState.LOCKED:
                raise RoomLocked(room.id)
            # The conditional UPDATE is what decides a race; the checks above only explain losses.
            cur = await db.execute(
                "UPDATE invites SET state = 'redeemed', redeemed_at = ? "
                "WHERE id = ? AND state = 'issued'",
                (now, invite.id),
            )
            if cur.rowcount != 1:
                used_at = await self._scalar(
                    db, "SELECT redeemed_at FROM invites WHERE id = ?", (invite.id,)
                )
                raise InviteAlreadyUsed(invite.id, used_at)
            index = await self._scalar(
                db,
                "SELECT coalesce(max(sender_index), 0) + 1 FROM participants WHERE room_id = ?",
                (room_id,),
            )
            participant = Participant(
                id=participant_id,
                room_id=room_id,
                invite_id=invite.id,
                user_id=invite.user_id,
                display_name=invite.display_name,
                role=invite.role,
                sender_index=int(index),
                state=ParticipantState.ACTIVE,
                joined_at=now,
                resume_hash=resume_hash,
            )
            await db.execute(
                f"INSERT INTO participants ({_PARTICIPANT_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    participant.id,
                    participant.room_id,
                    participant.invite_id,
                    participant.user_id,
                    participant.display_name,
                    participant.role.value,
                    participant.sender_index,
                    participant.state.value,
                    participant.joined_at,
                    participant.resume_hash,
                    participant.prev_resume_hash,
                ),
            )
            await self._audit(
                db,
                now,
                room_id,
                invite.user_id,
                "invite_redeemed",
                invite=invite.id,
                participant=participant.id,
            )
            return room, participant

    async def find_session(self, participant_id: str) -> tuple[Room, Participant] | None:
        async with self._read() as db:
            row = await self._one(
                db,
                f"SELECT {_PARTICIPANT_COLUMNS} FROM participants WHERE id = ?",
                (participant_id,),
            )
            if row is None:
                return None
            participant = _participant(row)
            room_row = await self._one(
                db, f"SELECT {_ROOM_COLUMNS} FROM rooms WHERE id = ?", (participant.room_id,)
            )
        assert room_row is not None  # foreign key
        return _room(room_row), participant

    async def revoke_session(self, participant_id: str, actor: str, now: float) -> bool:
        async with self._write() as db:
            return await self._revoke_session(db, participant_id, actor, now)

    async def _revoke_session(
        self, db: aiosqlite.Connection, participant_id: str, actor: str, now: float
    ) -> bool:
        room_id = await self._scalar(
            db, "SELECT room_id FROM participants WHERE id = ?", (participant_id,)
        )
        cur = await db.execute(
            "UPDATE participants SET state = 'revoked' WHERE id = ? AND state = 'active'",
            (participant_id,),
        )
        if cur.rowcount != 1:
            return False
        await self._audit(db, now, room_id, actor, "participant_kicked", participant=participant_id)
        return True

    async def rotate_resume(
        self, participant_id: str, presented_hash: bytes, new_hash: bytes
    ) -> Participant | None:
        async with self._write() as db:
            # Read and update in one write transaction, so concurrent resumes see each other's
            # rotation; the hashes are compared in constant time.
            row = await self._one(
                db,
                f"SELECT {_PARTICIPANT_COLUMNS} FROM participants "
                "WHERE id = ? AND state = 'active'",
                (participant_id,),
            )
            if row is None:
                return None
            found = _participant(row)
            if hmac.compare_digest(presented_hash, found.resume_hash):
                # The current token is used: the one before it dies now.
                previous = found.resume_hash
            elif found.prev_resume_hash is not None and hmac.compare_digest(
                presented_hash, found.prev_resume_hash
            ):
                previous = found.prev_resume_hash
            else:
                return None
            await db.execute(
                "UPDATE participants SET resume_hash = ?, prev_resume_hash = ? WHERE id = ?",
                (new_hash, previous, participant_id),
            )
            return replace(found, resume_hash=new_hash, prev_resume_hash=previous)

    async def record_link_reuse(
        self, room_id: str, invite_id: str, participant_id: str, actor: str, now: float
    ) -> None:
        async with self._write() as db:
            await self._audit(
                db, now, room_id, actor, "link_reused", invite=invite_id, participant=participant_id
            )

    # --- housekeeping --------------------------------------------------------------------

    async def sweep(self, now: float) -> SweepResult:
        async with self._write() as db:
            due = await self._all(
                db, "SELECT id FROM rooms WHERE state != 'ended' AND expires_at <= ?", (now,)
            )
            ended = []
            for (room_id,) in due:
                if await self._end(db, room_id, "sweeper", now, "expired"):
                    ended.append(room_id)
            stale = await self._all(
                db,
                "SELECT id, room_id FROM invites WHERE state = 'issued' AND expires_at <= ?",
                (now,),
            )
            await db.execute(
                "UPDATE invites SET state = 'expired' WHERE state = 'issued' AND expires_at <= ?",
                (now,),
            )
            for invite_id, room_id in stale:
                await self._audit(db, now, room_id, "sweeper", "invite_expired", invite=invite_id)
        return SweepResult(ended_rooms=tuple(ended), expired_invites=len(stale))

    async def audit_log(self, room_id: str | None = None) -> list[AuditEvent]:
        sql = "SELECT at, room_id, actor, event, detail FROM audit"
        params: tuple[str, ...] = ()
        if room_id is not None:
            sql += " WHERE room_id = ?"
            params = (room_id,)
        async with self._read() as db:
            rows = await self._all(db, sql + " ORDER BY seq", params)
        return [
            AuditEvent(at=r[0], room_id=r[1], actor=r[2], event=r[3], detail=json.loads(r[4]))
            for r in rows
        ]


def _statements(script: str) -> list[str]:
    """Split a migration into statements, keeping trigger bodies whole."""
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return statements
