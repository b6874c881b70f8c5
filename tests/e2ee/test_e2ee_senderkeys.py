"""Sender keys: activation delay, grace period, ratchet following, and no silent wrap-around."""

from __future__ import annotations

import pytest

from bot.e2ee.errors import KeyConflict, KeyExhausted, SFrameError, StaleSenderKey
from bot.e2ee.kid import MAX_GENERATION, KeyId
from bot.e2ee.senderkeys import SenderKey, SenderKeys, frame_key_id
from bot.e2ee.sframe import encrypt


def _pair() -> tuple[SenderKeys, SenderKeys]:
    ana, ben = SenderKeys(1), SenderKeys(2)
    ben.add_peer_key(ana.current_key, now=0.0)
    return ana, ben


def test_frames_carry_the_senders_key_id() -> None:
    ana, ben = _pair()
    frame = ana.encrypt(b"", b"hello", now=0.0)
    assert frame_key_id(frame) == KeyId(1, 0, 0)
    assert ben.decrypt(frame, b"", now=0.0) == b"hello"


def test_a_joins_ratchet_is_used_from_the_next_frame_and_old_and_new_members_read_it() -> None:
    ana, ben = _pair()
    before = ana.encrypt(b"", b"before", now=10.0)
    newcomer_key = ana.on_join(now=10.0)
    assert newcomer_key.id == KeyId(1, 0, 1)
    assert ana.current_key == newcomer_key and ana.latest_key == newcomer_key
    at_once = ana.encrypt(b"", b"at once", now=10.0)  # no activation delay for a join
    assert frame_key_id(at_once) == newcomer_key.id
    assert ben.decrypt(at_once, b"", now=10.0) == b"at once"  # follows the ratchet by himself
    assert newcomer_key.kid in ben.held_kids()
    cy = SenderKeys(3)
    cy.add_peer_key(newcomer_key, now=10.1)  # the key message, once it arrives
    assert cy.decrypt(at_once, b"", now=10.1) == b"at once"
    with pytest.raises(SFrameError):
        cy.decrypt(before, b"", now=10.1)  # the ratchet only goes forward
    assert ben.decrypt(before, b"", now=10.1) == b"before"  # in flight, within the grace period


def test_a_leaves_key_is_used_only_after_the_activation_delay() -> None:
    ana = SenderKeys(1)
    fresh = ana.on_leave(now=10.0)
    assert fresh.id == KeyId(1, 1, 0)
    assert ana.latest_key == fresh
    assert frame_key_id(ana.encrypt(b"", b"a", now=10.99)) == KeyId(1, 0, 0)
    assert frame_key_id(ana.encrypt(b"", b"b", now=11.0)) == fresh.id
    assert ana.current_key == fresh


def test_a_restart_uses_the_next_generation_at_once() -> None:
    ana = SenderKeys(1)
    ana.on_leave(now=10.0)  # pending: the restart replaces it and does not wait for it
    fresh = ana.restart(now=10.0)
    assert fresh.id == KeyId(1, 2, 0)
    assert ana.current_key == fresh and ana.latest_key == fresh
    assert frame_key_id(ana.encrypt(b"", b"a", now=10.0)) == KeyId(1, 2, 0)
    assert frame_key_id(ana.encrypt(b"", b"b", now=20.0)) == KeyId(1, 2, 0)


def test_receivers_follow_a_ratchet_and_delete_the_old_key_after_the_grace_period() -> None:
    ana, ben = _pair()
    old = ana.encrypt(b"", b"old", now=0.0)
    late_old = ana.encrypt(b"", b"late", now=0.0)
    ana.on_join(now=1.0)
    new = ana.encrypt(b"", b"new", now=1.0)
    assert ben.decrypt(old, b"", now=2.0) == b"old"
    assert ben.decrypt(new, b"", now=2.5) == b"new"  # derived by ratcheting, no message needed
    assert KeyId(1, 0, 1).kid in ben.held_kids()
    assert ben.decrypt(late_old, b"", now=12.4) == b"late"  # within 10 s of following
    ben.tick(now=12.5)
    assert KeyId(1, 0, 0).kid not in ben.held_kids()


def test_grace_period_after_a_new_generation() -> None:
    ana, ben = _pair()
    in_flight = ana.encrypt(b"", b"in flight", now=0.0)
    ben.add_peer_key(ana.on_leave(now=5.0), now=5.0)
    assert ben.decrypt(in_flight, b"", now=14.9) == b"in flight"
    assert ben.decrypt(ana.encrypt(b"", b"fresh", now=6.0), b"", now=14.9) == b"fresh"
    ben.tick(now=15.0)
    assert ben.held_kids() == {KeyId(1, 1, 0).kid}


