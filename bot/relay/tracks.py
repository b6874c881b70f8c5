"""One published track and its copies to subscribers: RTP in, the same payload bytes out.

A published packet is copied to each subscriber with the subscriber sender's SSRC, payload type
and mid and a per-subscriber sequence number offset; the payload bytes are not touched. The
relay reads only the VP8 payload descriptor and the first byte of a frame (the clear key-frame
flag) so that a new subscriber's video starts at a key frame. It holds no media keys.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from aiortc import RTCRtpTransceiver
from aiortc.rtp import RtpPacket

from bot.rtc import internals
from bot.rtc.bandwidth import UplinkFeedback
from bot.rtc.profile import PROFILE
from bot.rtc.receiving import ReceiverTap

if TYPE_CHECKING:
    from bot.relay.lines import SendLine
    from bot.relay.sfu import Peer

KEYFRAME_REQUEST_INTERVAL: Final = 0.3  # at most one PLI upstream per publisher track per 300 ms


def vp8_starts_key_frame(payload: bytes) -> bool:
    """Whether an RTP payload starts a VP8 key frame (RFC 7741 sections 4.2 and 4.3).

    It must begin partition 0 (S=1, PID=0) and the frame's first byte, which stays in clear
    under Conclave's media profile, must have the inverse key-frame bit P at 0.
    """
    if len(payload) < 2:
        return False
    first = payload[0]
    if not first & 0x10 or first & 0x0F:  # S bit, partition index
        return False
    pos = 1
    if first & 0x80:  # X: extension byte follows
        ext = payload[1]
        pos = 2
        if ext & 0x80:  # I: picture id, one or two bytes
            if len(payload) <= pos:
                return False
            pos += 2 if payload[pos] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            pos += 1
        if ext & 0x30:  # T or K: TID/Y/KEYIDX byte
            pos += 1
    return len(payload) > pos and not payload[pos] & 0x01


@dataclass
class Counters:
    received_packets: int = 0
    forwarded_packets: int = 0
    forwarded_bytes: int = 0  # RTP payload (SFrame ciphertext) bytes, as forwarded
    # dropped before decryption: an SSRC the offer did not announce, or over the packet rate
    foreign_packets: int = 0
    rate_limited_packets: int = 0
    # dropped unread: they waited in a socket too long, behind what the worker could not keep
    # up with (``internals.fastpath.MAX_WAIT_NS``)
    late_packets: int = 0

    def count_late(self, packets: int) -> None:
        self.late_packets += packets


class PublisherClock:
    """One publisher's NTP clock against the relay's, learnt from its first sender report.

    Shared by the publisher's audio and video so the lip-sync mapping (RTP time at an NTP time)
    the relay reports to subscribers is translated with a single offset.
    """

    def __init__(self) -> None:
        self.offset: int | None = None  # relay NTP minus publisher NTP, 32.32 fixed point


class PublishedTrack:
    """One publisher's audio or video, as received by the relay."""

    def __init__(
        self,
        owner: str,
        kind: str,
        transceiver: RTCRtpTransceiver,
        clock: PublisherClock,
        counters: Counters,
        ssrcs: tuple[int, ...],
        uplink: UplinkFeedback,
    ) -> None:
        self.owner = owner
        self.kind = kind
        self.clock_rate = PROFILE[kind].clock_rate
        self.forwards: list[ForwardedTrack] = []
        self._clock = clock
        self._counters = counters
        self._last_report: tuple[int, int] | None = None  # (publisher NTP, RTP) of its last SR
        self._last_keyframe_request = -KEYFRAME_REQUEST_INTERVAL
        self._deferred: asyncio.TimerHandle | None = None  # a key frame asked within the interval
        self.tap = ReceiverTap(
            transceiver.receiver,
            kind,
            self._on_packet,
            self._on_sender_report,
            ssrcs,
            uplink,
            direct=True,
            late=counters.count_late,
        )

    def request_keyframe(self) -> None:
        """Ask the publisher for a key frame, at most once per interval (PLI storms hurt). One
        asked for within the interval is not lost: it goes at the interval's end, unless a key
        frame comes first (a subscriber whose first key frame it could not use, because it
        came under a key it did not have yet, would otherwise wait for its own next ask)."""
        if self.kind != "video" or self.tap.media_ssrc is None:
            return  # nothing received yet: the first frame is a key frame anyway
        now = time.monotonic()
        wait = self._last_keyframe_request + KEYFRAME_REQUEST_INTERVAL - now
        if wait <= 0:
            self._last_keyframe_request = now
            self.tap.send_pli()
        elif self._deferred is None:
            self._deferred = asyncio.get_running_loop().call_later(wait, self._ask_deferred)

    def _ask_deferred(self) -> None:
        self._deferred = None
        self.request_keyframe()

    def rtp_time_at(self, relay_ntp: int, fallback: int) -> int:
        """The publisher's RTP timestamp that corresponds to ``relay_ntp``, for sender reports."""
        if self._last_report is None or self._clock.offset is None:
            return fallback
        sr_ntp, sr_rtp = self._last_report
        publisher_ntp = relay_ntp - self._clock.offset
        return (sr_rtp + ((publisher_ntp - sr_ntp) * self.clock_rate >> 32)) & 0xFFFFFFFF

    def _on_sender_report(self, ssrc: int, ntp: int, rtp: int) -> None:
        if ssrc != self.tap.media_ssrc:
            return
        if self._clock.offset is None:
            self._clock.offset = _relay_ntp() - ntp
        self._last_report = (ntp, rtp)

    def _on_packet(self, packet: RtpPacket) -> None:
        self._counters.received_packets += 1
        if not self.forwards:
            return
        if self._deferred is not None and vp8_starts_key_frame(packet.payload):
            self._deferred.cancel()  # what was asked for came
            self._deferred = None
        # Once per packet, shared by every subscriber: one clock read (so each sender report's
        # NTP and RTP times come from one instant) and what every copy's header has in common.
        now = _relay_ntp()
        report_time = self.rtp_time_at(now, packet.timestamp)
        send_time = (now >> 14 & 0xFFFFFF).to_bytes(3)
        level = packet.extensions.audio_level
        level_byte = None if level is None else (0x80 if level[0] else 0) | (level[1] & 0x7F)
        forwarded = 0
        for forward in self.forwards:
            forwarded += forward.forward(packet, level_byte, send_time, now, report_time)
        self._counters.forwarded_packets += forwarded
        self._counters.forwarded_bytes += forwarded * len(packet.payload)


