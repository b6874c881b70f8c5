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


def test_a_new_key_is_used_only_after_the_activation_delay() -> None:
    ana = SenderKeys(1)
    newcomer_key = ana.on_join(now=10.0)
    assert newcomer_key.id == KeyId(1, 0, 1)
    assert ana.latest_key == newcomer_key
    assert frame_key_id(ana.encrypt(b"", b"a", now=10.99)) == KeyId(1, 0, 0)
    assert frame_key_id(ana.encrypt(b"", b"b", now=11.0)) == KeyId(1, 0, 1)
    assert ana.current_key == newcomer_key


def test_a_restart_uses_the_next_generation_at_once() -> None:
    ana = SenderKeys(1)
    ana.on_join(now=10.0)  # pending: the restart replaces it and does not wait for it
    fresh = ana.restart(now=10.0)
    assert fresh.id == KeyId(1, 1, 0)
    assert ana.current_key == fresh and ana.latest_key == fresh
    assert frame_key_id(ana.encrypt(b"", b"a", now=10.0)) == KeyId(1, 1, 0)
    assert frame_key_id(ana.encrypt(b"", b"b", now=20.0)) == KeyId(1, 1, 0)


def test_receivers_follow_a_ratchet_and_delete_the_old_key_after_the_grace_period() -> None:
    ana, ben = _pair()
    old = ana.encrypt(b"", b"old", now=0.0)
    late_old = ana.encrypt(b"", b"late", now=0.0)
    ana.on_join(now=1.0)
    new = ana.encrypt(b"", b"new", now=2.0)
    assert ben.decrypt(old, b"", now=2.0) == b"old"
    assert ben.decrypt(new, b"", now=2.5) == b"new"  # derived by ratcheting, no message needed
    assert KeyId(1, 0, 1).kid in ben.held_kids()
    assert ben.decrypt(late_old, b"", now=12.4) == b"late"  # within 10 s of the switch
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
    newest = ana.on_join(now=10.9)
    assert frame_key_id(ana.encrypt(b"", b"a", now=10.99)) == KeyId(1, 0, 0)
    assert frame_key_id(ana.encrypt(b"", b"b", now=11.0)) == newest.id  # not 11.9


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


def test_a_rotation_after_an_overdue_pending_key_still_waits_the_full_delay() -> None:
    ana = SenderKeys(1, activation_delay=1.0)
    first = ana.on_join(now=0.0)  # due at 1.0; no frame is sent until much later
    second = ana.on_leave(now=5.0)
    assert frame_key_id(ana.encrypt(b"", b"a", now=5.5)) == first.id
    assert frame_key_id(ana.encrypt(b"", b"b", now=6.0)) == second.id


def test_a_step_activated_as_the_next_generation_arrives_still_decrypts_until_grace() -> None:
    ana, ben = _pair()
    ana.on_join(now=0.0)  # step 1, due at 1.0, never sent to ben: he follows the ratchet
    ben.add_peer_key(ana.on_leave(now=5.0), now=5.0)  # step 1 goes in use now, gen 1 is pending
    frame = ana.encrypt(b"", b"step one", now=5.5)
    assert frame_key_id(frame) == KeyId(1, 0, 1)
    assert ben.decrypt(frame, b"", now=5.5) == b"step one"
    late = ana.encrypt(b"", b"late", now=5.9)
    ben.tick(now=15.0)  # 10 s after ben got generation 1: generation 0 is gone, ratchets too
    with pytest.raises(SFrameError):
        ben.decrypt(late, b"", now=15.0)
    assert ben.decrypt(ana.encrypt(b"", b"new", now=15.0), b"", now=15.0) == b"new"