def test_leave_draws_a_fresh_key_of_the_next_generation() -> None:
    ana, _ = _pair()
    before = ana.current_key
    after = ana.on_leave(now=0.0)
    assert after.id == KeyId(1, 1, 0)
    assert after.base_key != before.base_key
    assert after.base_key != before.ratcheted().base_key


def test_rotations_before_activation_chain() -> None:
    ana, ben = _pair()
    ana.on_leave(now=0.0)  # generation 1, sent to ben
    ben.add_peer_key(ana.latest_key, now=0.0)
    for_newcomer = ana.on_join(now=0.5)  # ratchets the pending key, not the old one
    assert for_newcomer.id == KeyId(1, 1, 1)
    assert ben.decrypt(ana.encrypt(b"", b"x", now=2.0), b"", now=2.0) == b"x"


def test_forged_kids_leave_nothing_behind() -> None:
    ana, ben = _pair()
    held = ben.held_kids()
    forged_kid = KeyId(1, 0, 3).kid
    forged = encrypt(4, bytes(32), forged_kid, 0, b"", b"forged")
    with pytest.raises(SFrameError):
        ben.decrypt(forged, b"", now=1.0)
    assert ben.held_kids() == held
    assert ben.decrypt(ana.encrypt(b"", b"ok", now=1.0), b"", now=1.0) == b"ok"


@pytest.mark.parametrize(
    "key_id",
    [KeyId(1, 1, 0), KeyId(7, 0, 0), KeyId(1, 0, 300)],  # unknown generation, sender, too far
)
def test_frames_for_keys_not_held_fail(key_id: KeyId) -> None:
    _, ben = _pair()
    with pytest.raises(SFrameError):
        ben.decrypt(encrypt(4, bytes(32), key_id.kid, 0, b"", b"x"), b"", now=0.0)


def test_peer_keys_only_move_forward() -> None:
    ana, ben = _pair()
    first = ana.current_key
    ben.add_peer_key(first, now=0.0)  # the same key again is fine
    ben.add_peer_key(ana.on_leave(now=1.0), now=1.0)
    with pytest.raises(StaleSenderKey):
        ben.add_peer_key(first, now=2.0)
    with pytest.raises(KeyConflict):
        ben.add_peer_key(ben.current_key, now=2.0)


def test_removed_peers_are_not_decrypted() -> None:
    ana, ben = _pair()
    frame = ana.encrypt(b"", b"x", now=0.0)
    ben.remove_peer(1)
    with pytest.raises(SFrameError):
        ben.decrypt(frame, b"", now=0.0)


def test_generations_do_not_wrap() -> None:
    ana = SenderKeys(1)
    ana._pending = SenderKey(KeyId(1, MAX_GENERATION, 0), ana.suite, ana.current_key.base_key)
    with pytest.raises(KeyExhausted):
        ana.on_leave(now=0.0)


def test_delay_must_not_exceed_grace() -> None:
    with pytest.raises(ValueError):
        SenderKeys(1, activation_delay=11.0, grace_period=10.0)


def test_keys_do_not_leak_through_repr() -> None:
    ana, _ = _pair()
    secret_hex = ana.current_key.base_key.reveal().hex()
    for text in (repr(ana), repr(ana.current_key), str(ana.current_key), f"{ana.current_key}"):
        assert secret_hex not in text
    assert "**********" in repr(ana.current_key)


def test_a_newer_pending_key_keeps_the_earlier_deadline() -> None:
    ana = SenderKeys(1, activation_delay=1.0)
    ana.on_leave(now=10.0)
    ana.on_join(now=10.5)
    newest = ana.on_leave(now=10.9)
    assert frame_key_id(ana.encrypt(b"", b"a", now=10.99)) == KeyId(1, 0, 0)
    assert frame_key_id(ana.encrypt(b"", b"b", now=11.0)) == newest.id  # not 11.9
    assert newest.id == KeyId(1, 2, 0)


