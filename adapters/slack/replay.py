"""Signatures already seen, so a signed request captured on the way can be replayed never.

A Slack signature covers the timestamp and the body, and the verifier accepts a timestamp up
to five minutes either side of now: within that window a copy of a request verifies as well as
the original. Each signature is remembered until its timestamp leaves the window.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable

WINDOW = 5 * 60  # seconds; slack_sdk's SignatureVerifier refuses timestamps further off
MAX_ENTRIES = 50_000  # far above any real workspace's rate; keeps memory bounded regardless


class SeenSignatures:
    def __init__(
        self,
        window: float = WINDOW,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._window = window
        self._max = max_entries
        self._clock = clock
        self._expiry: list[tuple[float, str]] = []  # a heap, soonest to expire first
        self._seen: set[str] = set()

    def first_time(self, signature: str, timestamp: int) -> bool:
        """True, and remembered, the first time a signature comes; False ever after while its
        timestamp is still acceptable."""
        now = self._clock()
        while self._expiry and (self._expiry[0][0] < now or len(self._seen) >= self._max):
            # Past the window the verifier refuses the request anyway. Only a flood of
            # genuinely signed requests can fill the set; the soonest to expire then goes.
            _, gone = heapq.heappop(self._expiry)
            self._seen.discard(gone)
        if signature in self._seen:
            return False
        self._seen.add(signature)
        heapq.heappush(self._expiry, (timestamp + self._window, signature))
        return True
