"""Every use of aiortc's and aioice's private internals in Conclave, in one place.

aiortc has no public API for what an SFU and an end-to-end-encrypting client need: taking RTP
packets before the jitter buffer (and sending their REMB), sending RTP that was not produced by
its own packetizer, transforming encoded frames before the decoder, learning about key-frame
requests when the track yields packets, choosing the ICE host addresses, or bounding what a
hostile peer can make the relay keep and do. Each hook below reaches into one or two private
attributes of the pinned aiortc and aioice releases (``AIORTC_VERSION``); what is decided with
them is plain Python elsewhere in ``bot.rtc``. ``tests/rtc/test_internals.py`` has one test per
hook that fails, naming the attribute, when an upgrade moves it; ``check_internals()`` runs
the same checks at worker start-up, so a mismatched install fails with a sentence, not mid-call.

Name-mangled attributes (``__x`` inside ``RTCRtpSender``) are spelt out in full
(``_RTCRtpSender__x``): that is what they are called on the instance. The ICE hooks (host
addresses and ports) are in ``ice``, the relay's per-packet path in ``fastpath``, the
inbound guard's in ``guard`` and a leaner bandwidth estimator in ``estimator``; the rest is
here.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import aiortc
from aiortc import RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver, rtp
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import RTCP_RTPFB_NACK, RtcpRtpfbPacket, RtcpSrPacket, RtpPacket

from bot.errors import ConclaveError
from bot.rtc.internals import estimator, fastpath, ice
from bot.rtc.internals.estimator import lean_estimator as lean_estimator
from bot.rtc.internals.fastpath import FastForward as FastForward
from bot.rtc.internals.fastpath import prime_history as prime_history
from bot.rtc.internals.fastpath import take_srtp as take_srtp
from bot.rtc.internals.guard import drop_empty_datagrams as drop_empty_datagrams
from bot.rtc.internals.guard import guard_inbound as guard_inbound
from bot.rtc.internals.ice import PortsExhausted as PortsExhausted
from bot.rtc.internals.ice import bind_ports as bind_ports
from bot.rtc.internals.ice import restrict_host_addresses as restrict_host_addresses

AIORTC_VERSION: Final = "1.16.0"

# Attributes each hook relies on, checked on fresh instances by check_internals().
_SENDER_ATTRS: Final = (
    "_ssrc",
    "_handle_rtcp_packet",
    "_stream_id",
    "_send_keyframe",
    "_RTCRtpSender__started",
    "_RTCRtpSender__mid",
    "_RTCRtpSender__rtp_header_extensions_map",
    "_RTCRtpSender__rtp_history",
    "_RTCRtpSender__packet_count",
    "_RTCRtpSender__octet_count",
    "_RTCRtpSender__ntp_timestamp",
    "_RTCRtpSender__rtp_timestamp",
)
_RECEIVER_ATTRS: Final = (
    "_enabled",
    "_handle_rtp_packet",
    "_handle_rtcp_packet",
    "_send_rtcp",
    "_send_rtcp_pli",
    "_send_rtcp_nack",
    "_RTCRtpReceiver__rtcp_ssrc",
    "_RTCRtpReceiver__codecs",
    "_RTCRtpReceiver__rtx_ssrc",
    "_RTCRtpReceiver__remote_streams",
    "_RTCRtpReceiver__decoder_queue",
    "_RTCRtpReceiver__decoder_error",
    "_RTCRtpReceiver__remote_bitrate_estimator",
)
_DTLS_TRANSPORT_ATTRS: Final = (
    "_send_rtp",
    "_setup_srtp",
    "_rx_srtp",
    "_rtp_header_extensions_map",
)


class AiortcMismatch(ConclaveError):
    code = "aiortc_mismatch"

    def __init__(self, missing: Sequence[str]) -> None:
        super().__init__(
            f"The installed aiortc {aiortc.__version__} lacks internals the relay needs "
            f"({', '.join(missing)}); install aiortc=={AIORTC_VERSION}."
        )
        self.missing = tuple(missing)


# --- codecs ---------------------------------------------------------------------------------


def _primary_codec(transceiver: RTCRtpTransceiver) -> Any | None:
    """The primary codec the last setRemoteDescription settled on (an RTCRtpCodecParameters)."""
    codecs = _private(transceiver)._codecs
    return codecs[0] if codecs else None


def negotiated_mime_type(transceiver: RTCRtpTransceiver) -> str | None:
    """The primary codec the last setRemoteDescription settled on, e.g. ``video/VP8``."""
    codec = _primary_codec(transceiver)
    return None if codec is None else str(codec.mimeType)


# --- sender hooks ---------------------------------------------------------------------------


def on_keyframe_request(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """Call ``callback`` when the remote side sends a PLI or FIR for this sender's stream.

    ``RTCRtpSender._handle_rtcp_packet`` calls ``self._send_keyframe()``; the stock method only
    flags aiortc's own encoder, which a packet-yielding track (or the relay) does not use.
    """
    _private(sender)._send_keyframe = callback


def set_stream_id(sender: RTCRtpSender, stream_id: str) -> None:
    """Set the msid stream id (``a=msid:<stream_id> <track id>``) the next offer carries."""
    _private(sender)._stream_id = stream_id


def sender_started(sender: RTCRtpSender) -> bool:
    """Whether ``send()`` ran, i.e. the SSRC, mid and header extensions are negotiated."""
    return bool(_private(sender)._RTCRtpSender__started)


@dataclass(frozen=True)
class StartedSender:
    """What a sender negotiated, read once ``send()`` ran; aiortc goes on using these objects."""

    ssrc: int
    payload_type: int  # the primary codec's
    mid: str | None
    extensions: Any  # the HeaderExtensionsMap its packets are serialized with
    history: dict[int, RtpPacket]  # its own: its NACK handler retransmits what is put here


def started_sender(transceiver: RTCRtpTransceiver) -> StartedSender | None:
    """What ``transceiver``'s sender negotiated, or None until it was started."""
    sender = _private(transceiver.sender)
    if not sender_started(sender):
        return None
    codec = _primary_codec(transceiver)
    assert codec is not None  # send() runs only after a codec was negotiated
    return StartedSender(
        sender._ssrc,
        int(codec.payloadType),
        sender._RTCRtpSender__mid,
        sender._RTCRtpSender__rtp_header_extensions_map,
        sender._RTCRtpSender__rtp_history,
    )


