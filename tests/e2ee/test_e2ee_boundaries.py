"""The edges of bot/e2ee's ranges, each on both sides: the last value accepted and the first
refused, the instant a deadline passes, the smallest and largest ids and keys."""

from __future__ import annotations

import pytest
from cryptography.exceptions import InvalidTag

from bot.e2ee import sframe
from bot.e2ee.aead import AesCtrHmac
from bot.e2ee.announce import announce, statement
from bot.e2ee.code import security_code
from bot.e2ee.encoding import b64url_decode, b64url_encode
from bot.e2ee.errors import RosterError, SFrameError, StaleSenderKey
from bot.e2ee.header import MAX_U64, decode_header, encode_header
from bot.e2ee.identity import MeetingKeys, RosterEntry
from bot.e2ee.kid import MAX_GENERATION, MAX_RATCHET_STEP, MAX_SENDER_INDEX, KeyId
from bot.e2ee.roster import KeyBook, ShownEntry
from bot.e2ee.secretkey import SecretKey
from bot.e2ee.senderkeys import SenderKey, SenderKeys, frame_key_id
from bot.e2ee.suites import CipherSuite, suite_params
from bot.e2ee.transport import Binding

GCM = CipherSuite.AES_128_GCM_SHA256_128
PUBLIC = MeetingKeys.generate().public()


# --- headers and encodings ------------------------------------------------------------------


def test_values_up_to_seven_sit_in_the_config_byte_and_eight_takes_a_byte() -> None:
    assert encode_header(7, 7) == b"\x77"
    assert encode_header(8, 8) == b"\x88\x08\x08"
    for kid, ctr in ((8, 8), (255, 256), (MAX_U64, 0), (0, MAX_U64)):
        header = encode_header(kid, ctr)
        assert decode_header(header + b"rest") == (kid, ctr, len(header))


def test_the_per_frame_header_table_agrees_with_decode_header_for_every_config_byte() -> None:
    """SFrameContext.decrypt reads headers through a table built by ``_layout``; it must read
    what ``decode_header`` reads."""
    for config in range(256):
        data = bytes((config,)) + b"\xff" * 16
        kid, ctr, length = decode_header(data)
        assert sframe._layout(config) == sframe._LAYOUTS[config]
        size, mask, shift, ctr_mask, kid_inline, ctr_inline = sframe._layout(config)
        value = int.from_bytes(data[:size], "big") & mask
        assert (size, kid_inline | value >> shift, ctr_inline | value & ctr_mask) == (
            length,
            kid,
            ctr,
        )


def test_base64url_round_trips_every_length_and_keeps_a_trailing_x() -> None:
    assert b64url_encode(b"\x00\x00\x17") == "AAAX"
    for n in range(41):
        data = bytes((i * 37 + 11) % 256 for i in range(n))
        assert b64url_decode(b64url_encode(data)) == data


def test_a_kid_above_64_bits_is_not_a_kid_of_this_layout() -> None:
    assert KeyId.parse(MAX_U64) == KeyId(MAX_SENDER_INDEX, MAX_GENERATION, MAX_RATCHET_STEP)
    assert KeyId.parse(MAX_U64 + 2) is None


# --- ids and indexes --------------------------------------------------------------------------


def test_ids_of_one_and_of_255_characters_and_index_65535_are_accepted() -> None:
    for pid in ("p", "p" * 255):
        signed = bytes((len(pid),)) + pid.encode() + b"\xff\xff"  # the id, then index 65535
        assert signed in statement("r", pid, MAX_SENDER_INDEX, PUBLIC)
        assert Binding(pid, pid, pid, bytes(32), GCM, KeyId(1, 0, 0)).encode()
        assert security_code([(pid, PUBLIC)])
    with pytest.raises(ValueError, match="1-255"):
        Binding("p" * 256, "p", "p", bytes(32), GCM, KeyId(1, 0, 0)).encode()


