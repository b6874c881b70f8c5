"""A leaner ``RemoteBitrateEstimator`` for the relay's uplink feedback (``bot.rtc.bandwidth``).

aiortc's estimator counts what arrived in its ``incoming_bitrate``, a ``RateCounter`` that
keeps one ``RateBucket`` object per millisecond of its one-second window. The estimator only
calls its ``add``, ``rate`` and ``reset`` (aiortc 1.16), so ``lean_estimator`` puts a
``CompactRateCounter`` there, which gives the same figures from two lists of ints.
"""

from __future__ import annotations

from typing import Any

from aiortc.rate import RemoteBitrateEstimator


def lean_estimator() -> RemoteBitrateEstimator:
    """aiortc's estimator, counting with a ``CompactRateCounter`` (its own window and scale)."""
    estimator = RemoteBitrateEstimator()
    counter: Any = CompactRateCounter(1000, 8000)
    estimator.incoming_bitrate = counter
    return estimator


class CompactRateCounter:
    """aiortc's ``RateCounter`` (what arrived in the last ``window_size`` ms, in 1 ms buckets),
    same figures, its buckets two lists of ints instead of an object each: the estimator's
    1,000 of them were a garbage collector's walk per publisher, on every full collection. It
    also clears a window that has wholly passed at once, not one millisecond at a time."""

    def __init__(self, window_size: int, scale: int = 8000) -> None:
        self._window_size = window_size
        self._scale = scale
        self._counts: list[int] = []
        self._values: list[int] = []
        self._count = self._value = 0
        self._origin_index = 0
        self._origin_ms: int | None = None
        self.reset()

    def add(self, value: int, now_ms: int) -> None:
        if self._origin_ms is None:
            self._origin_ms = now_ms
        else:
            self._erase_old(now_ms)
        index = (self._origin_index + now_ms - self._origin_ms) % self._window_size
        self._counts[index] += 1
        self._values[index] += value
        self._count += 1
        self._value += value

    def rate(self, now_ms: int) -> int | None:
        if self._origin_ms is not None:
            self._erase_old(now_ms)
            active_window_size = now_ms - self._origin_ms + 1
            if self._count > 0 and active_window_size > 1:
                return round(self._scale * self._value / active_window_size)
        return None

    def reset(self) -> None:
        self._counts = [0] * self._window_size
        self._values = [0] * self._window_size
        self._count = self._value = 0
        self._origin_index = 0
        self._origin_ms = None

    def _erase_old(self, now_ms: int) -> None:
        assert self._origin_ms is not None
        steps = now_ms - self._window_size + 1 - self._origin_ms
        if steps <= 0:
            return
        size = self._window_size
        if steps >= size:
            self._counts = [0] * size
            self._values = [0] * size
            self._count = self._value = 0
        else:
            counts, values, index = self._counts, self._values, self._origin_index
            for _ in range(steps):
                self._count -= counts[index]
                self._value -= values[index]
                counts[index] = values[index] = 0
                index = (index + 1) % size
        self._origin_index = (self._origin_index + steps) % size
        self._origin_ms += steps


def missing() -> list[str]:
    """What ``lean_estimator`` needs and the installed aiortc lacks."""
    counter = getattr(RemoteBitrateEstimator(), "incoming_bitrate", None)
    if all(callable(getattr(counter, name, None)) for name in ("add", "rate", "reset")):
        return []
    return ["RemoteBitrateEstimator.incoming_bitrate"]