async def send_as(sender: RTCRtpSender, data: bytes, ntp: int, rtp: int, octets: int) -> bool:
    """Send serialized RTP through the sender's DTLS transport (``_send_rtp``) and count it.

    The sender's packet and octet counters advance, and (``ntp``, ``rtp``) becomes the time
    mapping of its next sender report, so the reports stay truthful. False when the transport
    is not (or no longer) connected.
    """
    s = _private(sender)
    try:
        await s.transport._send_rtp(data)
    except ConnectionError:
        return False
    s._RTCRtpSender__ntp_timestamp = ntp
    s._RTCRtpSender__rtp_timestamp = rtp
    s._RTCRtpSender__packet_count += 1
    s._RTCRtpSender__octet_count += octets
    return True


def ration_nacks(sender: RTCRtpSender, grant: Callable[[list[int]], list[int]]) -> None:
    """Pass the sequence numbers each NACK for this sender asks for through ``grant`` first.

    ``RTCRtpSender._handle_rtcp_packet``, looked up on the instance, retransmits every number a
    NACK lists from the sender's history.
    """
    s = _private(sender)
    stock = s._handle_rtcp_packet

    async def handle(packet: Any) -> None:
        if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            packet.lost = grant(packet.lost)
        await stock(packet)

    s._handle_rtcp_packet = handle


# --- receiver hooks -------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceiverTables:
    """The receiver's own tables, which its RTCP task goes on reading."""

    codecs: dict[int, Any]  # payload type -> RTCRtpCodecParameters, fixed once receive() ran
    rtx_ssrc: dict[int, int]  # RTX SSRC -> the media SSRC it retransmits
    streams: dict[int, StreamStatistics]  # per SSRC: what its receiver reports say


