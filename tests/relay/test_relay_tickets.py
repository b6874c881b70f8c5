"""Relay tickets: good ones verify once; stale, forged, replayed or misaddressed ones do not."""

from __future__ import annotations

import logging

import pytest

from bot.relay.tickets import (
    BadTicket,
    NonceCache,
    answer_worker_ticket,
    make_core_ticket,
    make_worker_ticket,
    verify_core_ticket,
    verify_worker_ticket,
)
from bot.secret import Secret

SECRET = Secret("s3cret-shared-by-core-and-workers")
NOW = 1_800_000_000.0


def test_worker_ticket_verifies_once() -> None:
    ticket, nonce = make_worker_ticket(SECRET, "local-1", NOW)
    assert ticket.startswith("v1.local-1.1800000000.") and nonce in ticket
    seen = NonceCache()
    assert verify_worker_ticket(SECRET, ticket, NOW + 59, seen) == "local-1"
    with pytest.raises(BadTicket, match="replayed"):
        verify_worker_ticket(SECRET, ticket, NOW + 1, seen)


def test_worker_id_with_dots() -> None:
    ticket, _ = make_worker_ticket(SECRET, "eu.west-2_a", NOW)
    assert verify_worker_ticket(SECRET, ticket, NOW, NonceCache()) == "eu.west-2_a"


@pytest.mark.parametrize("skew", [-61, 61, 10_000])
def test_stale_or_future_tickets(skew: float) -> None:
    ticket, _ = make_worker_ticket(SECRET, "w", NOW)
    with pytest.raises(BadTicket, match="expired"):
        verify_worker_ticket(SECRET, ticket, NOW + skew, NonceCache())


def test_wrong_secret() -> None:
    ticket, _ = make_worker_ticket(Secret("other"), "w", NOW)
    with pytest.raises(BadTicket, match="signature"):
        verify_worker_ticket(SECRET, ticket, NOW, NonceCache())


@pytest.mark.parametrize("field", [1, 2, 3, 4])
def test_tampered_field(field: int) -> None:
    ticket, _ = make_worker_ticket(SECRET, "w1", NOW)
    parts = ticket.split(".")
    swap = {"0": "1", "1": "2", "2": "1", "w": "x"}
    last = parts[field][-1]
    parts[field] = parts[field][:-1] + swap.get(last, "0" if last != "0" else "1")
    with pytest.raises(BadTicket):
        verify_worker_ticket(SECRET, ".".join(parts), NOW, NonceCache())


@pytest.mark.parametrize(
    "ticket",
    ["", "v1", "v2.w.1800000000.00.00", "v1.w.now.nonce.mac", "v1..1800000000." + "a" * 32 + "."],
)
def test_malformed(ticket: str) -> None:
    with pytest.raises(BadTicket):
        verify_worker_ticket(SECRET, ticket, NOW, NonceCache())


@pytest.mark.parametrize("worker_id", ["", "has space", "x" * 65, "slash/no", "ünï"])
def test_bad_worker_id(worker_id: str) -> None:
    with pytest.raises(BadTicket, match="worker id"):
        make_worker_ticket(SECRET, worker_id, NOW)


def test_forged_bad_worker_id_is_refused() -> None:
    ticket, _ = make_worker_ticket(SECRET, "ok", NOW)
    forged = ticket.replace("v1.ok.", "v1.o k.")
    with pytest.raises(BadTicket, match="worker id"):
        verify_worker_ticket(SECRET, forged, NOW, NonceCache())


def test_core_ticket_binds_the_worker_nonce() -> None:
    _, nonce = make_worker_ticket(SECRET, "w", NOW)
    _, other_nonce = make_worker_ticket(SECRET, "w", NOW)
    ticket = make_core_ticket(SECRET, "w", nonce, NOW)
    verify_core_ticket(SECRET, ticket, "w", nonce, NOW + 30)
    with pytest.raises(BadTicket, match="nonce"):
        verify_core_ticket(SECRET, ticket, "w", other_nonce, NOW)
    with pytest.raises(BadTicket, match="signature"):
        verify_core_ticket(SECRET, ticket, "another-worker", nonce, NOW)
    with pytest.raises(BadTicket, match="signature"):
        verify_core_ticket(Secret("other"), ticket, "w", nonce, NOW)
    with pytest.raises(BadTicket, match="expired"):
        verify_core_ticket(SECRET, ticket, "w", nonce, NOW + 61)


def test_sides_cannot_be_swapped() -> None:
    worker_ticket, nonce = make_worker_ticket(SECRET, "core", NOW)
    with pytest.raises(BadTicket):
        verify_core_ticket(SECRET, worker_ticket, "core", nonce, NOW)
    core_ticket = make_core_ticket(SECRET, "core", nonce, NOW)
    with pytest.raises(BadTicket):
        verify_worker_ticket(SECRET, core_ticket, NOW, NonceCache())


def test_nonce_cache_forgets_and_is_bounded() -> None:
    cache = NonceCache(max_entries=2)
    assert cache.add("a", NOW) and cache.add("b", NOW)
    assert not cache.add("c", NOW), "a full cache must refuse, not forget"
    assert not cache.add("a", NOW + 100)
    assert cache.add("c", NOW + 121) and len(cache) == 1


def test_tickets_never_in_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    ticket, nonce = make_worker_ticket(SECRET, "w", NOW)
    caplog.set_level(logging.DEBUG)
    seen = NonceCache()
    verify_worker_ticket(SECRET, ticket, NOW, seen)
    for attempt in (ticket, ticket[:-1] + "0"):
        with pytest.raises(BadTicket) as caught:
            verify_worker_ticket(SECRET, attempt, NOW, seen)
        for text in (str(caught.value), repr(caught.value)):
            assert nonce not in text and ticket.split(".")[-1] not in text
    assert all(nonce not in r.getMessage() for r in caplog.records)
    assert "s3cret" not in repr(SECRET)


def test_answer_worker_ticket_verifies_and_answers_the_same_connection() -> None:
    secret = Secret("s" * 40)
    ticket, nonce = make_worker_ticket(secret, "relay.one", 1_000.0)
    worker_id, answer = answer_worker_ticket(secret, ticket, 1_001.0, NonceCache())
    assert worker_id == "relay.one"
    verify_core_ticket(secret, answer, "relay.one", nonce, 1_002.0)
    with pytest.raises(BadTicket):
        answer_worker_ticket(Secret("t" * 40), ticket, 1_001.0, NonceCache())
