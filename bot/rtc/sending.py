"""The relay's sending side: RTP it did not packetize, sent as a subscriber's own stream."""

from __future__ import annotations

import asyncio
from typing import TypeAlias

import av
import av.stream
from aiortc import RTCRtpTransceiver
from aiortc import clock as aiortc_clock
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import RTP_HISTORY_SIZE, HeaderExtensionsMap, RtpPacket

from bot.rtc import internals
from bot.rtc.rationing import RetransmissionCredit

# What a packet-yielding track hands the sender (the stream is unused on this path).
Packet: TypeAlias = "av.Packet[av.stream.Stream]"


def _differing(a: bytes, b: bytes) -> tuple[int, int]:
    """Where two equally long serializations differ: (first, past the last); (0, 0) if not."""
    diff = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
    return (diff[0], diff[-1] + 1) if diff else (0, 0)


class SilentTrack(MediaStreamTrack):
    """A track that never yields, so an RTCRtpSender is set up but sends nothing by itself.

    The relay writes RTP into the sender's transport directly (``SenderTap``). A sender
    without a track would poll every 20 ms; this one blocks in ``recv`` until the sender stops.
    Its id becomes the msid track id the subscriber sees.
    """

    def __init__(self, kind: str, track_id: str) -> None:
        super().__init__()
        self.kind = kind
        self._track_id = track_id
        self._never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def id(self) -> str:
        return self._track_id

    async def recv(self) -> Packet:
        await self._never
        raise MediaStreamError


class SenderTap:
    """Writes RTP packets produced elsewhere through an RTCRtpSender's transport.

    The packet gets the sender's SSRC, negotiated payload type and mid, is kept in the sender's
    history (so its NACK handler can retransmit it, over RTX when negotiated) and the sender's
    counters are advanced, so the RTCP sender reports it sends stay truthful. What NACKs make
    it retransmit is rationed (``rationing.RetransmissionCredit``); ``refused_retransmissions``
    counts the sequence numbers asked for beyond that.

    Once ready, ``fast`` sends without aiortc's sender (``internals.FastForward``: a header
    template, SRTP in place, one ``sendto``); what a NACK asks for of its packets is put in the
    sender's history first, so the same handler resends it.
    """

    def __init__(self, transceiver: RTCRtpTransceiver) -> None:
        self.transceiver = transceiver
        self.sender = transceiver.sender
        self.is_ready = False  # a plain attribute, so the per-packet check costs no call
        self._credit = RetransmissionCredit(RTP_HISTORY_SIZE)
        self._earned = 0  # fast packets the credit has counted
        internals.ration_nacks(self.sender, self._grant)
        self._ssrc = 0
        self._payload_type = 0
        self._mid: str | None = None
        self._extensions = HeaderExtensionsMap()
        self._history: dict[int, RtpPacket] = {}
        self.fast: internals.FastForward | None = None

    @property
    def refused_retransmissions(self) -> int:
        return self._credit.refused

    def ready(self) -> bool:
        if not self.is_ready:
            started = internals.started_sender(self.transceiver)
            if started is not None:
                self._ssrc = started.ssrc
                self._payload_type = started.payload_type
                self._mid = started.mid
                self._extensions = started.extensions
                self._history = started.history
                self.fast = self._fast_forward()
                self.is_ready = True
        return self.is_ready

    def _fast_forward(self) -> internals.FastForward:
        """The fast path's header template: empty packets serialized with different
        abs-send-time and audio level values; the bytes that differ are where each packet's
        go, the rest of the header never changes (SSRC, mid and the extension ids)."""
        audio = self.transceiver.kind == "audio"

        def header(send_time: int, level: tuple[bool, int] | None) -> bytes:
            p = RtpPacket(payload_type=self._payload_type, ssrc=self._ssrc)
            p.extensions.mid = self._mid
            p.extensions.abs_send_time = send_time
            p.extensions.audio_level = level if audio else None
            return p.serialize(self._extensions)

        base = header(0, (False, 0))
        abs_at = _differing(base, header(0xFFFFFF, (False, 0)))
        level_at = _differing(base, header(0, (True, 127)))
        return internals.FastForward(
            self.sender,
            base,
            header(0, None),
            abs_at if abs_at[1] - abs_at[0] == 3 else (0, 0),
            level_at[0] if level_at[1] - level_at[0] == 1 else 0,
            self._payload_type,
            RTP_HISTORY_SIZE,
        )

    def _grant(self, asked: list[int]) -> list[int]:
        """Ration a NACK; what the fast path sent of it goes in aiortc's history to resend."""
        fast = self.fast
        if fast is not None:
            self._credit.earn(fast.packets - self._earned)
            self._earned = fast.packets
        granted = self._credit.grant(asked)
        if fast is not None:
            now = aiortc_clock.current_ntp_time()
            found = []
            for seq in granted:
                kept = fast.source(seq)
                if kept is not None:
                    source, level = kept
                    audio_level = None if level is None else (bool(level & 0x80), level & 0x7F)
                    found.append(self._packet(source, seq, now, audio_level))
            internals.prime_history(self.sender, found)
        return granted

    def _packet(
        self,
        source: RtpPacket,
        sequence_number: int,
        now: int,
        audio_level: tuple[bool, int] | None,
    ) -> RtpPacket:
        """``source`` as this sender's packet ``sequence_number``, sent at ``now`` (NTP)."""
        out = RtpPacket(
            payload_type=self._payload_type,
            marker=source.marker,
            sequence_number=sequence_number,
            timestamp=source.timestamp,
            ssrc=self._ssrc,
            payload=source.payload,
        )
        out.extensions.mid = self._mid
        out.extensions.abs_send_time = (now >> 14) & 0x00FFFFFF
        out.extensions.audio_level = audio_level
        return out

    async def send(
        self,
        source: RtpPacket,
        sequence_number: int,
        report_rtp_timestamp: int,
        now: int | None = None,
    ) -> bool:
        """Send ``source``'s payload, marker and timestamp as this sender's packet.

        ``report_rtp_timestamp`` is the RTP time that corresponds to ``now`` (NTP; read from
        the clock when not given), for the next SR. Returns False when the transport is not (or
        no longer) connected.
        """
        if now is None:
            now = aiortc_clock.current_ntp_time()
        out = self._packet(source, sequence_number, now, source.extensions.audio_level)
        self._history[sequence_number % RTP_HISTORY_SIZE] = out
        data = out.serialize(self._extensions)
        if not await internals.send_as(
            self.sender, data, now, report_rtp_timestamp, len(source.payload)
        ):
            return False
        self._credit.earn()
        return True
