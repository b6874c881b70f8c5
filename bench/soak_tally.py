"""What the soak counts: errors (each printed when it happens), actions done, and notes.

An error is anything a healthy deployment should never show: an exception in a client, an
error or warning the hub was not expected to send, a client that could not rejoin, a room whose
keys did not come together, a traceback in a process's output. Notes are things worth counting
that are not faults (the hub's documented resume throttle, for one).
"""

from __future__ import annotations

import logging
import time
from collections import Counter

# Printing every error of a run that goes wrong would bury the summary.
PRINTED_ERRORS = 40


class Tally:
    def __init__(self) -> None:
        self.started = time.monotonic()
        self.errors: list[str] = []
        self.actions: Counter[str] = Counter()
        self.notes: Counter[str] = Counter()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def restart_clock(self) -> None:
        """Count time from now (the churn's start), as the samples do; setup is negative."""
        self.started = time.monotonic()

    def error(self, text: str) -> None:
        self.errors.append(text)
        if len(self.errors) <= PRINTED_ERRORS:
            print(f"[{self.elapsed():6.1f} s] ERROR {text}", flush=True)
        elif len(self.errors) == PRINTED_ERRORS + 1:
            print("(further errors are counted, not printed)", flush=True)

    def did(self, action: str) -> None:
        self.actions[action] += 1

    def note(self, what: str) -> None:
        self.notes[what] += 1

    def kinds(self) -> Counter[str]:
        """Errors grouped by their text up to the first ':' (the room or peer named after it)."""
        return Counter(e.split(":", 1)[0] for e in self.errors)


class ErrorLogs(logging.Handler):
    """Warnings and errors that the project's own client code (the keyring, key transport)
    logs in this process are soak errors: a key message rejected, keys that do not verify."""

    def __init__(self, tally: Tally) -> None:
        super().__init__(level=logging.WARNING)
        self._tally = tally

    def emit(self, record: logging.LogRecord) -> None:
        self._tally.error(f"client log {record.levelname} {record.name}: {record.getMessage()}")
