"""One SQLite file in WAL mode behind one aiosqlite connection: pragmas, migrations, and
transactions serialised by an asyncio lock."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import aiosqlite

from bot.errors import StoreError
from bot.store.migrations import MIGRATIONS

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS: Final = 5_000
BUSY_RETRIES: Final = 3


class Database:
    """``BEGIN IMMEDIATE`` takes SQLite's write lock up front, so that other processes (or
    other stores on the same file) wait for it under the busy timeout instead of failing
    half-way; reads run in a transaction of their own, so that they see one snapshot."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = await aiosqlite.connect(self.path, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"Cannot open the database {self.path}: {exc}") from exc
        self._db = db
        try:
            await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            await db.execute("PRAGMA journal_mode = WAL")
            # FULL, not NORMAL: a redeemed invite that power loss "un-redeems" could be spent twice.
            await db.execute("PRAGMA synchronous = FULL")
            await db.execute("PRAGMA foreign_keys = ON")
            await self._migrate()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await db.close()

    def conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreError("The store is not open.")
        return self._db

    async def _migrate(self) -> None:
        async with self.write() as db:
            version = await scalar(db, "PRAGMA user_version")
            if version > len(MIGRATIONS):
                raise StoreError(
                    f"The database {self.path} has schema version {version}, newer than "
                    f"this Conclave understands ({len(MIGRATIONS)}); upgrade Conclave."
                )
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in _statements(script):
                    await db.execute(statement)
                await db.execute(f"PRAGMA user_version = {number}")
                log.info("applied database migration %d", number)

    async def check_writable(self) -> None:
        """Take the write lock and let it go: fails if the database is closed, opened read-only
        or held by another writer beyond the busy timeout. Nothing is written."""
        try:
            async with self.write():
                pass
        except sqlite3.Error as exc:
            raise StoreError(f"The database {self.path} is not writable: {exc}") from exc

    @asynccontextmanager
    async def write(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._transaction("BEGIN IMMEDIATE") as db:
            yield db

    @asynccontextmanager
    async def read(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._transaction("BEGIN") as db:
            yield db

    @asynccontextmanager
    async def _transaction(self, begin: str) -> AsyncIterator[aiosqlite.Connection]:
        db = self.conn()
        async with self._lock:
            await _begin(db, begin)
            try:
                yield db
            except BaseException:
                await db.execute("ROLLBACK")
                raise
            await db.execute("COMMIT")


async def _begin(db: aiosqlite.Connection, begin: str) -> None:
    for attempt in range(1, BUSY_RETRIES + 1):
        try:
            await db.execute(begin)
            return
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or attempt == BUSY_RETRIES:
                raise StoreError("The database is busy; please try again in a moment.") from exc
            log.warning("database busy, retrying (attempt %d)", attempt)
            await asyncio.sleep(0.05 * attempt)


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


async def scalar(db: aiosqlite.Connection, sql: str, params: Iterable[Any] = ()) -> Any:
    row = await one(db, sql, params)
    return None if row is None else row[0]


async def one(
    db: aiosqlite.Connection, sql: str, params: Iterable[Any] = ()
) -> Sequence[Any] | None:
    async with db.execute(sql, tuple(params)) as cur:
        row = await cur.fetchone()
    return None if row is None else tuple(row)


async def every(
    db: aiosqlite.Connection, sql: str, params: Iterable[Any] = ()
) -> list[Sequence[Any]]:
    async with db.execute(sql, tuple(params)) as cur:
        return [tuple(r) for r in await cur.fetchall()]


async def changed(db: aiosqlite.Connection, sql: str, params: Iterable[Any] = ()) -> int:
    """Run an INSERT, UPDATE or DELETE; how many rows it changed."""
    cur = await db.execute(sql, tuple(params))
    return cur.rowcount


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
