"""How fast the relay lets a publisher send video: REMB from its own measure of the uplink.

A WebRTC video sender sends no faster than its bandwidth estimate. Chromium starts it at 300
kbit/s; with neither REMB nor transport-wide congestion control feedback from the receiver,
only the loss in receiver reports moves it, by 8 % a second at best (about 950 kbit/s after
15 s), and meanwhile a demanding picture is sent at a lower resolution. aiortc's own receiver
measures the uplink from the abs-send-time header extension (``aiortc.rate``, a port of
libwebrtc's receive-side estimator) and reports it in REMB, but the relay takes packets before
that code runs (``receiving.ReceiverTap``), so the measuring is done here, with that estimator.

The REMB says the relay's ceiling (``MAX_PUBLISH_BITRATE``, the most the relay takes from one
publisher: a budget, not a measurement) until the estimator has seen the uplink congested: a
queue building up (delay growing between packets) makes it cut its estimate to 85 % of what
arrived. From then on the REMB is ``min(ceiling, estimate)``, and the estimator raises it again
as the queue drains (back to the ceiling once the uplink carries well beyond the rate where it
congested). An estimate of an uncongested uplink is only what the publisher chose to send: a
REMB of it would hold a camera that starts at 300 kbit/s near 300 kbit/s, since Chromium,
without transport-wide feedback, climbs by 8 % a second at most under a REMB cap of about 1.5
times its current rate.

The feedback is per publisher, shared by its audio and video (a REMB applies to the whole
connection): the first packet of either sends the ceiling, which Chromium, while it has had no
receiver report for two seconds, takes as its start rate, so a camera starts at the rate its
picture needs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from aiortc.rtp import RtpPacket

from bot.rtc import internals

# The relay's ceiling per publisher, in bit/s: above what VP8 needs for 720p conversation
# video, and what bot.relay.sfu's packet-rate cap is sized for.
MAX_PUBLISH_BITRATE: Final = 2_500_000
# Pacing, after libwebrtc's: a value is repeated every REPEAT_MS (a lost REMB costs no more),
# and sent sooner when it falls below DECREASE_NOW of the last one, but never two within
# MIN_GAP_MS: whatever a publisher's packets say, it gets at most five REMBs a second.
REPEAT_MS: Final = 1000
MIN_GAP_MS: Final = 200
DECREASE_NOW: Final = 0.97


class UplinkFeedback:
    """The REMB one publisher should get, and when to send it."""

    def __init__(self, ceiling: int = MAX_PUBLISH_BITRATE, ssrcs: Iterable[int] = ()) -> None:
        self.ceiling = ceiling
        self.estimate: int | None = None  # the estimator's, once it has one
        self.last_sent: int | None = None  # the value of the last REMB
        self._estimator = internals.lean_estimator()
        self._ssrcs: dict[int, None] = dict.fromkeys(ssrcs)
        self._last_sent_ms = 0  # when the last REMB went; meaningful once ``last_sent`` is set

    @property
    def congested(self) -> bool:
        """Whether the estimate holds the publisher back: the estimator cut it on a growing
        queue and the uplink has not since carried well beyond the rate where that happened
        (aiortc's AIMD rate control, as libwebrtc's, says so with ``near_max``)."""
        return self.estimate is not None and self._estimator.rate_control.near_max

    @property
    def bitrate(self) -> int:
        if not self.congested:
            return self.ceiling
        assert self.estimate is not None  # congested implies it
        return min(self.ceiling, self.estimate)

    @property
    def ssrcs(self) -> list[int]:
        """The SSRCs the REMB is about: the publisher's announced ones, and any measured."""
        return list(self._ssrcs)

    def add(self, packet: RtpPacket, arrival_time_ms: int) -> int | None:
        """Measure an arriving packet (media, retransmission or padding) of the publisher's;
        the bitrate to report now, or None when nothing needs saying yet. Only packets with
        abs-send-time (the publisher's video) are measured; any packet may send a REMB."""
        self._ssrcs.setdefault(packet.ssrc)
        send_time = packet.extensions.abs_send_time
        if send_time is not None:
            found = self._estimator.add(
                arrival_time_ms=arrival_time_ms,
                abs_send_time=send_time,
                payload_size=len(packet.payload) + packet.padding_size,
                ssrc=packet.ssrc,
            )
            if found is not None:
                self.estimate = found[0]
        return self._due(arrival_time_ms)

    def _due(self, now_ms: int) -> int | None:
        # The time check first: it answers for almost every packet, without the bitrate.
        last = self.last_sent
        if last is not None:
            elapsed = now_ms - self._last_sent_ms
            if elapsed < MIN_GAP_MS:
                return None
        value = self.bitrate
        if last is not None and elapsed < REPEAT_MS and value >= DECREASE_NOW * last:
            return None
        self._last_sent_ms = now_ms
        self.last_sent = value
        return value
