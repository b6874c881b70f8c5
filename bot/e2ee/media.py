"""The media profile: an encoded frame travels as ``clear_prefix || SFrame``.

Packetizers and the relay need the start of some codecs' payloads, so that part stays in clear
and is passed to SFrame as metadata, which makes it authenticated: a relay that alters it makes
the frame fail to decrypt. VP8 keeps its payload header in clear (RFC 7741 section 4.3: bit 0 of
byte 0 is the inverse key-frame flag, so 0 means key frame): 10 bytes of a key frame (3-byte frame
tag plus start code and dimensions) and 3 bytes of a delta frame (the frame tag). Opus keeps
nothing in clear.

The receiver finds the prefix length the same way, from the first byte it receives. Which of
these codecs each kind of media travels as, with its RTP clock, is ``bot.rtc.profile``.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Final

from bot.e2ee.errors import MediaFrameError, SFrameError

VP8_KEY_FRAME_CLEAR: Final = 10
VP8_DELTA_FRAME_CLEAR: Final = 3

# (metadata, plaintext) -> SFrame ciphertext, e.g. a bound SFrameContext.encrypt with its KID.
Seal = Callable[[bytes, bytes], bytes]
# (sframe, metadata) -> plaintext, e.g. SFrameContext.decrypt; raises SFrameError.
Open = Callable[[bytes, bytes], bytes]


class Codec(StrEnum):
    VP8 = "vp8"
    OPUS = "opus"


def is_vp8_key_frame(frame: bytes) -> bool:
    return not frame[0] & 0x01


def clear_prefix_length(codec: Codec, frame: bytes) -> int:
    """How many leading bytes of ``frame`` (encoded, or as received) stay in clear."""
    if codec is Codec.OPUS:
        return 0
    if not frame:
        return VP8_DELTA_FRAME_CLEAR  # any non-zero length: an empty VP8 frame has no room for it
    return VP8_KEY_FRAME_CLEAR if is_vp8_key_frame(frame) else VP8_DELTA_FRAME_CLEAR


def protect(codec: Codec, frame: bytes, seal: Seal) -> bytes:
    """``clear_prefix || SFrame(metadata=clear_prefix, plaintext=rest)``.

    A VP8 frame shorter than its prefix is not valid VP8 and there is no way to send part of a
    prefix that the receiver could tell apart, so it raises MediaFrameError and the caller drops
    it; it is never sent in clear.
    """
    n = clear_prefix_length(codec, frame)
    if len(frame) < n:
        raise MediaFrameError(codec.value, len(frame), n)
    prefix = frame[:n]
    return prefix + seal(prefix, frame[n:])


def unprotect(codec: Codec, data: bytes, open_frame: Open) -> bytes:
    """The encoded frame back from ``clear_prefix || SFrame``; raises only SFrameError."""
    n = clear_prefix_length(codec, data)
    if len(data) <= n:
        raise SFrameError(f"{codec.value} frame shorter than its clear prefix")
    prefix = data[:n]
    return prefix + open_frame(data[n:], prefix)
