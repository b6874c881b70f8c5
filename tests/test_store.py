"""The SQLite store's own guarantees: schema, pragmas, migrations."""

from __future__ import annotations

import secrets
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from bot.core.models import AuditEvent, Invite, Participant, Room
from bot.core.policy import MeetingPolicy
from bot.core.service import MeetingService
from bot.errors import BadResumeToken, StoreError
from bot.secret import Secret
from bot.store.migrations import MIGRATIONS, SCHEMA_VERSION
from bot.store.sqlite import SqliteStore
from bot.tokens import hash_secret
from tests.support.fakes import FakeClock, user
from tests.support.meeting import credential


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


def dump(path: Path) -> list[str]:
    """Everything in the database file, schema and rows, as SQL text."""
    with closing(sqlite3.connect(path)) as db:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        return [f"user_version {version}", *db.iterdump()]


Contents = tuple[list[Room | None], list[Invite], list[Participant], list[AuditEvent]]


async def contents(store: SqliteStore, room_ids: list[str]) -> Contents:
    """What the store says about these rooms, their invites and sessions, and the audit log."""
    rooms = [await store.get_room(room_id) for room_id in room_ids]
    invites = [i for room_id in room_ids for i in await store.invites_for_room(room_id)]
    sessions = [p for room_id in room_ids for p in await store.participants_for_room(room_id)]
    return rooms, invites, sessions, await store.audit_log()


async def test_reopening_an_up_to_date_database_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "conclave.db"
    store = SqliteStore(path)
    await store.open()
    try:
        service = MeetingService(store, MeetingPolicy(), "http://127.0.0.1:8080", FakeClock())
        hana = user("hana")
        made = await service.create_room(hana, [user("ana"), user("ben")], "Sync")
        ana = await service.redeem(made.room.id, credential(made.invites[0]))
        ended = await service.create_room(hana, [user("ana")], "Retro")
        await service.end(hana, ended.room.id)
        rooms = [made.room.id, ended.room.id]
        before = await contents(store, rooms)
    finally:
        await store.close()
    on_disk = dump(path)
    # Something to lose: two rooms, five invites (hosts' included), a session, the audit.
    assert [r is not None for r in before[0]] == [True, True]
    assert (len(before[1]), len(before[2])) == (5, 1)
    assert {e.event for e in before[3]} >= {"room_created", "invite_redeemed", "room_ended"}

    again = SqliteStore(path)
    await again.open()
    try:
        assert await contents(again, rooms) == before
        assert dump(path) == on_disk
        # And it all still works: the session resumes, the open invite redeems.
        service = MeetingService(again, MeetingPolicy(), "http://127.0.0.1:8080", FakeClock())
        resumed = await service.resume(ana.resume_token.reveal())
        assert resumed.participant.id == ana.participant.id
        ben = await service.redeem(made.room.id, credential(made.invites[1]))
        assert ben.participant.user_id == "ben"
    finally:
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


async def test_a_session_from_schema_1_survives_the_upgrade(tmp_path: Path) -> None:
    """Migration 2 adds the previous resume hash; a participant connected before the upgrade
    still resumes with its token, which then works again until its successor is used."""
    path = tmp_path / "old.db"
    secret = Secret(secrets.token_urlsafe(32))
    with closing(sqlite3.connect(path)) as db:
        db.executescript(MIGRATIONS[0])
        db.execute(
            "INSERT INTO rooms VALUES ('r', 'Sync', 'console', 'local', 'hana', 'Hana', 'open',"
            " 0, 0, 1e12, NULL)"
        )
        db.execute(
            "INSERT INTO invites VALUES ('i', 'r', 'ana', 'Ana', 'guest', ?, 'redeemed', 0, 1e12,"
            " 1)",
            (hash_secret(Secret("invite")),),
        )
        db.execute(
            "INSERT INTO participants VALUES ('pana', 'r', 'i', 'ana', 'Ana', 'guest', 1, ?,"
            " 'active', 1)",
            (hash_secret(secret),),
        )
        db.execute("PRAGMA user_version = 1")
        db.commit()
    store = SqliteStore(path)
    await store.open()
    try:
        service = MeetingService(store, MeetingPolicy(), "http://127.0.0.1:8080", FakeClock())
        token = f"pana.{secret.reveal()}"
        lost = await service.resume(token)
        retried = await service.resume(token)
        assert lost.participant.id == retried.participant.id == "pana"
        await service.resume(retried.resume_token.reveal())
        with pytest.raises(BadResumeToken):
            await service.resume(token)
    finally:
        await store.close()
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
