"""The ``rooms`` table: one row a meeting room."""

from __future__ import annotations

import aiosqlite

from bot.core.models import Room, RoomState, RoomSummary
from bot.store.sqlite.connection import changed, every, one
from bot.store.sqlite.records import Records

ROOMS = Records("rooms", Room)


async def hosted_by(
    db: aiosqlite.Connection, platform: str, workspace: str, user_id: str, now: float
) -> list[RoomSummary]:
    rows = await every(
        db,
        f"""
        SELECT {ROOMS.columns},
            (SELECT count(*) FROM invites i WHERE i.room_id = rooms.id),
            (SELECT count(*) FROM participants p WHERE p.room_id = rooms.id)
        FROM rooms
        WHERE platform = ? AND workspace = ? AND host_user_id = ?
            AND state != 'ended' AND expires_at > ?
        ORDER BY created_at DESC, id
        """,
        (platform, workspace, user_id, now),
    )
    counts = ROOMS.width
    return [
        RoomSummary(room=ROOMS.from_row(r), invited=r[counts], joined=r[counts + 1]) for r in rows
    ]


async def set_state(
    db: aiosqlite.Connection, room_id: str, expected: RoomState, new: RoomState, now: float
) -> bool:
    """Move from ``expected`` to ``new`` unless the room is past its expiry at ``now``."""
    sql = "UPDATE rooms SET state = ? WHERE id = ? AND state = ? AND expires_at > ?"
    return await changed(db, sql, (new.value, room_id, expected.value, now)) == 1


async def state_is(db: aiosqlite.Connection, room_id: str, state: RoomState) -> bool:
    found = await one(db, "SELECT 1 FROM rooms WHERE id = ? AND state = ?", (room_id, state.value))
    return found is not None


async def end(db: aiosqlite.Connection, room_id: str, now: float) -> bool:
    """Mark the room ended at ``now``; False if it already was."""
    sql = "UPDATE rooms SET state = 'ended', ended_at = ? WHERE id = ? AND state != 'ended'"
    return await changed(db, sql, (now, room_id)) == 1


async def due(db: aiosqlite.Connection, now: float) -> list[str]:
    """Rooms not yet ended whose expiry has come by ``now``."""
    sql = "SELECT id FROM rooms WHERE state != 'ended' AND expires_at <= ? ORDER BY expires_at, id"
    return [r[0] for r in await every(db, sql, (now,))]
