"""The client's key state against whatever a (possibly hostile) server puts in a roster: it seals
sender keys only to verified peers over a complete roster, owes what it cannot send yet, and
stops for good at the first sign of tampering. Time is a fake clock the test moves."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from bot.client.keyring import Keyring, Outgoing
from bot.e2ee.announce import announce
from bot.e2ee.errors import KeysTampered
from bot.e2ee.identity import MeetingKeys
from bot.e2ee.media import Codec

ROOM = "room-1"
VP8_FRAME = bytes.fromhex("5042009d012a8002e001") + b"picture"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def entry(ring: Keyring, *, keys: bool = True) -> dict[str, Any]:
    index = ring.sender_keys.sender_index
    out: dict[str, Any] = {"participant_id": ring.participant_id, "sender_index": index}
    if keys:
        out["keys"] = ring.announcement()
    return out


def rings(*names: str, clock: Clock | None = None) -> list[Keyring]:
    return [
        Keyring(ROOM, f"p-{name}", i + 1, clock=clock or Clock()) for i, name in enumerate(names)
    ]


def deliver(sender: Keyring, messages: Iterable[Outgoing], to: Iterable[Keyring]) -> list[str]:
    by_id = {r.participant_id: r for r in to}
    for m in messages:
        if m.to in by_id:
            by_id[m.to].on_key(sender.participant_id, m.payload)
    return [m.to for m in messages]


def test_unusable_roster_keys_are_ignored_not_fatal() -> None:
    alice, bob = rings("alice", "bob")
    garbage = {"participant_id": "p-eve", "sender_index": 3, "keys": {"x25519": "A" * 42 + "B"}}
    roster = [entry(alice), entry(bob), garbage]
    assert alice.on_roster(roster) == []  # not over a roster with someone unverified
    assert alice.code is None
    assert [m.to for m in alice.on_roster(roster[:2])] == ["p-bob"]  # eve's garbage got nothing
    bob.on_roster(roster[:2])
    assert alice.code is not None and alice.code == bob.code


def test_nothing_is_sent_until_this_clients_own_entry_shows_its_keys() -> None:
    alice, bob = rings("alice", "bob")
    assert alice.on_roster([entry(alice, keys=False), entry(bob)]) == []
    assert alice.code is None
    assert [m.to for m in alice.on_roster([entry(alice), entry(bob)])] == ["p-bob"]


def test_a_rotation_while_someone_has_no_keys_yet_is_owed_not_lost() -> None:
    alice, bob, cy, dan = everyone = rings("alice", "bob", "cy", "dan")
    for ring in everyone[:3]:
        deliver(ring, ring.on_roster([entry(r) for r in everyone[:3]]), everyone)
    # cy leaves as dan arrives, before dan has announced: the new key cannot go out yet...
    assert alice.on_roster([entry(alice), entry(bob), entry(dan, keys=False)]) == []
    # ...and goes out, to bob and to dan, once dan's keys are in.
    bob.on_roster([entry(alice), entry(bob), entry(dan)])
    dan.on_roster([entry(alice), entry(bob), entry(dan)])
    sent = deliver(alice, alice.on_roster([entry(alice), entry(bob), entry(dan)]), everyone)
    assert sorted(sent) == ["p-bob", "p-dan"]
    alice.sender_keys.tick(1_000.0)  # the new key in use
    frame = alice.protect(Codec.VP8, VP8_FRAME)
    assert alice.sender_keys.current_key.id.generation == 1
    assert bob.unprotect(Codec.VP8, frame) == VP8_FRAME
    assert dan.unprotect(Codec.VP8, frame) == VP8_FRAME
    assert cy.unprotect(Codec.VP8, frame) is None


def test_new_keys_for_a_peer_who_never_left_end_all_key_sending() -> None:
    alice, bob, cy = rings("alice", "bob", "cy")
    alice.on_roster([entry(alice), entry(bob), entry(cy)])
    fake = {**entry(bob), "keys": announce(MeetingKeys.generate(), ROOM, "p-bob", 2).to_json()}
    with pytest.raises(KeysTampered, match="p-bob"):
        alice.on_roster([entry(alice), fake])  # cy left too: a rotation that must not go out
    assert alice.tampered is not None
    with pytest.raises(KeysTampered):
        alice.on_roster([entry(alice), entry(bob)])


def test_the_own_entry_with_keys_of_the_servers_making_is_tampering() -> None:
    alice, bob = rings("alice", "bob")
    fake = {**entry(alice), "keys": announce(MeetingKeys.generate(), ROOM, "p-alice", 1).to_json()}
    with pytest.raises(KeysTampered, match="own entry"):
        alice.on_roster([fake, entry(bob)])


def test_the_identity_survives_a_rejoin() -> None:
    (alice,) = rings("alice")
    announced = alice.announcement()
    alice.rejoin()
    assert alice.announcement() == announced


def test_churn_after_a_kick_does_not_keep_the_kicked_reading() -> None:
    """Issue 9, finding 3: someone resumes in a loop (a roster change every 200 ms) after a
    kick; the key that excludes the kicked participant is in use within 2 x the delay."""
    clock = Clock()
    delay = 1.0
    ana, ben, kicked, dan = everyone = [
        Keyring(ROOM, f"p-{n}", i + 1, activation_delay=delay, clock=clock)
        for i, n in enumerate(("ana", "ben", "kicked", "dan"))
    ]
    for ring in everyone:
        deliver(ring, ring.on_roster([entry(r) for r in everyone]), everyone)
    clock.now += 2 * delay
    assert kicked.unprotect(Codec.VP8, ana.protect(Codec.VP8, VP8_FRAME)) == VP8_FRAME

    kick_at = clock.now
    stayed = [ana, ben, dan]
    last_read_by_kicked = None
    for step in range(20):
        present = stayed if step % 2 == 0 else [ana, ben]  # dan drops and resumes
        for ring in (ana, ben):
            deliver(ring, ring.on_roster([entry(r) for r in present]), everyone)
        frame = ana.protect(Codec.VP8, VP8_FRAME)
        if kicked.unprotect(Codec.VP8, frame) is not None:
            last_read_by_kicked = clock.now
        assert ben.unprotect(Codec.VP8, frame) == VP8_FRAME or clock.now < kick_at + delay
        clock.now += 0.2
    assert last_read_by_kicked is not None and last_read_by_kicked < kick_at + 2 * delay
    assert ben.unprotect(Codec.VP8, ana.protect(Codec.VP8, VP8_FRAME)) == VP8_FRAME


def test_a_sender_index_stays_its_first_owners_across_this_clients_rejoin() -> None:
    """The server shows Bob leaving while Alice rejoins, then a ghost with Bob's index: its
    frames would pass as Bob's. Alice remembers whose index 2 was and sends the ghost nothing."""
    alice, bob = rings("alice", "bob")
    ghost = Keyring(ROOM, "p-ghost", 2, clock=Clock())
    alice.on_roster([entry(alice), entry(bob)])
    alice.rejoin()
    with pytest.raises(KeysTampered, match="index 2, which belonged to p-bob"):
        alice.on_roster([entry(alice), entry(ghost)])
    assert alice.tampered is not None


