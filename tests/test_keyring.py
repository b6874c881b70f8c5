"""The client's key state survives whatever a (possibly hostile) server puts in a roster."""

from __future__ import annotations

from bot.client.keyring import Keyring


def test_unusable_roster_keys_are_ignored_not_fatal() -> None:
    alice = Keyring("room", "p-alice", 1)
    bob = Keyring("room", "p-bob", 2)
    roster = [
        {"participant_id": "p-alice", "sender_index": 1, "keys": alice.public_keys()},
        {"participant_id": "p-bob", "sender_index": 2, "keys": bob.public_keys()},
        {"participant_id": "p-eve", "sender_index": 3, "keys": {"x25519": "A" * 42 + "B"}},
    ]
    messages = alice.on_roster(roster)
    assert [m.to for m in messages] == ["p-bob"]  # eve's garbage keys get nothing
    assert alice.security_code(roster) is None  # no code while someone's keys are unusable
    assert alice.security_code(roster[:2]) == bob.security_code(roster[:2])
