"""A sliding-window limit per key, on the service's clock (so tests move time by hand)."""

from __future__ import annotations

from collections import deque

from bot.clock import Clock


class Throttle:
    """At most ``limit`` events per ``window`` seconds for each key.

    Only events that are let through count, so a refused caller is not locked out for longer
    by trying again. Keys whose window has passed are dropped once a window (so memory follows
    the callers of the last two windows, not every caller ever), and at once when there are
    more than ``max_keys``; keys come from authenticated callers, so that bound is never
    reached by strangers alone.
    """

    def __init__(self, clock: Clock, limit: int, window: float, max_keys: int = 10_000) -> None:
        self._clock = clock
        self._limit = limit
        self._window = window
        self._max_keys = max_keys
        self._seen: dict[str, deque[float]] = {}
        self._forgot_at = clock.now()

    def take(self, key: str) -> float:
        """Record an event for ``key`` and return 0, or the seconds until one is allowed."""
        now = self._clock.now()
        times = self._seen.setdefault(key, deque())
        while times and times[0] <= now - self._window:
            times.popleft()
        if len(times) >= self._limit:
            return times[0] + self._window - now
        times.append(now)
        if len(self._seen) > self._max_keys or now - self._forgot_at >= self._window:
            self._forget(now)
        return 0.0

    def __len__(self) -> int:
        """How many keys are held."""
        return len(self._seen)

    def _forget(self, now: float) -> None:
        self._forgot_at = now
        stale = [k for k, t in self._seen.items() if not t or t[-1] <= now - self._window]
        for key in stale:
            del self._seen[key]