def silent(pid: str, index: int) -> dict[str, Any]:
    """Someone in the roster who never announces keys."""
    return {"participant_id": pid, "sender_index": index}


def flood(alice: Keyring, sender: str, count: int) -> None:
    for n in range(count):
        alice.on_key(sender, f"junk {n}")


def test_a_participant_who_never_announces_cannot_crowd_out_others_key_messages() -> None:
    clock = Clock()
    alice, bob, cy = rings("alice", "bob", "cy", clock=clock)
    mute = [silent(f"p-mute{n}", 10 + n) for n in range(8)]
    alice.on_roster([entry(alice), entry(bob), entry(cy, keys=False), *mute])
    flood(alice, "p-mute0", 500)  # at most 8 of its own are kept...
    for m in mute[1:]:
        flood(alice, str(m["participant_id"]), 8)  # ...and the 64 in all are full
    # Cy's key arrives before the roster that shows Cy's keys, as it may.
    bob.on_roster([entry(alice), entry(bob), entry(cy)])
    deliver(cy, cy.on_roster([entry(alice), entry(bob), entry(cy)]), [alice])
    alice.on_roster([entry(alice), entry(bob), entry(cy), *mute])
    clock.now += 2
    assert alice.unprotect(Codec.VP8, cy.protect(Codec.VP8, VP8_FRAME)) == VP8_FRAME


def test_the_waiting_key_messages_of_someone_who_left_are_dropped() -> None:
    clock = Clock()
    alice, bob = rings("alice", "bob", clock=clock)
    alice.on_roster([entry(alice), entry(bob, keys=False)])
    deliver(bob, bob.on_roster([entry(alice), entry(bob)]), [alice])  # waits for Bob's keys
    alice.on_roster([entry(alice)])  # Bob leaves before they come: his key is for no one
    alice.on_roster([entry(alice), entry(bob)])
    clock.now += 2
    assert alice.unprotect(Codec.VP8, bob.protect(Codec.VP8, VP8_FRAME)) is None