def take_rtp(
    receiver: RTCRtpReceiver, handler: Callable[[RtpPacket, int], Awaitable[None]]
) -> ReceiverTables:
    """Hand each RTP packet and its arrival time (ms) to ``handler`` instead of the transport's
    ``receiver._handle_rtp_packet`` (looked up on the instance): no estimator, depayloader, jitter
    buffer or decoder. The handler takes on the stock work with the tables, and REMB
    (``send_remb``). Packets arriving once the receiver stopped (``_enabled``) are ignored."""
    r = _private(receiver)

    # A plain function handing back the handler's awaitable: no coroutine of its own per packet.
    def handle(packet: RtpPacket, arrival_time_ms: int) -> Awaitable[None]:
        return handler(packet, arrival_time_ms) if r._enabled else _ignored()

    r._handle_rtp_packet = handle
    return ReceiverTables(
        r._RTCRtpReceiver__codecs, r._RTCRtpReceiver__rtx_ssrc, r._RTCRtpReceiver__remote_streams
    )


def drop_estimator(receiver: RTCRtpReceiver) -> None:
    """Free the bandwidth estimator of a receiver whose RTP aiortc does not handle (``take_rtp``)
    or that receives none (a send-only line): aiortc gives every video receiver one
    (``__remote_bitrate_estimator``, checked for None before use, as audio's is None), with a
    1,000-bucket rate counter: 1,000 objects that each full garbage collection walks, most of
    what a relay's connection holds."""
    _private(receiver)._RTCRtpReceiver__remote_bitrate_estimator = None


def on_sender_report(receiver: RTCRtpReceiver, callback: Callable[[int, int, int], None]) -> None:
    """Pass each RTCP sender report on as (SSRC, NTP time, RTP time), once the stock
    ``_handle_rtcp_packet`` has noted it (for the LSR and DLSR of receiver reports)."""
    r = _private(receiver)
    stock = r._handle_rtcp_packet

    async def handle(packet: Any) -> None:
        await stock(packet)
        if isinstance(packet, RtcpSrPacket):
            info = packet.sender_info
            callback(packet.ssrc, info.ntp_timestamp, info.rtp_timestamp)

    r._handle_rtcp_packet = handle


async def request_keyframe(receiver: RTCRtpReceiver, media_ssrc: int) -> None:
    """Send an RTCP PLI for ``media_ssrc`` through this receiver (``_send_rtcp_pli``)."""
    await _private(receiver)._send_rtcp_pli(media_ssrc)


async def send_remb(receiver: RTCRtpReceiver, bitrate: int, ssrcs: list[int]) -> None:
    """Send an RTCP REMB from the receiver's RTCP SSRC (``__rtcp_ssrc``, ``_send_rtcp``)."""
    r = _private(receiver)
    if (ssrc := r._RTCRtpReceiver__rtcp_ssrc) is not None:
        fci = rtp.pack_remb_fci(bitrate, ssrcs)
        await r._send_rtcp(rtp.RtcpPsfbPacket(rtp.RTCP_PSFB_APP, ssrc, media_ssrc=0, fci=fci))


async def request_retransmission(
    receiver: RTCRtpReceiver, media_ssrc: int, lost: list[int]
) -> None:
    """Send an RTCP NACK for ``lost`` packets of ``media_ssrc`` (``_send_rtcp_nack``)."""
    await _private(receiver)._send_rtcp_nack(media_ssrc, lost)


def forget_partial_frames(receiver: RTCRtpReceiver) -> None:
    """Empty the receiver's jitter buffer (``__jitter_buffer``, made anew alike): a line the
    relay reuses for another track (``bot.relay.lines``) may hold the end of the last one, a
    frame whose last packets never came, which aiortc would hand on as the next track's first
    packet arrives, to be refused as someone else's."""
    r = _private(receiver)
    old = getattr(r, "_RTCRtpReceiver__jitter_buffer", None)
    if old is not None:  # made when the receiver starts
        r._RTCRtpReceiver__jitter_buffer = JitterBuffer(old.capacity, old._prefetch, old._is_video)


