"""Both stores, for tests of the service that must hold whichever store it runs on.

A module overrides the ``store`` fixture with ``each_store``; a test that is about SQLite
itself (files, processes, SQL) takes ``sqlite_only``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from bot.store.base import Store
from bot.store.sqlite import SqliteStore
from tests.support.memory_store import MemoryStore

STORES = ("sqlite", "memory")

sqlite_only = pytest.mark.parametrize("store", ["sqlite"], indirect=True)


@asynccontextmanager
async def each_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """The store ``request.param`` names, open for the test."""
    kind = getattr(request, "param", "sqlite")
    store: Store = SqliteStore(tmp_path / "conclave.db") if kind == "sqlite" else MemoryStore()
    await store.open()
    try:
        yield store
    finally:
        await store.close()
