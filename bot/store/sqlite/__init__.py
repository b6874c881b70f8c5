"""The embedded store: one SQLite file in WAL mode, driven through aiosqlite, a module a table."""

from bot.store.sqlite.store import SqliteStore

__all__ = ["SqliteStore"]
