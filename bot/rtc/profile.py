"""Conclave's media profile: one codec for each kind of media, and its RTP clock.

VP8 video (H.264 packetization splits on start codes, which ciphertext contains) and Opus
audio; RTX rides along so that lost video packets can be retransmitted. Which bytes of each
codec's frames stay in clear is the end-to-end encryption's half of the profile
(``bot.e2ee.media``); this module says which of those codecs each kind of media travels as.
"""

from __future__ import annotations

import fractions
from dataclasses import dataclass
from typing import Final

from bot.e2ee.media import Codec


@dataclass(frozen=True)
class KindProfile:
    kind: str  # "audio" or "video", as WebRTC names a track's kind
    codec: Codec
    mime_type: str  # as negotiated in SDP, e.g. video/VP8
    clock_rate: int  # RTP timestamp units a second

    @property
    def time_base(self) -> fractions.Fraction:
        return fractions.Fraction(1, self.clock_rate)


VIDEO: Final = KindProfile("video", Codec.VP8, "video/VP8", 90_000)
AUDIO: Final = KindProfile("audio", Codec.OPUS, "audio/opus", 48_000)
PROFILE: Final = {p.kind: p for p in (VIDEO, AUDIO)}