def test_roster_entries_need_a_string_id_and_an_integer_index() -> None:
    for index in ("3", True, None):
        with pytest.raises(RosterError):
            ShownEntry.from_json({"participant_id": "p-a", "sender_index": index})
    entry = ShownEntry.from_json({"participant_id": "p-a", "sender_index": 3, "keys": "junk"})
    assert entry.keys is None and entry.announcement() is None
    assert entry.who == "p-a (p-a)"
    named = ShownEntry.from_json({"participant_id": "p-a", "sender_index": 3, "name": "Ana"})
    assert named.who == "Ana (p-a)"


def test_a_verified_peer_is_shown_under_its_own_id() -> None:
    mine, theirs = MeetingKeys.generate(), MeetingKeys.generate()
    entries = [
        ShownEntry("p-a", 1, "A", announce(mine, "r", "p-a", 1).to_json()),
        ShownEntry("p-b", 2, "B", announce(theirs, "r", "p-b", 2).to_json()),
    ]
    view = KeyBook("r", "p-a", 1, mine.public()).view(entries)
    assert view.peers == {"p-b": RosterEntry("p-b", 2, theirs.public())}


# --- sender keys: delays, deadlines, gaps ---------------------------------------------------


def test_a_delay_of_zero_and_a_delay_equal_to_the_grace_period_are_allowed() -> None:
    assert SenderKeys(1, activation_delay=0.0).on_leave(0.0)
    assert SenderKeys(1, activation_delay=5.0, grace_period=5.0).on_leave(0.0)


def test_base_keys_are_as_long_as_the_suites_hash() -> None:
    asked: list[int] = []

    def random_bytes(n: int) -> bytes:
        asked.append(n)
        return bytes(n)

    keys = SenderKeys(1, suite=CipherSuite.AES_256_GCM_SHA512_128, random_bytes=random_bytes)
    assert len(keys.on_leave(0.0).base_key) == 64
    assert asked == [64, 64]


def test_a_rotation_exactly_at_the_deadline_starts_the_pending_key_and_waits_for_the_next() -> None:
    keys = SenderKeys(1, activation_delay=1.0)
    first = keys.on_leave(10.0)
    keys.on_leave(11.0)  # the first one's deadline: it is in use, the second one waits
    assert frame_key_id(keys.encrypt(b"", b"x", 11.0)) == first.id


def test_a_join_an_instant_before_a_pending_deadline_keeps_that_deadline() -> None:
    keys = SenderKeys(1, activation_delay=1.0)
    keys.on_leave(10.0)
    ratcheted = keys.on_join(10.999)
    assert frame_key_id(keys.encrypt(b"", b"x", 10.999)) == KeyId(1, 0, 0)
    assert frame_key_id(keys.encrypt(b"", b"x", 11.0)) == ratcheted.id == KeyId(1, 1, 1)


def test_a_join_at_a_pending_deadline_uses_the_ratchet_of_that_key_at_once() -> None:
    keys = SenderKeys(1, activation_delay=1.0)
    keys.on_leave(10.0)
    ratcheted = keys.on_join(11.0)
    assert ratcheted.id == KeyId(1, 1, 1)
    assert keys.current_key == keys.latest_key == ratcheted
    assert frame_key_id(keys.encrypt(b"", b"x", 11.0)) == ratcheted.id


def test_tick_at_the_deadline_starts_the_pending_key() -> None:
    keys = SenderKeys(1, activation_delay=1.0)
    key = keys.on_leave(10.0)
    keys.tick(11.0)
    assert keys.current_key == key


def test_a_superseded_sending_key_is_erased_from_memory() -> None:
    """Forward secrecy against a later memory read: the old key leaves the SFrame context."""
    keys = SenderKeys(1, activation_delay=0.0)
    old = keys.current_key
    keys.on_leave(0.0)
    keys.tick(0.0)
    assert not keys._sending.has_send_key(old.kid)
    assert keys._sending.has_send_key(keys.current_key.kid)


