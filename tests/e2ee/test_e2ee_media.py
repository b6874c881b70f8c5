"""The clear-prefix media profile: VP8 keeps 10/3 bytes in clear, Opus none, all authenticated."""

from __future__ import annotations

import pytest

from bot.e2ee.errors import MediaFrameError, SFrameError
from bot.e2ee.media import Codec, clear_prefix_length, protect, unprotect
from bot.e2ee.secretkey import SecretKey
from bot.e2ee.sframe import SFrameContext

KID = 0x10002
VP8_KEY = bytes.fromhex("5042009d012a8002e001") + b"key frame payload"
VP8_DELTA = bytes.fromhex("310a00") + b"delta frame payload"
OPUS = bytes.fromhex("fcff") + b"opus payload"


@pytest.fixture
def pair() -> tuple[SFrameContext, SFrameContext]:
    sender, receiver = SFrameContext(), SFrameContext()
    sender.add_send_key(KID, SecretKey(bytes(32)))
    receiver.add_receive_key(KID, SecretKey(bytes(32)))
    return sender, receiver


def test_prefix_lengths() -> None:
    assert clear_prefix_length(Codec.VP8, VP8_KEY) == 10  # bit 0 of byte 0 clear: key frame
    assert clear_prefix_length(Codec.VP8, VP8_DELTA) == 3
    assert clear_prefix_length(Codec.OPUS, OPUS) == 0
    assert clear_prefix_length(Codec.OPUS, VP8_KEY) == 0


@pytest.mark.parametrize(
    ("codec", "frame", "clear"),
    [(Codec.VP8, VP8_KEY, 10), (Codec.VP8, VP8_DELTA, 3), (Codec.OPUS, OPUS, 0)],
)
def test_round_trip_keeps_exactly_the_prefix_in_clear(
    pair: tuple[SFrameContext, SFrameContext], codec: Codec, frame: bytes, clear: int
) -> None:
    sender, receiver = pair
    wire = protect(codec, frame, lambda md, pt: sender.encrypt(KID, md, pt))
    assert wire[:clear] == frame[:clear]
    assert frame[clear:] not in wire  # the rest is encrypted
    assert unprotect(codec, wire, receiver.decrypt) == frame


@pytest.mark.parametrize(
    "codec_frame", [(Codec.VP8, VP8_KEY), (Codec.VP8, VP8_DELTA), (Codec.OPUS, OPUS)]
)
def test_the_clear_prefix_is_authenticated(
    pair: tuple[SFrameContext, SFrameContext], codec_frame: tuple[Codec, bytes]
) -> None:
    codec, frame = codec_frame
    sender, _ = pair
    wire = protect(codec, frame, lambda md, pt: sender.encrypt(KID, md, pt))
    for i in range(len(wire)):
        bad = bytearray(wire)
        bad[i] ^= 0x01  # in the prefix this also flips VP8's key-frame bit of byte 0
        receiver = SFrameContext()
        receiver.add_receive_key(KID, SecretKey(bytes(32)))
        with pytest.raises(SFrameError):
            unprotect(codec, bytes(bad), receiver.decrypt)


@pytest.mark.parametrize("frame", [b"", b"\x50", VP8_KEY[:9], b"\x31\x0a"])
def test_short_vp8_frames_are_refused_not_crashed_on(
    pair: tuple[SFrameContext, SFrameContext], frame: bytes
) -> None:
    sender, receiver = pair
    with pytest.raises(MediaFrameError):
        protect(Codec.VP8, frame, lambda md, pt: sender.encrypt(KID, md, pt))
    with pytest.raises(SFrameError):
        unprotect(Codec.VP8, frame, receiver.decrypt)


def test_frames_exactly_as_long_as_the_prefix_work(
    pair: tuple[SFrameContext, SFrameContext],
) -> None:
    sender, receiver = pair
    for codec, frame in ((Codec.VP8, VP8_KEY[:10]), (Codec.VP8, VP8_DELTA[:3]), (Codec.OPUS, b"")):
        wire = protect(codec, frame, lambda md, pt: sender.encrypt(KID, md, pt))
        assert unprotect(codec, wire, receiver.decrypt) == frame


def test_received_data_too_short_for_its_prefix(pair: tuple[SFrameContext, SFrameContext]) -> None:
    _, receiver = pair
    for data in (b"", VP8_KEY[:10], VP8_DELTA[:3]):
        with pytest.raises(SFrameError):
            unprotect(Codec.VP8, data, receiver.decrypt)
    with pytest.raises(SFrameError):
        unprotect(Codec.OPUS, b"", receiver.decrypt)