def test_joins_while_a_kicks_key_is_pending_wait_for_the_kicks_deadline() -> None:
    """Kim is kicked at 10.0; Dan and Eve join at 10.5 and 10.8. The key that excludes Kim is
    ratcheted for each newcomer but is used neither before Ben, who stayed, may hold it (he
    was sent only generation 1, step 0) nor after the kick's deadline, 11.0."""
    ana, ben = _pair()
    kim = SenderKeys(9)
    kim.add_peer_key(ana.current_key, now=0.0)
    ben.add_peer_key(ana.on_leave(now=10.0), now=10.0)  # the kick
    for_dan = ana.on_join(now=10.5)
    for_eve = ana.on_join(now=10.8)
    assert (for_dan.id, for_eve.id) == (KeyId(1, 1, 1), KeyId(1, 1, 2))
    assert ana.latest_key == for_eve and ana.current_key.id == KeyId(1, 0, 0)
    dan, eve = SenderKeys(4), SenderKeys(5)
    dan.add_peer_key(for_dan, now=10.8)
    eve.add_peer_key(for_eve, now=10.8)

    waiting = ana.encrypt(b"", b"waiting", now=10.99)
    assert frame_key_id(waiting) == KeyId(1, 0, 0)  # not yet a key Ben may lack
    assert kim.decrypt(waiting, b"", now=10.99) == b"waiting"  # the delay's price, as before
    for newcomer in (dan, eve):
        with pytest.raises(SFrameError):
            newcomer.decrypt(waiting, b"", now=10.99)

    due = ana.encrypt(b"", b"due", now=11.0)  # the kick's deadline, not the joins' (11.5, 11.8)
    assert frame_key_id(due) == for_eve.id
    for reader in (ben, dan, eve):
        assert reader.decrypt(due, b"", now=11.0) == b"due"
    with pytest.raises(SFrameError):
        kim.decrypt(due, b"", now=11.0)


def test_a_join_after_a_pending_keys_deadline_ratchets_it_and_uses_that_at_once() -> None:
    ana, ben = _pair()
    ben.add_peer_key(ana.on_leave(now=10.0), now=10.0)  # due at 11.0; no frame or tick since
    for_dan = ana.on_join(now=12.0)
    assert for_dan.id == KeyId(1, 1, 1)
    frame = ana.encrypt(b"", b"x", now=12.0)
    assert frame_key_id(frame) == for_dan.id
    assert ben.decrypt(frame, b"", now=12.0) == b"x"


def test_churn_does_not_postpone_the_key_that_excludes_a_kicked_participant() -> None:
    """Issue 9, finding 3: a rotation every 200 ms (someone resuming in a loop) after a kick;
    the kicked participant's last keys stop working within 2 x the activation delay."""
    delay = 1.0
    ana = SenderKeys(1, activation_delay=delay)
    kicked = SenderKeys(9)
    kicked.add_peer_key(ana.current_key, now=0.0)
    kicked.add_peer_key(ana.on_join(now=0.0), now=0.0)  # everything it was ever given
    kick_at = 5.0
    ana.on_leave(now=kick_at)
    readable_until = None
    now = kick_at
    while now < kick_at + 4 * delay:
        if round((now - kick_at) / 0.2) % 2:
            ana.on_join(now)  # the churning participant back
        else:
            ana.on_leave(now)  # ...and gone again
        frame = ana.encrypt(b"", b"after the kick", now)
        try:
            kicked.decrypt(frame, b"", now)
            readable_until = now
        except SFrameError:
            pass
        now += 0.2
    assert readable_until is not None  # the delay applied: the old key ran on for a moment
    assert readable_until < kick_at + 2 * delay
    assert ana.current_key.id.generation >= 1


def test_a_leave_after_an_overdue_pending_key_still_waits_the_full_delay() -> None:
    ana = SenderKeys(1, activation_delay=1.0)
    first = ana.on_leave(now=0.0)  # due at 1.0; no frame is sent until much later
    second = ana.on_leave(now=5.0)
    assert frame_key_id(ana.encrypt(b"", b"a", now=5.5)) == first.id
    assert frame_key_id(ana.encrypt(b"", b"b", now=6.0)) == second.id


def test_a_step_activated_as_the_next_generation_arrives_still_decrypts_until_grace() -> None:
    ana, ben = _pair()
    ana.on_join(now=0.0)  # step 1, in use at once, never sent to ben: he follows the ratchet
    ben.add_peer_key(ana.on_leave(now=5.0), now=5.0)  # step 1 stays in use, gen 1 is pending
    frame = ana.encrypt(b"", b"step one", now=5.5)
    assert frame_key_id(frame) == KeyId(1, 0, 1)
    assert ben.decrypt(frame, b"", now=5.5) == b"step one"
    late = ana.encrypt(b"", b"late", now=5.9)
    ben.tick(now=15.0)  # 10 s after ben got generation 1: generation 0 is gone, ratchets too
    with pytest.raises(SFrameError):
        ben.decrypt(late, b"", now=15.0)
    assert ben.decrypt(ana.encrypt(b"", b"new", now=15.0), b"", now=15.0) == b"new"
