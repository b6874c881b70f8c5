"""The generator's packets: SFrame-shaped VP8 and Opus RTP, stamped so receivers can time them.

A video payload is a VP8 payload descriptor (4 bytes: X, I and a 15-bit picture id), then on a
frame's first packet the clear VP8 prefix Conclave's media profile leaves readable (10 bytes on
a key frame, 3 on a delta frame), then where the SFrame header and ciphertext would start an
8-byte send time (``time.time_ns``, the clock the kernel stamps a datagram's arrival with) and
an 8-byte index, then filler. An audio payload is the send time, the index and filler. The index
carries the stream's number in its top bits and the packet's sequence below ``SEQ_BITS``, so a
receiver knows whose packet it holds from the payload alone, and the filler is a function of
the send time and index, so a receiver can rebuild the whole payload and check it byte for byte.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass, field
from typing import Final

PACKETS_PER_FRAME: Final = 5
VIDEO_PAYLOAD_BYTES: Final = 1060  # with header, extensions and SRTP tag: about 1,100 on the wire
AUDIO_PAYLOAD_BYTES: Final = 64  # about 100 on the wire
AUDIO_RATE: Final = 50.0  # Opus packets a second (20 ms frames)
KEY_PREFIX: Final = bytes([0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A, 0x80, 0x02, 0xE0, 0x01])
DELTA_PREFIX: Final = bytes([0x11, 0x02, 0x00])
STAMP: Final = struct.Struct("!QQ")  # send time (ns), index
SEQ_BITS: Final = 40
SEQ_MASK: Final = (1 << SEQ_BITS) - 1
_FILLER: Final = hashlib.shake_256(b"conclave relay capacity filler").digest(4096)

# RTP header; then a one-byte-header extension block (RFC 8285).
_RTP: Final = struct.Struct("!BBHII")
_EXTENSION_BLOCK: Final = struct.Struct("!HH")
_ABS_SEND_TIME: Final = struct.Struct("!I")
_ONE_BYTE_PROFILE: Final = 0xBEDE
ABS_SEND_TIME_URI: Final = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
MID_URI: Final = "urn:ietf:params:rtp-hdrext:sdes:mid"
AUDIO_LEVEL_URI: Final = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
AUDIO_LEVEL: Final = 0x80 | 40  # voice activity, -40 dBov


def stream_number(participant: int, kind: str) -> int:
    return participant * 2 + (kind == "video")


def filler(stamp: bytes, size: int) -> bytes:
    """Filler that depends on every bit of the stamp, so a changed send time shows too."""
    start = zlib.crc32(stamp) % 2048
    return _FILLER[start : start + size]


def video_payload(stream: int, seq: int, key: bool, sent_ns: int) -> bytes:
    """Packet ``seq`` of a stream whose frames are ``PACKETS_PER_FRAME`` packets each."""
    first = seq % PACKETS_PER_FRAME == 0
    picture = (seq // PACKETS_PER_FRAME) & 0x7FFF
    descriptor = bytes([0x90 if first else 0x80, 0x80, 0x80 | picture >> 8, picture & 0xFF])
    prefix = (KEY_PREFIX if key else DELTA_PREFIX) if first else b""
    stamp = STAMP.pack(sent_ns, stream << SEQ_BITS | seq)
    size = VIDEO_PAYLOAD_BYTES - len(descriptor) - len(prefix) - STAMP.size
    return descriptor + prefix + stamp + filler(stamp, size)


def audio_payload(stream: int, seq: int, sent_ns: int) -> bytes:
    stamp = STAMP.pack(sent_ns, stream << SEQ_BITS | seq)
    return stamp + filler(stamp, AUDIO_PAYLOAD_BYTES - STAMP.size)


def stamp_offset(video: bool, payload: bytes | memoryview, at: int = 0) -> int:
    """Where the send time starts in a payload that starts at ``at``."""
    if not video:
        return at
    if payload[at] & 0x10:  # S: a frame's first packet carries the clear prefix
        return at + 4 + (len(DELTA_PREFIX) if payload[at + 4] & 1 else len(KEY_PREFIX))
    return at + 4


def payload_matches(video: bool, payload: bytes) -> bool:
    """Whether ``payload`` is exactly what the generator sent for the index it carries."""
    try:
        sent_ns, index = STAMP.unpack_from(payload, stamp_offset(video, payload))
    except (IndexError, struct.error):
        return False
    stream, seq = index >> SEQ_BITS, index & SEQ_MASK
    if not video:
        return payload == audio_payload(stream, seq, sent_ns)
    key = bool(payload[0] & 0x10) and not payload[4] & 1
    return payload == video_payload(stream, seq, key, sent_ns)


def rtp_payload_offset(packet: bytes) -> int:
    """Where the payload of a plain RTP packet starts (after CSRCs and the extension block)."""
    at = 12 + 4 * (packet[0] & 0x0F)
    if packet[0] & 0x10:
        at += 4 + 4 * int.from_bytes(packet[at + 2 : at + 4])
    return at


@dataclass(frozen=True)
class HeaderTemplate:
    """One sender's RTP header: SSRC, payload type, and the extensions the answer agreed to.

    ``extensions`` maps an extension's URI to its negotiated id. Like aiortc's own sender (and
    a browser's), video packets carry abs-send-time and mid, audio packets audio level and mid.
    """

    ssrc: int
    payload_type: int
    extensions: dict[str, int]
    mid: str
    _tail: bytes = field(init=False, repr=False)  # the constant elements, padded
    _abs_id: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        tail = b""
        if (level_id := self.extensions.get(AUDIO_LEVEL_URI)) is not None:
            tail += bytes([level_id << 4, AUDIO_LEVEL])
        if (mid_id := self.extensions.get(MID_URI)) is not None and self.mid:
            tail += bytes([mid_id << 4 | (len(self.mid) - 1)]) + self.mid.encode()
        tail += bytes(-len(tail) % 4)
        abs_id = self.extensions.get(ABS_SEND_TIME_URI, 0)
        words = (len(tail) + (4 if abs_id else 0)) // 4
        object.__setattr__(self, "_tail", _EXTENSION_BLOCK.pack(_ONE_BYTE_PROFILE, words) + tail)
        object.__setattr__(self, "_abs_id", abs_id)

    def pack(self, seq: int, timestamp: int, marker: bool, now_s: float) -> bytes:
        """The header of packet ``seq``; abs-send-time is ``now_s`` in 6.18 fixed point."""
        head = _RTP.pack(
            0x90,  # version 2, extension present
            self.payload_type | (0x80 if marker else 0),
            seq & 0xFFFF,
            timestamp & 0xFFFFFFFF,
            self.ssrc,
        )
        if not self._abs_id:
            return head + self._tail
        sent = (self._abs_id << 4 | 2) << 24 | int(now_s * (1 << 18)) & 0xFFFFFF
        return head + self._tail[:4] + _ABS_SEND_TIME.pack(sent) + self._tail[4:]


class Histogram:
    """Latencies in ``BUCKET_NS`` buckets (1 s in all); the last bucket holds the rest."""

    BUCKET_NS: Final = 50_000
    BUCKETS: Final = 20000

    def __init__(self) -> None:
        self.counts = [0] * self.BUCKETS

    def add(self, ns: int) -> None:
        self.counts[min(max(ns, 0) // self.BUCKET_NS, self.BUCKETS - 1)] += 1

    def sparse(self) -> dict[str, int]:
        return {str(i): n for i, n in enumerate(self.counts) if n}

    def merge_sparse(self, sparse: dict[str, int]) -> None:
        for i, n in sparse.items():
            self.counts[int(i)] += n

    @property
    def total(self) -> int:
        return sum(self.counts)

    def percentile_ms(self, fraction: float) -> float:
        """The upper edge of the bucket holding the nearest-rank value; 0.0 when empty."""
        rank = int(fraction * self.total)
        seen = 0
        for i, n in enumerate(self.counts):
            seen += n
            if n and seen > rank:
                return (i + 1) * self.BUCKET_NS / 1e6
        return 0.0