def test_the_same_key_again_is_accepted_and_another_key_under_its_id_is_stale() -> None:
    ana, ben = SenderKeys(1), SenderKeys(2)
    ben.add_peer_key(ana.current_key, now=0.0)
    ben.add_peer_key(ana.current_key, now=0.0)  # re-sent after a reconnect
    impostor = SenderKey(ana.current_key.id, GCM, SecretKey(bytes(32)))
    with pytest.raises(StaleSenderKey):
        ben.add_peer_key(impostor, now=0.0)
    assert ben.decrypt(ana.encrypt(b"", b"still", 0.0), b"", 0.0) == b"still"


def test_a_superseded_key_is_refused_from_the_instant_its_grace_period_ends() -> None:
    ana, ben = SenderKeys(1, grace_period=10.0), SenderKeys(2)
    ben.add_peer_key(ana.current_key, now=0.0)
    old = [ana.encrypt(b"", b"old", 0.0) for _ in range(2)]
    ben.add_peer_key(ana.on_leave(5.0), now=5.0)
    assert ben.decrypt(old[0], b"", 14.999) == b"old"
    with pytest.raises(SFrameError):
        ben.decrypt(old[1], b"", 15.0)


def test_a_receiver_follows_exactly_as_many_steps_as_allowed() -> None:
    ana, ben = SenderKeys(1), SenderKeys(2, max_ratchet_gap=3)
    ben.add_peer_key(ana.current_key, now=0.0)
    for _ in range(3):
        ana.on_join(0.0)
    assert ben.decrypt(ana.encrypt(b"", b"three", 10.0), b"", 10.0) == b"three"


def test_after_an_old_generation_expires_the_current_one_still_ratchets() -> None:
    ana, ben = SenderKeys(1, activation_delay=0.0), SenderKeys(2)
    ben.add_peer_key(ana.current_key, now=0.0)
    ben.add_peer_key(ana.on_leave(0.0), now=0.0)
    assert ben.decrypt(ana.encrypt(b"", b"gen 1", 20.0), b"", 20.0) == b"gen 1"  # gen 0 expires
    ana.on_join(20.0)
    assert ben.decrypt(ana.encrypt(b"", b"step 1", 30.0), b"", 30.0) == b"step 1"


# --- the AEADs ------------------------------------------------------------------------------


@pytest.mark.parametrize("suite", list(CipherSuite))
def test_an_empty_plaintext_round_trips(suite: CipherSuite) -> None:
    base = bytes(suite_params(suite).nh)
    frame = sframe.encrypt(suite, base, 9, 0, b"md", b"")
    assert sframe.decrypt(suite, base, frame, b"md") == b""


def test_ctr_hmac_treats_no_associated_data_as_empty_and_binds_any_given() -> None:
    params = suite_params(CipherSuite.AES_128_CTR_HMAC_SHA256_80)
    aead = AesCtrHmac(params, bytes(params.nk))
    nonce = bytes(12)
    assert aead.encrypt(nonce, b"x", None) == aead.encrypt(nonce, b"x", b"")
    assert aead.encrypt(nonce, b"x", None) != aead.encrypt(nonce, b"x", b"XXXX")
    with pytest.raises(InvalidTag):
        aead.decrypt(nonce, aead.encrypt(nonce, b"x", b"XXXX"), None)
    assert aead.decrypt(nonce, aead.encrypt(nonce, b"", None), None) == b""


def test_a_context_shows_its_kids_and_suite_and_nothing_else() -> None:
    ctx = sframe.SFrameContext()
    ctx.add_send_key(3, SecretKey(b"\x42" * 32))
    for kid in (2, 1):
        ctx.add_receive_key(kid, SecretKey(b"\x42" * 32))
    assert repr(ctx) == "SFrameContext(suite=AES_128_GCM_SHA256_128, send=[3], receive=[1, 2])"


def test_the_largest_kid_is_a_kid_and_a_removed_send_key_is_gone() -> None:
    ctx = sframe.SFrameContext()
    ctx.add_send_key(MAX_U64, SecretKey(bytes(32)))
    ctx.remove_key(MAX_U64)
    assert not ctx.has_send_key(MAX_U64)
