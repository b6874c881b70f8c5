"""The replay cache behind Slack's HTTP mode: a signature passes once while its timestamp is
acceptable, is forgotten after, and the cache stays bounded."""

from __future__ import annotations

from adapters.slack.replay import WINDOW, SeenSignatures
from tests.support.fakes import FakeClock


def test_a_signature_passes_once_within_the_window() -> None:
    clock = FakeClock()
    seen = SeenSignatures(clock=clock.now)
    ts = int(clock.now())
    assert seen.first_time("v0=aa", ts)
    assert not seen.first_time("v0=aa", ts)
    assert seen.first_time("v0=bb", ts)
    clock.advance(WINDOW)  # still acceptable to the verifier at exactly five minutes
    assert not seen.first_time("v0=aa", ts)
    # Future timestamps are acceptable too, so they are kept until five minutes after them.
    assert seen.first_time("v0=cc", ts + 2 * WINDOW)
    clock.advance(1)
    assert seen.first_time("v0=aa", ts)  # the verifier refuses this one by now anyway
    assert not seen.first_time("v0=cc", ts + 2 * WINDOW)


def test_the_cache_is_bounded() -> None:
    clock = FakeClock()
    seen = SeenSignatures(max_entries=100, clock=clock.now)
    ts = int(clock.now())
    for n in range(1000):
        assert seen.first_time(f"v0={n:04x}", ts + n)
    assert len(seen._seen) <= 100  # the bound, read from the cache itself
    assert not seen.first_time(f"v0={999:04x}", ts + 999)  # the newest are kept
