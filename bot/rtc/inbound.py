"""Which of one peer's SRTP and SRTCP packets a relay worker decrypts, decided before libsrtp.

aiortc's DTLS transport decrypts with one libsrtp session whose policy takes any SSRC
(``SSRC_ANY_INBOUND``): each authentic packet with a new SSRC makes libsrtp create a stream for
it, and aiortc's router and receivers then add entries and statistics of their own, so a peer
that cycles SSRCs grows the worker without bound. An ``InboundGuard`` stands in for that session
(``internals.guard_inbound`` puts it there) and reads the SSRC from the clear header first.
aiortc then parses what was decrypted; RTP whose header extensions do not decode the guard has
dropped and counted, not let end the transport (``checked_extensions``).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import pylibsrtp

from bot.ratelimit import TokenBucket

T = TypeVar("T")


class Dropped(pylibsrtp.Error):
    """Raised in place of decrypting a packet; the transport logs it at debug level and goes on."""


class InboundGuard:
    """Drops, before libsrtp, what one peer may not make the worker decrypt, and counts it.

    Dropped and counted in ``foreign``:

    - RTP whose SSRC is not one of ``rtp_ssrcs`` (the announced media and RTX SSRCs);
    - RTCP from an SSRC that is neither announced (``rtcp_ssrcs``) nor one of the first
      ``rtcp_limit()`` others that authenticated: browsers send receiver reports from SSRCs
      they do not announce, aiortc from ones announced only in answers.

    Every other packet spends a token of a bucket that refills at ``rate`` packets per second up
    to ``rate``; without one it is dropped and counted in ``over_rate``. ``passed`` counts the
    packets handed to libsrtp. Authentic RTP whose header extensions do not decode is dropped
    after decryption and counted in ``malformed`` (``checked_extensions``), as are empty
    datagrams, which aiortc's transport does not survive (``internals.guard``).

    Before DTLS, ICE: aioice learns a peer-reflexive candidate, with a candidate pair and its
    connectivity checks, for each new source address of an authentic check. Once the connection
    knows ``remote_candidates`` candidates, checks from new addresses are ignored (counted in
    ``ice_refused``).
    """

    def __init__(
        self,
        rtp_ssrcs: Iterable[int],
        rtcp_ssrcs: Iterable[int],
        rtcp_limit: Callable[[], int],
        rate: float,
        remote_candidates: int,
    ) -> None:
        self.rtp_ssrcs = frozenset(rtp_ssrcs)
        self.rtcp_ssrcs = frozenset(rtcp_ssrcs) | self.rtp_ssrcs
        self.rtcp_learned: set[int] = set()
        self.remote_candidates = remote_candidates
        self.passed = 0
        self.foreign = 0
        self.over_rate = 0
        self.ice_refused = 0
        self.malformed = 0
        self.session: Any = None  # the libsrtp session it stands in for, once DTLS is up
        self.transports: list[Any] = []  # the DTLS transports it already guards
        self._rtcp_limit = rtcp_limit
        self._bucket = TokenBucket(rate, burst=rate)

    def count_malformed(self) -> None:
        self.malformed += 1

    @property
    def started(self) -> bool:
        """Whether DTLS is up and the guard stands before the session it made."""
        return self.session is not None

    def unprotect(self, data: bytes) -> bytes:
        if len(data) < 12 or int.from_bytes(data[8:12]) not in self.rtp_ssrcs:
            self.foreign += 1
            raise Dropped("SSRC not announced")
        self._spend()
        return bytes(self.session.unprotect(data))

    def unprotect_rtcp(self, data: bytes) -> bytes:
        ssrc = int.from_bytes(data[4:8])
        known = ssrc in self.rtcp_ssrcs or ssrc in self.rtcp_learned
        if not known and (len(data) < 8 or len(self.rtcp_learned) >= self._rtcp_limit()):
            self.foreign += 1
            raise Dropped("RTCP SSRC not announced")
        self._spend()
        plain = bytes(self.session.unprotect_rtcp(data))
        if not known:  # authentic: libsrtp has just made a stream for it
            self.rtcp_learned.add(ssrc)
        return plain

    def checked_extensions(self, decode: Callable[[int, bytes], T]) -> Callable[[int, bytes], T]:
        """``decode`` (a header extensions map's ``get``), raising only ValueError, and counting.

        aiortc unpacks the extensions it knows (abs-send-time, audio level) with ``struct``
        whatever their length, and its transport drops only RTP whose parsing raises ValueError:
        a ``struct.error`` ends the transport's receive loop, and the peer's whole connection.
        """

        def checked(profile: int, value: bytes) -> T:
            try:
                return decode(profile, value)
            except (ValueError, struct.error) as exc:
                self.malformed += 1
                raise ValueError(f"malformed RTP header extension: {exc}") from None

        return checked

    def _spend(self) -> None:
        if not self._bucket.take():
            self.over_rate += 1
            raise Dropped("over the packet rate")
        self.passed += 1
