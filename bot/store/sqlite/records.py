"""A table whose columns are the fields of one frozen record type, in the same order.

The schema (``bot/store/migrations.py``) names each column after its field, so one
mapping serves every table: enums are stored as their values and booleans as 0 or 1.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import fields
from enum import Enum
from typing import Any, Generic, TypeVar, cast, get_type_hints

import aiosqlite

from bot.store.sqlite.connection import every, one

R = TypeVar("R")  # a frozen dataclass


class Records(Generic[R]):
    def __init__(self, table: str, record: type[R]) -> None:
        self.table = table
        self._record = record
        hints = get_type_hints(record)
        self._names = [f.name for f in fields(cast(Any, record))]
        self._types = [hints[name] for name in self._names]
        self.columns = ", ".join(self._names)
        self.width = len(self._names)

    def to_row(self, record: R) -> tuple[Any, ...]:
        values = (getattr(record, name) for name in self._names)
        return tuple(_stored(v) for v in values)

    def from_row(self, row: Sequence[Any]) -> R:
        """The record in the first ``width`` columns of ``row``."""
        values = (_loaded(t, v) for t, v in zip(self._types, row[: self.width], strict=True))
        return self._record(**dict(zip(self._names, values, strict=True)))

    async def insert(self, db: aiosqlite.Connection, record: R) -> None:
        marks = ", ".join("?" for _ in self._names)
        sql = f"INSERT INTO {self.table} ({self.columns}) VALUES ({marks})"
        await db.execute(sql, self.to_row(record))

    async def get(self, db: aiosqlite.Connection, record_id: str) -> R | None:
        sql = f"SELECT {self.columns} FROM {self.table} WHERE id = ?"
        row = await one(db, sql, (record_id,))
        return None if row is None else self.from_row(row)

    async def where(
        self, db: aiosqlite.Connection, condition: str, params: Iterable[Any]
    ) -> list[R]:
        """The records that meet ``condition`` (SQL after ``WHERE``, ``ORDER BY`` too)."""
        sql = f"SELECT {self.columns} FROM {self.table} WHERE {condition}"
        return [self.from_row(r) for r in await every(db, sql, params)]


def _stored(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    return int(value) if isinstance(value, bool) else value


def _loaded(kind: Any, value: Any) -> Any:
    if isinstance(kind, type) and issubclass(kind, Enum):
        return kind(value)
    return bool(value) if kind is bool else value
