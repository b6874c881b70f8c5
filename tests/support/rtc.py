"""aiortc helpers only tests use: a track fed with encoded frames, and looks at private state.

They reach into aiortc and libsrtp the way ``bot.rtc.internals`` does, for tests alone;
``tests/rtc/test_internals.py`` names each attribute when an upgrade moves it.
"""

from __future__ import annotations

import asyncio
import ctypes
import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import av
from aiortc import RTCPeerConnection, RTCRtpReceiver
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import RtpPacket

from bot.rtc.inbound import InboundGuard
from bot.rtc.profile import PROFILE
from bot.rtc.sending import Packet


class EncodedTrack(MediaStreamTrack):
    """A sending track fed with already-encoded (and encrypted) frames.

    ``RTCRtpSender`` packs an ``av.Packet`` from ``recv`` with the codec's packetizer
    (``Encoder.pack``) instead of encoding it, so the frame bytes reach the wire unchanged.
    ``push(data, pts)`` takes ``pts`` in RTP clock units (90 kHz video, 48 kHz audio); the caller
    paces the frames, the sender sends each as soon as it is pushed. A full queue drops the
    oldest frame: late media is worthless and memory must stay bounded.
    """

    def __init__(self, kind: str, track_id: str | None = None, max_queue: int = 64) -> None:
        super().__init__()
        self.kind = kind
        if track_id is not None:
            self._id = track_id
        self._queue: asyncio.Queue[Packet | None] = asyncio.Queue(max_queue)
        self._time_base = PROFILE[kind].time_base

    def push(self, data: bytes, pts: int) -> None:
        packet = av.Packet(data)
        packet.pts = pts
        packet.time_base = self._time_base
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(packet)

    def stop(self) -> None:
        super().stop()
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(None)

    async def recv(self) -> Packet:
        packet = await self._queue.get()
        if packet is None:
            raise MediaStreamError
        return packet


def tap_receiver_rtp(receiver: RTCRtpReceiver, observer: Callable[[RtpPacket], None]) -> None:
    """Show ``observer`` every RTP packet before the receiver's stock handling (diagnostics)."""
    r: Any = receiver
    stock = r._handle_rtp_packet

    async def handle(packet: RtpPacket, arrival_time_ms: int) -> None:
        observer(packet)
        await stock(packet, arrival_time_ms)

    r._handle_rtp_packet = handle


@dataclass(frozen=True)
class SsrcState:
    """What a peer connection holds per inbound SSRC, to show it stays bounded."""

    routed: frozenset[int]  # RTCDtlsTransport._rtp_router.ssrc_table
    counted: frozenset[int]  # RTCRtpReceiver.__remote_streams (receiver-report statistics)
    srtp: frozenset[int]  # the SSRCs asked about that have an inbound libsrtp stream


def ssrc_state(pc: RTCPeerConnection, asked: Iterable[int]) -> SsrcState:
    """The SSRCs ``pc`` routes and keeps statistics for, and which of ``asked`` libsrtp knows.

    libsrtp cannot list its streams; ``srtp_get_stream_roc`` (exported by the libsrtp that
    pylibsrtp links in, not wrapped by it) fails for an SSRC it has none for.
    """
    routed: set[int] = set()
    counted: set[int] = set()
    srtp: set[int] = set()
    probe = _stream_probe()
    asked = list(asked)
    for transceiver in pc.getTransceivers():
        transport: Any = transceiver.receiver.transport
        routed.update(transport._rtp_router.ssrc_table)
        receiver: Any = transceiver.receiver
        counted.update(receiver._RTCRtpReceiver__remote_streams)
        session = transport._rx_srtp
        if isinstance(session, InboundGuard):
            session = session.session
        if session is not None:
            pointer = int(_srtp_ffi().cast("uintptr_t", session._srtp[0]))
            roc = ctypes.c_uint32()
            srtp.update(s for s in asked if probe(pointer, s, ctypes.byref(roc)) == 0)
    return SsrcState(frozenset(routed), frozenset(counted), frozenset(srtp))


def _srtp_ffi() -> Any:
    return importlib.import_module("pylibsrtp._binding").ffi


def _stream_probe() -> Any:
    library = ctypes.CDLL(importlib.import_module("pylibsrtp._binding").__file__)
    probe = library.srtp_get_stream_roc
    probe.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint32)]
    probe.restype = ctypes.c_int
    return probe
