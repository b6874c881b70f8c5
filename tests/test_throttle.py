"""The service's sliding-window limit (bot/core/throttle.py), on a clock moved by hand."""

from __future__ import annotations

from bot.core.throttle import Throttle
from tests.support.fakes import FakeClock


def test_at_most_limit_events_per_window_and_refusals_do_not_count() -> None:
    clock = FakeClock()
    throttle = Throttle(clock, limit=2, window=10.0)
    assert throttle.take("ana") == 0.0
    clock.advance(4)
    assert throttle.take("ana") == 0.0
    assert throttle.take("ana") == 6.0  # the first event leaves the window in 6 s
    clock.advance(5)
    assert throttle.take("ana") == 1.0  # the refusal above did not restart anything
    clock.advance(1)
    assert throttle.take("ana") == 0.0
    assert throttle.take("ben") == 0.0  # each key has its own window


def test_callers_whose_window_passed_are_forgotten_once_a_window() -> None:
    """A long-running server sees many callers once each (a soak run: hundreds of resumes):
    their entries go after a window, not only when ``max_keys`` is reached."""
    clock = FakeClock()
    throttle = Throttle(clock, limit=5, window=10.0)
    for n in range(500):
        throttle.take(f"caller-{n}")
    assert len(throttle) == 500
    clock.advance(10)
    throttle.take("late")
    assert len(throttle) == 1
    clock.advance(3)
    throttle.take("later")  # within a window of the last forgetting: nothing to do yet
    assert len(throttle) == 2
