"""Short-lived HMAC tickets that let the core and a relay worker prove the shared secret.

The worker opens the control websocket with ``X-Conclave-Relay-Ticket: v1.<worker_id>.<ts>.
<nonce>.<mac>``; the core checks it (fresh, unforged, not replayed) before upgrading. The core's
first message carries ``v1.core.<ts>.<worker nonce>.<mac>``, which binds the worker's nonce, so
the worker knows it reached a core holding the secret and not a replay of an earlier welcome.
Each side signs with its own label, so one side's ticket can never pass as the other's.

Tickets are not secrets (they expire within a minute and cannot be replayed), but they are
credentials all the same: nothing logs them, and BadTicket's message never quotes one.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections import OrderedDict
from typing import Final

from bot.errors import ConclaveError
from bot.secret import Secret

HEADER: Final = "X-Conclave-Relay-Ticket"
VERSION: Final = "v1"
MAX_SKEW_SECONDS: Final = 60
# Longer than the window in which a ticket is fresh (±60 s), so a replay within it is caught.
NONCE_MEMORY_SECONDS: Final = 120
NONCE_BYTES: Final = 16
WORKER_ID: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")
_WORKER_LABEL: Final = "conclave relay worker v1"
_CORE_LABEL: Final = "conclave relay core v1"
_NONCE: Final = re.compile(r"[0-9a-f]{32}")
_MAC: Final = re.compile(r"[0-9a-f]{64}")
_TS: Final = re.compile(r"[0-9]{1,12}")


class BadTicket(ConclaveError):
    code = "bad_ticket"

    def __init__(self, why: str) -> None:
        super().__init__(f"Relay ticket rejected: {why}.")
        self.why = why


class NonceCache:
    """Nonces seen recently, forgotten after ``NONCE_MEMORY_SECONDS``; bounded in size.

    A full cache refuses new tickets rather than forgetting early: forgetting would reopen the
    replay window, and 100,000 worker connections in two minutes is an attack, not a fleet.
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._max = max_entries

    def __len__(self) -> int:
        return len(self._seen)

    def add(self, nonce: str, now: float) -> bool:
        """Remember ``nonce``; False if it was already seen (a replay) or the cache is full."""
        while self._seen:
            oldest, seen_at = next(iter(self._seen.items()))
            if now - seen_at <= NONCE_MEMORY_SECONDS:
                break
            del self._seen[oldest]
        if nonce in self._seen or len(self._seen) >= self._max:
            return False
        self._seen[nonce] = now
        return True


def _mac(secret: Secret, label: str, worker_id: str, ts: str, nonce: str) -> str:
    message = f"{label}|{worker_id}|{ts}|{nonce}".encode()
    return hmac.new(secret.reveal().encode(), message, hashlib.sha256).hexdigest()


def _split(ticket: str) -> tuple[str, str, str, str]:
    parts = ticket.split(".")
    # worker ids may contain dots: the id is everything between the version and the last three.
    if len(parts) < 5 or parts[0] != VERSION:
        raise BadTicket("malformed ticket")
    ts, nonce, mac = parts[-3:]
    who = ".".join(parts[1:-3])
    if not _TS.fullmatch(ts) or not _NONCE.fullmatch(nonce) or not _MAC.fullmatch(mac):
        raise BadTicket("malformed ticket")
    return who, ts, nonce, mac


def _check_time(ts: str, now: float) -> None:
    if abs(now - int(ts)) > MAX_SKEW_SECONDS:
        raise BadTicket("expired or not yet valid (check both hosts' clocks)")


def make_worker_ticket(secret: Secret, worker_id: str, now: float) -> tuple[str, str]:
    """The worker's ticket and the nonce in it (to check the core's welcome against)."""
    if not WORKER_ID.fullmatch(worker_id):
        raise BadTicket("worker id must be 1 to 64 letters, digits, '.', '_' or '-'")
    ts = str(int(now))
    nonce = secrets.token_hex(NONCE_BYTES)
    mac = _mac(secret, _WORKER_LABEL, worker_id, ts, nonce)
    return f"{VERSION}.{worker_id}.{ts}.{nonce}.{mac}", nonce


def verify_worker_ticket(secret: Secret, ticket: str, now: float, seen: NonceCache) -> str:
    """The worker id of a valid, fresh, first-seen ticket; BadTicket otherwise."""
    worker_id, ts, nonce, mac = _split(ticket)
    if not WORKER_ID.fullmatch(worker_id):
        raise BadTicket("bad worker id")
    _check_time(ts, now)
    if not hmac.compare_digest(mac, _mac(secret, _WORKER_LABEL, worker_id, ts, nonce)):
        raise BadTicket("wrong signature")
    # Only a correctly signed nonce is remembered: forgeries cannot fill the cache.
    if not seen.add(nonce, now):
        raise BadTicket("replayed ticket")
    return worker_id


def answer_worker_ticket(
    secret: Secret, ticket: str, now: float, seen: NonceCache
) -> tuple[str, str]:
    """Verify a worker's ticket and answer it: ``(worker_id, core_ticket)``; BadTicket if bad."""
    worker_id = verify_worker_ticket(secret, ticket, now, seen)
    _, _, nonce, _ = _split(ticket)
    return worker_id, make_core_ticket(secret, worker_id, nonce, now)


def make_core_ticket(secret: Secret, worker_id: str, nonce: str, now: float) -> str:
    """The core's answer to a worker's ticket, bound to that ticket's nonce."""
    ts = str(int(now))
    return f"{VERSION}.core.{ts}.{nonce}.{_mac(secret, _CORE_LABEL, worker_id, ts, nonce)}"


def verify_core_ticket(secret: Secret, ticket: str, worker_id: str, nonce: str, now: float) -> None:
    """Raise BadTicket unless ``ticket`` is the core's fresh answer to our ``nonce``."""
    who, ts, their_nonce, mac = _split(ticket)
    if who != "core":
        raise BadTicket("not a core ticket")
    _check_time(ts, now)
    if not hmac.compare_digest(their_nonce, nonce):
        raise BadTicket("answers another connection's nonce")
    if not hmac.compare_digest(mac, _mac(secret, _CORE_LABEL, worker_id, ts, nonce)):
        raise BadTicket("wrong signature")
