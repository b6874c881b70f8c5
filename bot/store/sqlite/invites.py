"""The ``invites`` table: one row an invite, holding only the hash of its secret."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import aiosqlite

from bot.core.models import Invite, InviteState
from bot.store.sqlite.connection import changed, every
from bot.store.sqlite.records import Records

INVITES = Records("invites", Invite)


async def for_room(db: aiosqlite.Connection, room_id: str) -> list[Invite]:
    return await INVITES.where(db, "room_id = ? ORDER BY created_at, id", (room_id,))


async def revoke(
    db: aiosqlite.Connection, invite_id: str, replaceable: Collection[InviteState]
) -> bool:
    """Revoke the invite if it is in one of the ``replaceable`` states.

    A spent invite becomes revoked too; when it was used stays in the audit log and in its
    session's joined_at (the schema ties redeemed_at to the redeemed state).
    """
    states = [s.value for s in replaceable]
    sql = (
        "UPDATE invites SET state = 'revoked', redeemed_at = NULL "
        f"WHERE id = ? AND state IN ({', '.join('?' for _ in states)})"
    )
    return await changed(db, sql, (invite_id, *states)) == 1


async def redeem(db: aiosqlite.Connection, invite: Invite, now: float) -> bool:
    """Mark the invite redeemed at ``now`` if it is still in the state it was loaded in."""
    sql = "UPDATE invites SET state = 'redeemed', redeemed_at = ? WHERE id = ? AND state = ?"
    return await changed(db, sql, (now, invite.id, invite.state.value)) == 1


async def close_for_room(
    db: aiosqlite.Connection, room_id: str, outcome: InviteState
) -> list[tuple[str, str]]:
    """Turn the room's issued invites into ``outcome``."""
    return await _close(db, "room_id = ? AND state = 'issued'", (room_id,), outcome)


async def expire_due(db: aiosqlite.Connection, now: float) -> list[tuple[str, str]]:
    """Expire every issued invite whose expiry has come by ``now``."""
    where = "state = 'issued' AND expires_at <= ?"
    return await _close(db, where, (now,), InviteState.EXPIRED)


async def _close(
    db: aiosqlite.Connection, where: str, params: tuple[Any, ...], outcome: InviteState
) -> list[tuple[str, str]]:
    """The ``(invite id, room id)`` of each invite closed."""
    rows = await every(db, f"SELECT id, room_id FROM invites WHERE {where}", params)
    await db.execute(f"UPDATE invites SET state = ? WHERE {where}", (outcome.value, *params))
    return [(r[0], r[1]) for r in rows]
