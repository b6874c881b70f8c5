"""Persistence behind a small protocol; SQLite is the embedded default."""

from bot.store.base import Store, SweepResult

__all__ = ["Store", "SweepResult"]
