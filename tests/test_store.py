"""The SQLite store's own guarantees: schema, pragmas, migrations."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bot.errors import StoreError
from bot.store.migrations import SCHEMA_VERSION
from bot.store.sqlite import SqliteStore


async def test_fresh_database_is_migrated_with_wal_and_foreign_keys(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "conclave.db"
    store = SqliteStore(path)
    await store.open()
    await store.close()
    assert path.exists(), "the parent folders and file are created on first run"
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    db.close()
    assert {"rooms", "invites", "participants", "audit"} <= tables
    # Reopening an up-to-date database changes nothing.
    again = SqliteStore(path)
    await again.open()
    await again.close()


async def test_foreign_keys_are_enforced(store: SqliteStore) -> None:
    db = store._conn()  # the store's own connection, to check its pragmas took effect
    async with db.execute("PRAGMA foreign_keys") as cur:
        row = await cur.fetchone()
    assert row is not None and row[0] == 1
    with pytest.raises(sqlite3.IntegrityError):
        await db.execute(
            "INSERT INTO invites (id, room_id, user_id, display_name, role, secret_hash,"
            " state, created_at, expires_at)"
            " VALUES ('i', 'missing', 'u', 'U', 'guest', ?, 'issued', 0, 1)",
            (b"\0" * 32,),
        )


async def test_newer_schema_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    db.close()
    store = SqliteStore(path)
    with pytest.raises(StoreError, match="newer than"):
        await store.open()


async def test_unopenable_path_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    store = SqliteStore(blocker / "conclave.db")
    with pytest.raises(StoreError, match="Cannot open the database"):
        await store.open()
