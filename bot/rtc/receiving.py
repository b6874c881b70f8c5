"""The relay's receiving side: a publisher's RTP packets as they arrive, never decoded."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Coroutine
from typing import Any

from aiortc import RTCRtpReceiver
from aiortc.codecs import is_rtx
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import RtpPacket, unwrap_rtx

from bot.rtc import internals
from bot.rtc.bandwidth import UplinkFeedback
from bot.rtc.nack import BoundedNackGenerator

log = logging.getLogger(__name__)

PacketHandler = Callable[[RtpPacket], Awaitable[None] | None]
SenderReportHandler = Callable[[int, int, int], None]  # (ssrc, ntp timestamp, rtp timestamp)


class ReceiverTap:
    """Takes over an RTCRtpReceiver's incoming RTP: no depayloading, jitter buffer or decoding.

    What the stock handling does that the relay still needs is kept: per-SSRC statistics (the
    receiver's RTCP task sends receiver reports from them), RTX unwrapping, NACK generation,
    and the bandwidth feedback (REMB, ``bandwidth.UplinkFeedback``) without which a browser's
    camera climbs from its start rate only slowly: ``uplink``, which a publisher's taps share,
    or a video tap's own. Sender reports are passed on to
    ``on_sender_report``. Given ``ssrcs`` (the stream's media and RTX SSRCs), packets with any
    other SSRC are dropped before they get statistics of their own. With ``direct`` (and
    ``ssrcs``), their packets are taken as they are read off the socket
    (``internals.take_srtp``), not from aiortc's receive task; ``on_packet`` is then called
    without being awaited, and REMB and NACK go out in tasks of their own, and ``late`` is
    told of packets dropped for waiting too long in a socket.
    """

    def __init__(
        self,
        receiver: RTCRtpReceiver,
        kind: str,
        on_packet: PacketHandler,
        on_sender_report: SenderReportHandler | None = None,
        ssrcs: Collection[int] | None = None,
        uplink: UplinkFeedback | None = None,
        direct: bool = False,
        late: Callable[[int], None] | None = None,
    ) -> None:
        self.receiver = receiver
        self.media_ssrc: int | None = None
        self._ssrcs = None if ssrcs is None else frozenset(ssrcs)
        self._on_packet = on_packet
        self._is_rtx: dict[int, bool] = {}
        self._nack = BoundedNackGenerator() if kind == "video" else None
        if uplink is None and kind == "video":
            uplink = UplinkFeedback(ssrcs=ssrcs or ())
        self.uplink = uplink
        tables = internals.take_rtp(receiver, self._handle_rtp)
        internals.drop_estimator(receiver)  # aiortc's own; the uplink's measures instead
        if direct and ssrcs is not None:
            # Straight from the socket, in its callback; on_packet must then not await.
            internals.take_srtp(receiver, list(ssrcs), self._handle_now, late or _ignore)
        self._codecs = tables.codecs
        self._rtx_ssrc = tables.rtx_ssrc
        self._streams = tables.streams
        if on_sender_report is not None:
            internals.on_sender_report(receiver, on_sender_report)

    def send_pli(self) -> None:
        """Ask the remote sender for a key frame (RTCP PLI), without waiting."""
        if self.media_ssrc is not None:
            task = asyncio.ensure_future(internals.request_keyframe(self.receiver, self.media_ssrc))
            task.add_done_callback(_log_failure)

    async def _handle_rtp(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        media = self._take(packet, arrival_time_ms)
        if media is not None:
            handled = self._on_packet(media)
            if handled is not None:
                await handled

    def _handle_now(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        media = self._take(packet, arrival_time_ms)
        if media is not None:
            self._on_packet(media)

    def _take(self, packet: RtpPacket, arrival_time_ms: int) -> RtpPacket | None:
        """What aiortc's receiver would do; the media packet to hand on, or None."""
        codec = self._codecs.get(packet.payload_type)
        if codec is None or (self._ssrcs is not None and packet.ssrc not in self._ssrcs):
            return None
        if self.uplink is not None:
            # Every packet counts, padding-only probes and retransmissions too: all of it
            # crossed the publisher's uplink.
            remb = self.uplink.add(packet, arrival_time_ms)
            if remb is not None:
                _spawn(internals.send_remb(self.receiver, remb, self.uplink.ssrcs))
        stream = self._streams.get(packet.ssrc)
        if stream is None:
            stream = self._streams[packet.ssrc] = StreamStatistics(codec.clockRate)
        stream.add(packet)
        rtx = self._is_rtx.get(packet.payload_type)
        if rtx is None:
            # The receiver's codec table is fixed once receive() ran; no need to re-parse the
            # MIME type of every packet.
            rtx = self._is_rtx[packet.payload_type] = is_rtx(codec)
        if rtx:
            original_ssrc = self._rtx_ssrc.get(packet.ssrc)
            apt = codec.parameters.get("apt")
            if original_ssrc is None or len(packet.payload) < 2 or apt not in self._codecs:
                return None
            packet = unwrap_rtx(packet, payload_type=apt, ssrc=original_ssrc)
        if not packet.payload:  # padding-only bandwidth probe
            return None
        self.media_ssrc = packet.ssrc
        if self._nack is not None and self._nack.add(packet.sequence_number):
            missing = sorted(self._nack.missing)
            _spawn(internals.request_retransmission(self.receiver, packet.ssrc, missing))
        return packet


def _spawn(work: Coroutine[Any, Any, None]) -> None:
    task = asyncio.ensure_future(work)
    task.add_done_callback(_log_failure)


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.debug("RTCP send failed: %s", task.exception())


def _ignore(packets: int) -> None:
    pass