class ForwardedTrack:
    """One published track on its way to one subscriber."""

    def __init__(self, track: PublishedTrack, subscriber: Peer, line: SendLine) -> None:
        self.track = track
        self.subscriber = subscriber
        self.line = line
        self.transceiver = transceiver = line.transceiver
        self._tap = line.tap
        self._counters = track._counters
        self._sequence_offset = 0
        self._fast: internals.FastForward | None = None  # once started, at a key frame for video
        self._awaiting_keyframe = track.kind == "video"
        # A subscriber's PLI/FIR goes upstream, throttled per publisher track.
        internals.on_keyframe_request(transceiver.sender, track.request_keyframe)
        # The relay only sends on this line: its receiver's bandwidth estimator would be most
        # of the objects each full garbage collection walks (and pauses forwarding for).
        internals.drop_estimator(transceiver.receiver)

    def forward(
        self, packet: RtpPacket, level: int | None, send_time: bytes, now: int, report_time: int
    ) -> bool:
        """Send ``packet`` on to the subscriber (``level``, ``send_time``: as
        ``FastForward.forward`` takes them); whether it went."""
        fast = self._fast
        if fast is not None:
            sequence_number = (packet.sequence_number + self._sequence_offset) & 0xFFFF
            return fast.forward(packet, sequence_number, level, send_time, now, report_time)
        if not (self._tap.is_ready or self._tap.ready()):
            return False  # not negotiated yet
        if self.transceiver.currentDirection != "sendonly":
            return False  # a reused line: the subscriber has not yet answered its new msid
        if self._awaiting_keyframe:
            if self.transceiver.sender.transport.state != "connected":
                return False  # a key frame sent now would be lost; the next is 300 ms away
            if not vp8_starts_key_frame(packet.payload):
                self.track.request_keyframe()
                return False
            self._awaiting_keyframe = False
        # A reused line goes on from its last packet. A new one starts in the lower half, like
        # aiortc, so SRTP's rollover guess stays right. Not a security value: SRTP does not
        # rely on unpredictable sequence numbers.
        start = self.line.next_sequence
        if start is None:
            start = random.randrange(32768)  # noqa: S311
        self._sequence_offset = (start - packet.sequence_number) & 0xFFFF
        fast = self._fast = self._tap.fast
        assert fast is not None  # made when the tap became ready
        sequence_number = (packet.sequence_number + self._sequence_offset) & 0xFFFF
        return fast.forward(packet, sequence_number, level, send_time, now, report_time)

    def answered(self) -> None:
        """The subscriber's answer was applied: a line that waits for a key frame and can
        now receive one asks for it at once, not with the publisher's next packet (a frame
        interval later, at worst). On a transport still connecting, ``forward`` asks later."""
        transceiver = self.transceiver
        if (
            self._awaiting_keyframe
            and transceiver.sender.transport.state == "connected"
            and transceiver.currentDirection == "sendonly"
        ):
            self.track.request_keyframe()

    def end(self) -> None:
        """The track ends at the subscriber: its line goes inactive at the next offer, and
        waits for another track (``lines.SendLines``)."""
        self.subscriber.lines.give_back(self.line)


_NTP_EPOCH_NS: Final = 2_208_988_800 * 1_000_000_000  # 1900 to 1970


def _relay_ntp() -> int:
    """Now as 32.32 NTP, as ``aiortc.clock.current_ntp_time`` but without a datetime."""
    return ((time.time_ns() + _NTP_EPOCH_NS) << 32) // 1_000_000_000
