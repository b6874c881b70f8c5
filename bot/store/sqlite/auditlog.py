"""The ``audit`` table: append-only (triggers refuse updates and deletes), in order."""

from __future__ import annotations

import json

import aiosqlite

from bot.core.models import AuditEvent
from bot.store.sqlite.connection import every


async def append(db: aiosqlite.Connection, *events: AuditEvent) -> None:
    for e in events:
        await db.execute(
            "INSERT INTO audit (at, room_id, actor, event, detail) VALUES (?, ?, ?, ?, ?)",
            (e.at, e.room_id, e.actor, e.event, json.dumps(e.detail, sort_keys=True)),
        )


async def read(db: aiosqlite.Connection, room_id: str | None) -> list[AuditEvent]:
    sql = "SELECT at, room_id, actor, event, detail FROM audit"
    params: tuple[str, ...] = ()
    if room_id is not None:
        sql += " WHERE room_id = ?"
        params = (room_id,)
    rows = await every(db, sql + " ORDER BY seq", params)
    return [
        AuditEvent(at=r[0], room_id=r[1], actor=r[2], event=r[3], detail=json.loads(r[4]))
        for r in rows
    ]