def install_receive_transform(
    receiver: RTCRtpReceiver,
    kind: str,
    transform: Callable[[bytes], bytes | None],  # encoded frame in, plaintext out, None: drop
    on_drop: Callable[[], None] | None = None,
) -> None:
    """Transform (decrypt) each encoded frame between the jitter buffer and the decoder.

    The receiver queues ``(codec, JitterFrame)`` on a ``queue.Queue`` that its decoder thread
    reads with ``get()``; replacing ``get`` on that instance runs ``transform`` in the decoder
    thread, off the event loop. A frame the transform rejects (``None``) is dropped and counted
    through ``on_drop`` (also in the decoder thread); for video the receiver's decode-error flag
    is set, which makes it send a PLI with the next packet so the picture recovers. The ``None``
    shutdown sentinel passes through. Install it from ``pc.on("track")``, which fires before
    the receiver starts its decoder thread.
    """
    frames = _private(receiver)._RTCRtpReceiver__decoder_queue
    decode_error: threading.Event = _private(receiver)._RTCRtpReceiver__decoder_error
    stock_get = frames.get

    def get(*args: Any, **kwargs: Any) -> Any:
        while True:
            item = stock_get(*args, **kwargs)
            if item is None:
                return None
            codec, frame = item
            plain = transform(bytes(frame.data))
            if plain is not None:
                frame.data = plain
                return codec, frame
            if on_drop is not None:
                on_drop()
            if kind == "video":
                decode_error.set()

    frames.get = get


# --- start-up check -------------------------------------------------------------------------


def check_internals() -> None:
    """Raise AiortcMismatch, naming what is missing, unless the pinned internals are there."""
    from aiortc import RTCCertificate, RTCDtlsTransport, RTCIceGatherer, RTCIceTransport

    missing: list[str] = []
    if aiortc.__version__ != AIORTC_VERSION:
        missing.append(f"version {AIORTC_VERSION}")
    missing += ice.missing() + estimator.missing()
    # A sender and receiver on an unstarted transport, to look at their attributes.
    transport = RTCDtlsTransport(
        RTCIceTransport(RTCIceGatherer()), [RTCCertificate.generateCertificate()]
    )
    sender: Any = RTCRtpSender("video", transport)
    receiver: Any = RTCRtpReceiver("video", transport)
    for owner, obj, names in (
        ("RTCRtpSender", sender, _SENDER_ATTRS),
        ("RTCRtpReceiver", receiver, _RECEIVER_ATTRS),
        ("RTCDtlsTransport", sender.transport, _DTLS_TRANSPORT_ATTRS),
    ):
        missing += [f"{owner}.{name}" for name in names if not hasattr(obj, name)]
    if not hasattr(getattr(receiver, "_RTCRtpReceiver__decoder_queue", None), "get"):
        missing.append("RTCRtpReceiver.__decoder_queue.get")
    connection = getattr(sender.transport.transport, "_connection", None)
    for name in ("check_incoming", "data_received"):
        if not callable(getattr(connection, name, None)):
            missing.append(f"RTCIceTransport._connection.{name}")
    if not isinstance(getattr(connection, "_remote_candidates", None), list):
        missing.append("aioice Connection._remote_candidates")
    missing += fastpath.missing(sender, connection)
    buffer = JitterBuffer(capacity=16)
    missing += [f"JitterBuffer.{n}" for n in ("_prefetch", "_is_video") if not hasattr(buffer, n)]
    if not hasattr(RTCRtpTransceiver, "setCodecPreferences"):
        missing.append("RTCRtpTransceiver.setCodecPreferences")
    if not hasattr(RTCRtpTransceiver("audio", receiver, sender), "_codecs"):
        missing.append("RTCRtpTransceiver._codecs")
    if missing:
        raise AiortcMismatch(missing)


async def _ignored() -> None:
    """What a stopped receiver does with a packet."""


def _private(obj: object) -> Any:
    """``obj`` as Any: aiortc's type hints (rightly) do not declare its private attributes."""
    return obj
