"""The ``participants`` table: one row a session, made by redeeming an invite."""

from __future__ import annotations

import aiosqlite

from bot.core.models import Participant
from bot.store.sqlite.connection import changed, scalar
from bot.store.sqlite.records import Records

PARTICIPANTS = Records("participants", Participant)


async def for_room(db: aiosqlite.Connection, room_id: str) -> list[Participant]:
    return await PARTICIPANTS.where(db, "room_id = ? ORDER BY sender_index", (room_id,))


async def next_sender_index(db: aiosqlite.Connection, room_id: str) -> int:
    sql = "SELECT coalesce(max(sender_index), 0) + 1 FROM participants WHERE room_id = ?"
    return int(await scalar(db, sql, (room_id,)))


async def active_holder(db: aiosqlite.Connection, invite_id: str) -> str | None:
    """The active session that redeemed ``invite_id``, if any."""
    sql = "SELECT id FROM participants WHERE invite_id = ? AND state = 'active'"
    holder = await scalar(db, sql, (invite_id,))
    return None if holder is None else str(holder)


async def revoke(db: aiosqlite.Connection, participant_id: str) -> bool:
    """Revoke the session if it is active."""
    sql = "UPDATE participants SET state = 'revoked' WHERE id = ? AND state = 'active'"
    return await changed(db, sql, (participant_id,)) == 1


async def revoke_room(db: aiosqlite.Connection, room_id: str) -> int:
    """Revoke every active session in the room; how many there were."""
    sql = "UPDATE participants SET state = 'revoked' WHERE room_id = ? AND state = 'active'"
    return await changed(db, sql, (room_id,))


async def replace_resume(db: aiosqlite.Connection, before: Participant, after: Participant) -> bool:
    """Store ``after``'s resume hashes if the session is active and still holds ``before``'s."""
    sql = (
        "UPDATE participants SET resume_hash = ?, prev_resume_hash = ? "
        "WHERE id = ? AND state = 'active' AND resume_hash = ? AND prev_resume_hash IS ?"
    )
    new = (after.resume_hash, after.prev_resume_hash)
    held = (before.resume_hash, before.prev_resume_hash)
    return await changed(db, sql, (*new, before.id, *held)) == 1


async def admit(db: aiosqlite.Connection, room_id: str, participant_id: str, now: float) -> bool:
    """Mark the session admitted at ``now`` if it is active in ``room_id`` and not yet admitted."""
    sql = (
        "UPDATE participants SET admitted_at = ? "
        "WHERE id = ? AND room_id = ? AND state = 'active' AND admitted_at IS NULL"
    )
    return await changed(db, sql, (now, participant_id, room_id)) == 1
