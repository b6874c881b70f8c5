"""Every use of aiortc's and aioice's private internals in Conclave, in one place.

aiortc has no public API for what an SFU and an end-to-end-encrypting client need: taking RTP
packets before the jitter buffer, sending RTP that was not produced by its own packetizer,
transforming encoded frames before the decoder, learning about key-frame requests when the
track yields packets, choosing the ICE host addresses, or bounding what a hostile peer can make
the relay keep and do (the SSRCs that reach libsrtp, the packet rate, the ICE candidates it
learns, the retransmissions a NACK asks for). Each hook below reaches into one or two private
attributes of the pinned aiortc and aioice releases (``AIORTC_VERSION``), and
``tests/relay/test_aiortc_internals.py`` has one test per hook that fails, naming the
attribute, when an upgrade moves it. ``check_internals()`` runs the same attribute checks at
worker start-up, so a mismatched install fails with a sentence instead of a stack trace mid-call.

Name-mangled attributes (``__x`` inside ``RTCRtpSender``) are spelt out in full
(``_RTCRtpSender__x``): that is what they are called on the instance.
"""

from __future__ import annotations

import asyncio
import ctypes
import fractions
import importlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

import aioice.ice
import aiortc
import av
import av.stream
import pylibsrtp
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
)
from aiortc import clock as aiortc_clock
from aiortc.codecs import is_rtx
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcconfiguration import RTCBundlePolicy
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import (
    RTCP_RTPFB_NACK,
    RTP_HISTORY_SIZE,
    RtcpRtpfbPacket,
    RtcpSrPacket,
    RtpPacket,
    unwrap_rtx,
)
from aiortc.utils import uint16_add, uint16_gt

from bot.errors import ConclaveError
from bot.secret import Secret

log = logging.getLogger(__name__)

AIORTC_VERSION: Final = "1.16.0"
VIDEO_CLOCK_RATE: Final = 90_000
AUDIO_CLOCK_RATE: Final = 48_000
VIDEO_TIME_BASE: Final = fractions.Fraction(1, VIDEO_CLOCK_RATE)
AUDIO_TIME_BASE: Final = fractions.Fraction(1, AUDIO_CLOCK_RATE)
# Conclave's media profile: VP8 (H.264 packetization splits on start codes, which ciphertext
# contains) and Opus. RTX rides along so lost video packets can be retransmitted.
# What a packet-yielding track hands the sender (the stream is unused on this path).
Packet: TypeAlias = "av.Packet[av.stream.Stream]"
PREFERRED_CODEC: Final = {"video": "video/VP8", "audio": "audio/opus"}

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
    "_send_rtcp_pli",
    "_send_rtcp_nack",
    "_RTCRtpReceiver__codecs",
    "_RTCRtpReceiver__rtx_ssrc",
    "_RTCRtpReceiver__remote_streams",
    "_RTCRtpReceiver__decoder_queue",
    "_RTCRtpReceiver__decoder_error",
)


class AiortcMismatch(ConclaveError):
    code = "aiortc_mismatch"

    def __init__(self, missing: Sequence[str]) -> None:
        super().__init__(
            f"The installed aiortc {aiortc.__version__} lacks internals the relay needs "
            f"({', '.join(missing)}); install aiortc=={AIORTC_VERSION}."
        )
        self.missing = tuple(missing)


# --- peer connections and ICE ---------------------------------------------------------------


