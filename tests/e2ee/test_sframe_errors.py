"""Bad frames of every kind end in SFrameError, never another exception or partial plaintext."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.e2ee import sframe
from bot.e2ee.errors import CounterExhausted, KeyConflict, SFrameError
from bot.e2ee.header import MAX_U64, decode_header, encode_header
from bot.e2ee.secretkey import SecretKey
from bot.e2ee.sframe import SFrameContext
from bot.e2ee.suites import CipherSuite

BASE_KEY = bytes(range(32))
METADATA = b"clear prefix"
PLAINTEXT = b"an encoded media frame"
KID = 0x30001  # a KID of the Conclave layout: sender 1, generation 0, step 3
ALL_SUITES = list(CipherSuite)


def _pair(suite: int) -> tuple[SFrameContext, SFrameContext]:
    sender, receiver = SFrameContext(suite), SFrameContext(suite)
    sender.add_send_key(KID, SecretKey(BASE_KEY))
    receiver.add_receive_key(KID, SecretKey(BASE_KEY))
    return sender, receiver


@pytest.mark.parametrize("suite", ALL_SUITES)
def test_tampering_any_byte_of_the_frame_fails(suite: CipherSuite) -> None:
    frame = sframe.encrypt(suite, BASE_KEY, KID, 300, METADATA, PLAINTEXT)
    header_len = decode_header(frame)[2]
    assert header_len > 1  # the loop below covers header, ciphertext and tag bytes
    for i in range(len(frame)):
        for flip in (0x01, 0x80):
            bad = bytearray(frame)
            bad[i] ^= flip
            with pytest.raises(SFrameError):
                sframe.decrypt(suite, BASE_KEY, bytes(bad), METADATA)
            _, receiver = _pair(suite)
            with pytest.raises(SFrameError):
                receiver.decrypt(bytes(bad), METADATA)


@pytest.mark.parametrize("suite", ALL_SUITES)
def test_tampering_any_byte_of_the_metadata_fails(suite: CipherSuite) -> None:
    frame = sframe.encrypt(suite, BASE_KEY, KID, 9, METADATA, PLAINTEXT)
    for i in range(len(METADATA)):
        bad = bytearray(METADATA)
        bad[i] ^= 0x01
        with pytest.raises(SFrameError):
            sframe.decrypt(suite, BASE_KEY, frame, bytes(bad))
    for other in (b"", METADATA + b"x", METADATA[:-1]):
        with pytest.raises(SFrameError):
            sframe.decrypt(suite, BASE_KEY, frame, other)


@pytest.mark.parametrize("suite", ALL_SUITES)
def test_every_truncation_fails(suite: CipherSuite) -> None:
    frame = sframe.encrypt(suite, BASE_KEY, KID, 1 << 40, METADATA, PLAINTEXT)
    for n in range(len(frame)):
        with pytest.raises(SFrameError):
            sframe.decrypt(suite, BASE_KEY, frame[:n], METADATA)
        _, receiver = _pair(suite)
        with pytest.raises(SFrameError):
            receiver.decrypt(frame[:n], METADATA)


def test_wrong_key_and_unknown_kid_fail() -> None:
    frame = sframe.encrypt(4, BASE_KEY, KID, 0, b"", PLAINTEXT)
    with pytest.raises(SFrameError):
        sframe.decrypt(4, bytes(32), frame, b"")
    receiver = SFrameContext()
    receiver.add_receive_key(KID + 1, SecretKey(BASE_KEY))
    with pytest.raises(SFrameError, match="no receive key"):
        receiver.decrypt(frame, b"")


def test_out_of_range_and_unknown_suite_are_sframe_errors() -> None:
    with pytest.raises(SFrameError):
        sframe.encrypt(4, BASE_KEY, KID, MAX_U64 + 1, b"", b"")
    with pytest.raises(SFrameError):
        sframe.encrypt(4, BASE_KEY, -1, 0, b"", b"")
    with pytest.raises(SFrameError):
        sframe.encrypt(0x0006, BASE_KEY, KID, 0, b"", b"")
    with pytest.raises(SFrameError):
        sframe.decrypt(0xF000, BASE_KEY, b"\x00" * 40, b"")


def test_non_minimal_headers_are_rejected() -> None:
    with pytest.raises(SFrameError):
        decode_header(bytes.fromhex("8005"))  # KID 5 in an extension byte
    with pytest.raises(SFrameError):
        decode_header(bytes.fromhex("09" + "00ff"))  # CTR 255 in two bytes
    # The context relies on authentication for this: the header is part of the AAD.
    frame = sframe.encrypt(4, BASE_KEY, 5, 9, b"", PLAINTEXT)
    assert frame[:2] == bytes.fromhex("5809")
    receiver = SFrameContext()
    receiver.add_receive_key(5, SecretKey(BASE_KEY))
    reencoded = bytes.fromhex("880509") + frame[2:]  # same KID 5 and CTR 9, KID extended
    with pytest.raises(SFrameError):
        receiver.decrypt(reencoded, b"")
    assert receiver.decrypt(frame, b"") == PLAINTEXT


@settings(max_examples=400, deadline=None)
@given(
    suite=st.sampled_from(ALL_SUITES),
    data=st.one_of(
        st.binary(max_size=200),
        # Headers that parse, followed by noise, reach the AEAD instead of stopping early.
        st.tuples(st.integers(0, MAX_U64), st.integers(0, MAX_U64), st.binary(max_size=100)).map(
            lambda t: encode_header(t[0], t[1]) + t[2]
        ),
    ),
    metadata=st.binary(max_size=20),
)
def test_fuzzed_frames_raise_only_sframe_error(suite: int, data: bytes, metadata: bytes) -> None:
    with pytest.raises(SFrameError):
        sframe.decrypt(suite, BASE_KEY, data, metadata)
    receiver = SFrameContext(suite)
    receiver.add_receive_key(KID, SecretKey(BASE_KEY))
    receiver.add_receive_key(0, SecretKey(BASE_KEY))
    with pytest.raises(SFrameError):
        receiver.decrypt(data, metadata)


@settings(max_examples=200, deadline=None)
@given(position=st.integers(0, 10_000), flip=st.integers(1, 255))
def test_fuzzed_tampering_of_valid_frames(position: int, flip: int) -> None:
    sender, receiver = _pair(4)
    frame = bytearray(sender.encrypt(KID, METADATA, PLAINTEXT))
    frame[position % len(frame)] ^= flip
    with pytest.raises(SFrameError):
        receiver.decrypt(bytes(frame), METADATA)


def test_replay_window() -> None:
    sender, receiver = _pair(4)
    frames = [sender.encrypt(KID, b"", b"%d" % i) for i in range(2100)]
    receiver.decrypt(frames[2000], b"")
    with pytest.raises(SFrameError, match="replayed"):
        receiver.decrypt(frames[2000], b"")
    # Reordering within 1024 behind the highest counter is accepted, once each.
    for i in range(1999, 2000 - 1024, -1):
        assert receiver.decrypt(frames[i], b"") == b"%d" % i
    with pytest.raises(SFrameError, match="replayed"):
        receiver.decrypt(frames[1500], b"")
    with pytest.raises(SFrameError, match="too old"):
        receiver.decrypt(frames[2000 - 1024], b"")
    with pytest.raises(SFrameError, match="too old"):
        receiver.decrypt(frames[0], b"")
    assert receiver.decrypt(frames[2099], b"") == b"2099"


def test_a_forged_frame_does_not_move_the_window() -> None:
    sender, receiver = _pair(4)
    genuine = sender.encrypt(KID, b"", b"x")
    forged = sframe.encrypt(4, bytes(32), KID, 5000, b"", b"evil")  # wrong key, far ahead
    with pytest.raises(SFrameError):
        receiver.decrypt(forged, b"")
    assert receiver.decrypt(genuine, b"") == b"x"


def test_a_send_key_is_never_reinstalled() -> None:
    sender = SFrameContext()
    sender.add_send_key(KID, SecretKey(BASE_KEY))
    with pytest.raises(KeyConflict):
        sender.add_send_key(KID, SecretKey(BASE_KEY))
    with pytest.raises(KeyConflict):
        sender.add_receive_key(KID, SecretKey(BASE_KEY))
    sender.remove_key(KID)
    with pytest.raises(KeyConflict):
        sender.add_send_key(KID, SecretKey(BASE_KEY))


def test_counters_never_repeat_and_never_wrap() -> None:
    sender, receiver = _pair(4)
    headers = {sender.encrypt(KID, b"", b"")[:6] for _ in range(300)}
    assert len(headers) == 300
    # Jump to the end of the counter space; reaching it takes 2^64 frames otherwise.
    sender._send[KID].next_ctr = MAX_U64
    last = sender.encrypt(KID, b"", b"last")
    assert decode_header(last)[1] == MAX_U64
    assert receiver.decrypt(last, b"") == b"last"
    with pytest.raises(CounterExhausted):
        sender.encrypt(KID, b"", b"one too many")


def test_unknown_send_kid() -> None:
    with pytest.raises(SFrameError):
        SFrameContext().encrypt(KID, b"", b"")