def make_peer_connection(
    ice_servers: Sequence[str] = (),
    username: str = "",
    credential: Secret = Secret(""),
) -> RTCPeerConnection:
    """An RTCPeerConnection with only the configured ICE servers and MAX_BUNDLE.

    aiortc's default configuration (``iceServers=None``) contacts a public STUN server, which
    would tell a third party who is meeting; Conclave never uses it. (Public API; it lives here
    because every peer connection must be made this way.)
    """
    servers = [
        RTCIceServer(
            urls=url,
            username=username or None,
            credential=credential.reveal() or None,
        )
        for url in ice_servers
    ]
    return RTCPeerConnection(
        RTCConfiguration(iceServers=servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
    )


_original_get_host_addresses: Final = aioice.ice.get_host_addresses


def restrict_host_addresses(addresses: Sequence[str]) -> None:
    """Offer exactly these addresses as ICE host candidates (empty: aioice's own choice).

    aioice gathers host candidates from every interface except loopback, and has no setting
    for it; ``Connection.gather_candidates`` looks up the module global
    ``aioice.ice.get_host_addresses`` on each call, so replacing it is process-wide. Tests and
    benches use ``["127.0.0.1"]`` so media never leaves the machine.
    """
    chosen = tuple(addresses)
    if not chosen:
        aioice.ice.get_host_addresses = _original_get_host_addresses
        return

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = get_host_addresses


def prefer_codec(transceiver: RTCRtpTransceiver) -> None:
    """Negotiate only Conclave's codec for this kind (plus RTX). Public API."""
    wanted = PREFERRED_CODEC[transceiver.kind]
    caps = RTCRtpSender.getCapabilities(transceiver.kind)
    transceiver.setCodecPreferences(
        [c for c in caps.codecs if c.mimeType == wanted or c.mimeType.endswith("/rtx")]
    )


def _primary_codec(transceiver: RTCRtpTransceiver) -> Any | None:
    """The primary codec the last setRemoteDescription settled on (an RTCRtpCodecParameters)."""
    codecs = _private(transceiver)._codecs
    return codecs[0] if codecs else None


def negotiated_mime_type(transceiver: RTCRtpTransceiver) -> str | None:
    """The primary codec the last setRemoteDescription settled on, e.g. ``video/VP8``."""
    codec = _primary_codec(transceiver)
    return None if codec is None else str(codec.mimeType)


# --- tracks ---------------------------------------------------------------------------------


class SilentTrack(MediaStreamTrack):
    """A track that never yields, so an RTCRtpSender is set up but sends nothing by itself.

    The relay writes RTP into the sender's transport directly. A sender without a track would
    poll every 20 ms; this one blocks in ``recv`` until the sender stops. Its id becomes the
    msid track id the subscriber sees.
    """

    def __init__(self, kind: str, track_id: str) -> None:
        super().__init__()
        self.kind = kind
        self._id = track_id
        self._never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def recv(self) -> Packet:
        await self._never
        raise MediaStreamError


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
        self._time_base = VIDEO_TIME_BASE if kind == "video" else AUDIO_TIME_BASE

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


class SenderTap:
    """Writes RTP packets produced elsewhere through an RTCRtpSender's transport.

    The packet gets the sender's SSRC, negotiated payload type and mid, is kept in the sender's
    history (so its NACK handler can retransmit it, over RTX when negotiated) and the sender's
    counters are advanced, so the RTCP sender reports it sends stay truthful.

    Retransmissions are rationed: the stock NACK handler resends every sequence number a NACK
    lists, duplicates included, so one small RTCP packet could cost thousands of sends. Here a
    NACK's numbers are deduplicated and each resend spends a credit; a packet sent earns one,
    up to ``RTP_HISTORY_SIZE``, so retransmissions never outnumber the packets sent plus one
    history's worth. ``refused_retransmissions`` counts the numbers asked for beyond that.
    """

    def __init__(self, transceiver: RTCRtpTransceiver) -> None:
        self.transceiver = transceiver
        self.sender: Any = _private(transceiver.sender)
        self.is_ready = False  # a plain attribute, so the per-packet check costs no call
        self.refused_retransmissions = 0
        self._credit = RTP_HISTORY_SIZE
        self._stock_rtcp = self.sender._handle_rtcp_packet
        self.sender._handle_rtcp_packet = self._handle_rtcp
        self._ssrc = 0
        self._payload_type = 0
        self._mid: str | None = None
        self._extensions: Any = None
        self._history: dict[int, RtpPacket] = {}

    def ready(self) -> bool:
        if not self.is_ready and sender_started(self.sender):
            s = self.sender
            codec = _primary_codec(self.transceiver)
            assert codec is not None  # send() runs only after a codec was negotiated
            self._payload_type = int(codec.payloadType)
            self._ssrc = s._ssrc
            self._mid = s._RTCRtpSender__mid
            self._extensions = s._RTCRtpSender__rtp_header_extensions_map
            self._history = s._RTCRtpSender__rtp_history
            self.is_ready = True
        return self.is_ready

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
        out.extensions.audio_level = source.extensions.audio_level
        self._history[sequence_number % RTP_HISTORY_SIZE] = out
        try:
            await self.sender.transport._send_rtp(out.serialize(self._extensions))
        except ConnectionError:
            return False
        s = self.sender
        s._RTCRtpSender__ntp_timestamp = now
        s._RTCRtpSender__rtp_timestamp = report_rtp_timestamp
        s._RTCRtpSender__packet_count += 1
        s._RTCRtpSender__octet_count += len(source.payload)
        if self._credit < RTP_HISTORY_SIZE:
            self._credit += 1
        return True

    async def _handle_rtcp(self, packet: Any) -> None:
        if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            wanted = list(dict.fromkeys(packet.lost))
            packet.lost = wanted[: self._credit]
            self._credit -= len(packet.lost)
            self.refused_retransmissions += len(wanted) - len(packet.lost)
        await self._stock_rtcp(packet)


# --- receiver hooks -------------------------------------------------------------------------

PacketHandler = Callable[[RtpPacket], Awaitable[None]]
SenderReportHandler = Callable[[int, int, int], None]  # (ssrc, ntp timestamp, rtp timestamp)


class ReceiverTap:
    """Takes over an RTCRtpReceiver's incoming RTP: no depayloading, jitter buffer or decoding.

    The transport awaits ``receiver._handle_rtp_packet(packet, arrival_time_ms)``, looked up on
    the instance, so an instance attribute replaces it. What the stock method does that the
    relay still needs is kept: per-SSRC statistics (its RTCP task sends receiver reports from
    them), RTX unwrapping and NACK generation. Sender reports are passed on after the stock
    handler has noted them (it computes LSR/DLSR for the receiver reports). Given ``ssrcs``
    (the stream's media and RTX SSRCs), packets with any other SSRC are dropped before they
    get statistics of their own.
    """

    def __init__(
        self,
        receiver: RTCRtpReceiver,
        kind: str,
        on_packet: PacketHandler,
        on_sender_report: SenderReportHandler | None = None,
        ssrcs: Collection[int] | None = None,
    ) -> None:
        self.receiver: Any = _private(receiver)
        self.media_ssrc: int | None = None
        self._ssrcs = None if ssrcs is None else frozenset(ssrcs)
        self._on_packet = on_packet
        self._on_sender_report = on_sender_report
        self._codecs: dict[int, Any] = self.receiver._RTCRtpReceiver__codecs
        self._rtx_ssrc: dict[int, int] = self.receiver._RTCRtpReceiver__rtx_ssrc
        self._is_rtx: dict[int, bool] = {}
        self._streams: dict[int, StreamStatistics] = self.receiver._RTCRtpReceiver__remote_streams
        self._nack = BoundedNackGenerator() if kind == "video" else None
        self._stock_rtcp = self.receiver._handle_rtcp_packet
        self.receiver._handle_rtp_packet = self._handle_rtp
        self.receiver._handle_rtcp_packet = self._handle_rtcp

    def send_pli(self) -> None:
        """Ask the remote sender for a key frame (RTCP PLI), without waiting."""
        if self.media_ssrc is not None:
            task = asyncio.ensure_future(self.receiver._send_rtcp_pli(self.media_ssrc))
            task.add_done_callback(_log_failure)

    async def _handle_rtcp(self, packet: Any) -> None:
        await self._stock_rtcp(packet)
        if self._on_sender_report is not None and isinstance(packet, RtcpSrPacket):
            info = packet.sender_info
            self._on_sender_report(packet.ssrc, info.ntp_timestamp, info.rtp_timestamp)

    async def _handle_rtp(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        if not self.receiver._enabled:
            return
        codec = self._codecs.get(packet.payload_type)
        if codec is None or (self._ssrcs is not None and packet.ssrc not in self._ssrcs):
            return
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
                return
            packet = unwrap_rtx(packet, payload_type=apt, ssrc=original_ssrc)
        if not packet.payload:  # padding-only bandwidth probe
            return
        self.media_ssrc = packet.ssrc
        if self._nack is not None and self._nack.add(packet.sequence_number):
            await self.receiver._send_rtcp_nack(packet.ssrc, sorted(self._nack.missing))
        await self._on_packet(packet)


class BoundedNackGenerator:
    """aiortc's ``NackGenerator`` (the packets to ask again for), in work bounded per packet.

    The stock one walks every sequence number between the highest seen and a newer packet's,
    up to 32,767 steps (about 20 ms of Python) for a packet that jumps ahead, and then keeps
    only the last ``RTP_HISTORY_SIZE`` of them; a publisher sending such jumps could stall the
    worker for every room. This one marks only those last ones to begin with; what it reports
    missing is the same.
    """

    def __init__(self) -> None:
        self.max_seq: int | None = None
        self.missing: set[int] = set()

    def add(self, seq: int) -> bool:
        """Note packet ``seq`` arrived; whether packets before it are now found missing."""
        if self.max_seq is None:
            self.max_seq = seq
            return False
        if not uint16_gt(seq, self.max_seq):
            self.missing.discard(seq)
            return False
        gap = (seq - self.max_seq) & 0xFFFF
        for back in range(1, min(gap, RTP_HISTORY_SIZE + 1)):
            self.missing.add(uint16_add(seq, -back))
        self.max_seq = seq
        oldest = uint16_add(seq, -RTP_HISTORY_SIZE)
        for old in [s for s in self.missing if uint16_gt(oldest, s)]:
            self.missing.discard(old)
        return gap > 1


def tap_receiver_rtp(receiver: RTCRtpReceiver, observer: Callable[[RtpPacket], None]) -> None:
    """Show ``observer`` every RTP packet before the receiver's stock handling (diagnostics)."""
    stock = _private(receiver)._handle_rtp_packet

    async def handle(packet: RtpPacket, arrival_time_ms: int) -> None:
        observer(packet)
        await stock(packet, arrival_time_ms)

    _private(receiver)._handle_rtp_packet = handle


async def request_keyframe(receiver: RTCRtpReceiver, media_ssrc: int) -> None:
    """Send an RTCP PLI for ``media_ssrc`` through this receiver."""
    await _private(receiver)._send_rtcp_pli(media_ssrc)


# Runs in the receiver's decoder thread: encoded frame in, plaintext frame out, None to drop.
ReceiveTransform = Callable[[bytes], bytes | None]


def install_receive_transform(
    receiver: RTCRtpReceiver,
    kind: str,
    transform: ReceiveTransform,
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


# --- inbound SRTP ---------------------------------------------------------------------------


class Dropped(pylibsrtp.Error):
    """Raised in place of decrypting a packet; the transport logs it at debug level and goes on."""


class InboundGuard:
    """Decides, before libsrtp, which of one peer's SRTP and SRTCP packets get decrypted.

    aiortc's DTLS transport decrypts with one libsrtp session whose policy takes any SSRC
    (``SSRC_ANY_INBOUND``): each authentic packet with a new SSRC makes libsrtp create a stream
    for it, and aiortc's router and receivers then add entries and statistics of their own, so a
    peer that cycles SSRCs grows the worker without bound. The guard stands in for that session
    (``RTCDtlsTransport._rx_srtp``, a plain attribute the transport reads per packet), reads the
    SSRC from the clear header and drops, counting them in ``foreign``:

    - RTP whose SSRC is not one of ``rtp_ssrcs`` (the announced media and RTX SSRCs);
    - RTCP from an SSRC that is neither announced (``rtcp_ssrcs``) nor one of the first
      ``rtcp_limit()`` others that authenticated: browsers send receiver reports from SSRCs
      they do not announce, aiortc from ones announced only in answers.

    Every other packet spends a token of a bucket that refills at ``rate`` packets per second up
    to ``rate``; without one it is dropped and counted in ``over_rate``. ``passed`` counts the
    packets handed to libsrtp.

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
        self._rtcp_limit = rtcp_limit
        self._rate = rate
        self._tokens = rate
        self._refilled = time.monotonic()
        self._session: Any = None
        self._transports: list[Any] = []

    @property
    def started(self) -> bool:
        """Whether DTLS is up and the guard stands before the session it made."""
        return self._session is not None

    def unprotect(self, data: bytes) -> bytes:
        if len(data) < 12 or int.from_bytes(data[8:12]) not in self.rtp_ssrcs:
            self.foreign += 1
            raise Dropped("SSRC not announced")
        self._spend()
        return bytes(self._session.unprotect(data))

    def unprotect_rtcp(self, data: bytes) -> bytes:
        ssrc = int.from_bytes(data[4:8])
        known = ssrc in self.rtcp_ssrcs or ssrc in self.rtcp_learned
        if not known and (len(data) < 8 or len(self.rtcp_learned) >= self._rtcp_limit()):
            self.foreign += 1
            raise Dropped("RTCP SSRC not announced")
        self._spend()
        plain = bytes(self._session.unprotect_rtcp(data))
        if not known:  # authentic: libsrtp has just made a stream for it
            self.rtcp_learned.add(ssrc)
        return plain

    def _spend(self) -> None:
        now = time.monotonic()
        self._tokens = min(self._rate, self._tokens + (now - self._refilled) * self._rate)
        self._refilled = now
        if self._tokens < 1:
            self.over_rate += 1
            raise Dropped("over the packet rate")
        self._tokens -= 1
        self.passed += 1


def guard_inbound(pc: RTCPeerConnection, guard: InboundGuard) -> None:
    """Put ``guard`` in front of the ICE checks and inbound SRTP of every transport ``pc`` has.

    Call it after each description that may add a transport, before the connection can start:
    the transport creates its libsrtp session in ``_setup_srtp`` once DTLS is up, and the ICE
    connection (``RTCIceTransport._connection``) handles each authentic check in
    ``check_incoming``; both are looked up on the instance, so wrapping them there takes effect
    for this transport only.
    """
    for transceiver in pc.getTransceivers():
        transport = _private(transceiver.receiver.transport)
        if any(t is transport for t in guard._transports):
            continue
        guard._transports.append(transport)
        connection = transport.transport._connection
        connection.check_incoming = _capped_checks(connection, guard)
        if transport._rx_srtp is not None:
            _swap_in(transport, guard)
        else:
            transport._setup_srtp = _then_swap_in(transport, guard)


def _capped_checks(connection: Any, guard: InboundGuard) -> Callable[[Any, Any, Any], None]:
    stock_check = connection.check_incoming

    def check_incoming(message: Any, addr: tuple[str, int], protocol: Any) -> None:
        known = connection._remote_candidates
        if len(known) >= guard.remote_candidates and not any(
            getattr(c, "_network_host", c.host) == addr[0] and c.port == addr[1] for c in known
        ):
            guard.ice_refused += 1
            return
        stock_check(message, addr, protocol)

    return check_incoming


def _then_swap_in(transport: Any, guard: InboundGuard) -> Callable[[], None]:
    stock_setup = transport._setup_srtp

    def setup() -> None:
        stock_setup()
        _swap_in(transport, guard)

    return setup


def _swap_in(transport: Any, guard: InboundGuard) -> None:
    guard._session = transport._rx_srtp
    transport._rx_srtp = guard


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
        transport = _private(transceiver.receiver.transport)
        routed.update(transport._rtp_router.ssrc_table)
        counted.update(_private(transceiver.receiver)._RTCRtpReceiver__remote_streams)
        session = transport._rx_srtp
        if isinstance(session, InboundGuard):
            session = session._session
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


# --- start-up check -------------------------------------------------------------------------


def check_internals() -> None:
    """Raise AiortcMismatch, naming what is missing, unless the pinned internals are there."""
    missing: list[str] = []
    if aiortc.__version__ != AIORTC_VERSION:
        missing.append(f"version {AIORTC_VERSION}")
    if not callable(getattr(aioice.ice, "get_host_addresses", None)):
        missing.append("aioice.ice.get_host_addresses")
    probe = _Probe()
    for name in _SENDER_ATTRS:
        if not hasattr(probe.sender, name):
            missing.append(f"RTCRtpSender.{name}")
    for name in _RECEIVER_ATTRS:
        if not hasattr(probe.receiver, name):
            missing.append(f"RTCRtpReceiver.{name}")
    if not hasattr(getattr(probe.receiver, "_RTCRtpReceiver__decoder_queue", None), "get"):
        missing.append("RTCRtpReceiver.__decoder_queue.get")
    for name in ("_send_rtp", "_setup_srtp", "_rx_srtp", "_rtp_router"):
        if not hasattr(probe.sender.transport, name):
            missing.append(f"RTCDtlsTransport.{name}")
    connection = getattr(probe.sender.transport.transport, "_connection", None)
    if not callable(getattr(connection, "check_incoming", None)):
        missing.append("RTCIceTransport._connection.check_incoming")
    if not isinstance(getattr(connection, "_remote_candidates", None), list):
        missing.append("aioice Connection._remote_candidates")
    router = getattr(probe.sender.transport, "_rtp_router", None)
    if not isinstance(getattr(router, "ssrc_table", None), dict):
        missing.append("RTCDtlsTransport._rtp_router.ssrc_table")
    if not hasattr(pylibsrtp.Session(), "_srtp"):
        missing.append("pylibsrtp.Session._srtp")
    try:
        _stream_probe()
    except (OSError, AttributeError):
        missing.append("libsrtp srtp_get_stream_roc")
    if not hasattr(RTCRtpTransceiver, "setCodecPreferences"):
        missing.append("RTCRtpTransceiver.setCodecPreferences")
    if not hasattr(RTCRtpTransceiver("audio", probe.receiver, probe.sender), "_codecs"):
        missing.append("RTCRtpTransceiver._codecs")
    if missing:
        raise AiortcMismatch(missing)


class _Probe:
    """A sender and receiver on an unstarted transport, to look at their attributes."""

    def __init__(self) -> None:
        from aiortc import RTCCertificate, RTCDtlsTransport, RTCIceGatherer, RTCIceTransport

        transport = RTCDtlsTransport(
            RTCIceTransport(RTCIceGatherer()), [RTCCertificate.generateCertificate()]
        )
        self.sender = RTCRtpSender("video", transport)
        self.receiver = RTCRtpReceiver("video", transport)


def _private(obj: object) -> Any:
    """``obj`` as Any: aiortc's type hints (rightly) do not declare its private attributes."""
    return obj


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.debug("RTCP send failed: %s", task.exception())
