"""The relay's per-packet path around aiortc: RTP in from the socket, RTP out to the socket.

aiortc hands a received datagram from aioice's protocol through a queue to the DTLS
transport's receive task, and sends each packet through three coroutines (sender, DTLS
transport, ICE connection); at tens of thousands of packets a second that machinery, not the
cryptography, is most of a worker's CPU. The two hooks here keep aiortc for everything else
(ICE, DTLS, RTCP, NACK handling, renegotiation) and take over only the media packets:

- ``take_srtp``: the ICE connection's ``StunProtocol.datagram_received`` (one per local
  socket or TURN allocation, ``Connection._protocols``; looked up on the instance) decrypts
  SRTP of the given SSRCs itself, with the transport's ``_rx_srtp`` (the ``InboundGuard``),
  parses it with the transport's ``_rtp_header_extensions_map`` and calls the handler there
  and then. While the connection's queue (``Connection._queue``) still holds datagrams the
  stock path has not read, packets go the stock way, so none overtakes another. A socket
  whose receive queue has grown deep (the worker has fallen behind) is drained there and
  then: what waited longer than ``MAX_WAIT_NS`` is dropped if it is RTP, and everything else
  (STUN above all: ICE consent checks want an answer within 0.5 s) is handled at once.
- ``FastForward``: one subscriber sender's packets: the header rewritten in a template,
  protected in place with the DTLS transport's libsrtp context (``_tx_srtp``; pylibsrtp's
  ``Session._srtp``) and written with one ``sendto`` to the selected pair
  (``Connection._nominated[1]``: its protocol's transport and ``remote_addr``).

All of it is synchronous: a handler must not await; RTCP it wants to send goes in a task.
"""

from __future__ import annotations

import importlib
import logging
import socket
import struct
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

import pylibsrtp
from aioice.ice import StunProtocol
from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc.rtcdtlstransport import State
from aiortc.rtp import RTP_HISTORY_SIZE, RtcpSrPacket, RtpPacket

log = logging.getLogger(__name__)

RtpHandler = Callable[[RtpPacket, int], None]  # (packet, arrival time in NTP-epoch ms)
LateHandler = Callable[[int], None]  # RTP packets just dropped for waiting too long

# A worker that cannot keep up finds each socket's receive queue full (aioice asks for 256 KiB,
# some 190 full-size packets): read one datagram per socket per loop turn, a packet then waits
# hundreds of ms, and so do the STUN requests behind it. Every CHECK_EVERY datagrams a socket's
# queue is measured (Linux: SO_MEMINFO); past DEEP_QUEUE_BYTES it is drained at once, each
# datagram with its arrival time (SO_TIMESTAMPNS), RTP that waited past MAX_WAIT_NS dropped.
# A GC pause or a key-frame burst leaves packets younger than that: they are all forwarded.
MAX_WAIT_NS: Final = 200_000_000
DEEP_QUEUE_BYTES: Final = 96 * 1024  # kernel accounting: some 40 full-size packets
CHECK_EVERY: Final = 8
DRAIN_AT_MOST: Final = 512
_LINUX: Final = sys.platform.startswith("linux")
_SO_MEMINFO: Final = 55  # <linux/sock_diag.h>: u32s, [0] the receive queue's bytes
_SO_TIMESTAMPNS: Final = 35  # <asm-generic/socket.h>; also the control message type
_TIMESPEC: Final = struct.Struct("@qq")
_CMSG_BYTES: Final = socket.CMSG_SPACE(_TIMESPEC.size)

_CONNECTED: Final = State.CONNECTED
_NTP_EPOCH_MS: Final = 2_208_988_800_000  # 1900 to 1970, as aiortc.clock.current_ms counts
_binding: Any = importlib.import_module("pylibsrtp._binding")  # compiled cffi, no type stubs
_ffi, _lib = _binding.ffi, _binding.lib
_BUFFER_BYTES: Final = 2048
_SRTP_TRAILER: Final = 144  # libsrtp's SRTP_MAX_TRAILER_LEN
_MARKER_PT_SEQ_TS: Final = struct.Struct("!BHI")  # bytes 1 to 7 of an RTP header


# --- receiving ------------------------------------------------------------------------------


def take_srtp(
    receiver: RTCRtpReceiver, ssrcs: Sequence[int], handler: RtpHandler, late: LateHandler
) -> None:
    """Hand RTP of ``ssrcs`` arriving on ``receiver``'s transport to ``handler`` as it is read
    off the socket. The sockets are taken over once DTLS has keyed SRTP (``_setup_srtp``),
    when all are gathered; packets arriving once the receiver stopped (``_enabled``) are
    dropped, like the stock path drops them. ``late`` hears of RTP dropped for waiting too
    long in a socket (the transport's first ``late`` does, for all its receivers)."""
    r: Any = receiver
    transport: Any = receiver.transport
    table: dict[int, RtpHandler] | None = getattr(transport, "_conclave_rtp", None)
    if table is None:
        table = transport._conclave_rtp = {}
        if transport._rx_srtp is not None:
            _read_srtp(transport, table, late)
        else:
            stock_setup = transport._setup_srtp

            def setup() -> None:
                stock_setup()
                _read_srtp(transport, table, late)

            transport._setup_srtp = setup

    def enabled_only(packet: RtpPacket, arrival_ms: int) -> None:
        if r._enabled:
            handler(packet, arrival_ms)

    for ssrc in ssrcs:
        table[ssrc] = enabled_only


def _read_srtp(transport: Any, table: dict[int, RtpHandler], late: LateHandler) -> None:
    connection = transport.transport._connection
    for protocol in connection._protocols:
        handle = _reader(transport, connection._queue, table, protocol)
        sock = getattr(protocol.transport, "_sock", None)  # None: a TURN allocation
        if _LINUX and sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
            handle = _draining(handle, sock, late)
        protocol.datagram_received = handle


def _is_rtp(data: bytes) -> bool:
    # RTP or RTCP (RFC 7983), and not one of RTCP's packet types (RFC 5761)
    return len(data) > 12 and 127 < data[0] < 192 and not 191 < data[1] < 224


def _draining(handle: Any, sock: socket.socket, late: LateHandler) -> Any:
    """``handle``, and every CHECK_EVERY datagrams a look at ``sock``'s receive queue: grown
    deep, it is drained (see MAX_WAIT_NS)."""
    count = 0

    def datagram_received(data: bytes, addr: tuple[str, int]) -> None:
        nonlocal count
        handle(data, addr)
        count += 1
        if count % CHECK_EVERY:
            return
        try:
            queued = int.from_bytes(
                sock.getsockopt(socket.SOL_SOCKET, _SO_MEMINFO, 4), sys.byteorder
            )
        except OSError:
            return  # closed meanwhile
        if queued > DEEP_QUEUE_BYTES:
            _drain(handle, sock, late)

    return datagram_received


def _drain(handle: Any, sock: socket.socket, late: LateHandler) -> None:
    oldest = time.time_ns() - MAX_WAIT_NS  # the clock the kernel stamps arrivals with
    dropped = 0
    for _ in range(DRAIN_AT_MOST):
        try:
            data, ancillary, _, addr = sock.recvmsg(_BUFFER_BYTES, _CMSG_BYTES)
        except OSError:  # BlockingIOError once it is empty
            break
        if _arrived_ns(ancillary) < oldest and _is_rtp(data):
            dropped += 1
            continue
        handle(data, addr)
    if dropped:
        late(dropped)


def _arrived_ns(ancillary: list[tuple[int, int, bytes]]) -> int:
    """The kernel's arrival time of a datagram ``recvmsg`` read; a datagram without one
    (none should be) counts as just arrived."""
    for level, kind, stamp in ancillary:
        if (level, kind) == (socket.SOL_SOCKET, _SO_TIMESTAMPNS) and len(stamp) == _TIMESPEC.size:
            seconds, nanoseconds = _TIMESPEC.unpack(stamp)
            return int(seconds * 1_000_000_000 + nanoseconds)
    return time.time_ns()


def _reader(transport: Any, queued: Any, table: dict[int, RtpHandler], protocol: Any) -> Any:
    stock = protocol.datagram_received
    extensions = transport._rtp_header_extensions_map
    parse = RtpPacket.parse
    failed = False

    def datagram_received(data: bytes, addr: tuple[str, int]) -> None:
        nonlocal failed
        if (
            _is_rtp(data)
            and transport._state is _CONNECTED
            and queued.empty()  # else this one would overtake what the stock path holds
        ):
            handler = table.get(int.from_bytes(data[8:12]))
            if handler is not None:
                arrival_ms = time.time_ns() // 1_000_000 + _NTP_EPOCH_MS
                try:
                    handler(parse(transport._rx_srtp.unprotect(data), extensions), arrival_ms)
                except (pylibsrtp.Error, ValueError):
                    pass  # dropped (by the guard, or unauthentic, or malformed), as stock does
                except Exception:
                    # A bug, not the peer's doing. Raised here it would be logged once per
                    # packet (the socket's callback does not catch it): say it once per socket.
                    if not failed:
                        failed = True
                        log.exception("forwarding a packet failed; later failures not logged")
                return
        stock(data, addr)

    return datagram_received


# --- sending --------------------------------------------------------------------------------


class FastForward:
    """One subscriber sender's packets, each in one synchronous call.

    ``header`` and ``quiet_header`` (without the audio level) are the sender's serialized
    header for an empty payload; ``abs_at`` and ``level_at`` say where abs-send-time (3 bytes)
    and the audio level (1 byte) go in them ((0, 0) and 0: not negotiated). The source packet
    of each sequence number is kept (``history`` of them) for NACKs.

    The sender's SR counters are not written per packet: ``sender._send_rtcp`` (looked up on
    the instance) is wrapped, and an SR it is about to send gets this object's counts and time
    mapping, which are noted in the sender's own fields too (``__packet_count``,
    ``__octet_count``, ``__ntp_timestamp``, ``__rtp_timestamp``, and ``__lsr``, which its
    round-trip estimate compares with receiver reports).

    A packet the socket does not take at once is dropped (``dropped``), never queued: a
    subscriber that stops reading costs the others nothing, and nothing grows without bound.
    """

    def __init__(
        self,
        sender: RTCRtpSender,
        header: bytes,
        quiet_header: bytes,
        abs_at: tuple[int, int],
        level_at: int,
        payload_type: int,
        history: int,
    ) -> None:
        s: Any = sender
        self._dtls: Any = s.transport
        self._nominated: dict[int, Any] = self._dtls.transport._connection._nominated
        self._pair: Any = None
        self._sendto: Any = None
        self._through: Any = None  # the transport, when sending through it (see _select)
        self._backlog: Callable[[], int] | None = None
        self._addr: tuple[str, int] = ("", 0)
        self._session: Any = None  # held, so its libsrtp context outlives every use
        self._context: Any = None
        self._header = bytearray(header)
        self._quiet = bytearray(quiet_header)
        self._abs_start, self._abs_end = abs_at
        self._level_at = level_at
        self._payload_type = payload_type
        self._mask = history - 1
        assert history & self._mask == 0, "history must be a power of two"
        self.sources: list[RtpPacket | None] = [None] * history
        self.numbers = [-1] * history
        self.levels: list[int | None] = [None] * history
        self._buffer = _ffi.new("char[]", _BUFFER_BYTES)
        self._view = memoryview(_ffi.buffer(self._buffer))
        self._length = _ffi.new("int *")
        self.packets = 0
        self.sequence = -1  # the last sequence number sent, where a reused line goes on from
        self.octets = 0
        self.ntp = 0
        self.rtp = 0
        self.dropped = 0
        stock = s._send_rtcp

        async def send_rtcp(packets: list[Any]) -> None:
            if self.packets:
                for packet in packets:
                    if isinstance(packet, RtcpSrPacket) and packet.ssrc == s._ssrc:
                        info = packet.sender_info
                        info.packet_count = self.packets & 0xFFFFFFFF
                        info.octet_count = self.octets & 0xFFFFFFFF
                        info.ntp_timestamp = self.ntp
                        info.rtp_timestamp = self.rtp
                        s._RTCRtpSender__packet_count = self.packets
                        s._RTCRtpSender__octet_count = self.octets
                        s._RTCRtpSender__ntp_timestamp = self.ntp
                        s._RTCRtpSender__rtp_timestamp = self.rtp
                        s._RTCRtpSender__lsr = (self.ntp >> 16) & 0xFFFFFFFF
            await stock(packets)

        s._send_rtcp = send_rtcp

    def _select(self) -> bool:
        """Follow the connection's selected pair (it is None once the connection closed)."""
        pair = self._nominated.get(1)
        if pair is None:
            return False
        self._pair = pair
        udp = pair.protocol.transport
        sock = getattr(udp, "_sock", None)  # asyncio's selector transport: the socket itself
        if sock is not None:
            self._sendto, self._through, self._backlog = sock.sendto, None, None
        else:
            # aioice's TurnTransport (a relayed candidate; it sends later, in a task) or
            # another event loop's transport (it may queue what it cannot send at once): each
            # keeps what it is given, so it gets a copy of the shared buffer, and nothing more
            # while it holds a backlog.
            self._sendto, self._through = udp.sendto, udp
            self._backlog = getattr(udp, "get_write_buffer_size", None)
        self._addr = pair.remote_addr
        self._session = self._dtls._tx_srtp
        self._context = self._session._srtp[0]
        return True

    def forward(
        self,
        packet: RtpPacket,
        sequence_number: int,
        level: int | None,
        send_time: bytes,
        now: int,
        report_rtp_timestamp: int,
    ) -> bool:
        """Send ``packet``'s payload, marker and timestamp as this sender's packet number
        ``sequence_number``. ``level`` is the audio level byte (V bit and level) or None,
        ``send_time`` the 3 abs-send-time bytes of ``now`` (NTP), and ``report_rtp_timestamp``
        the RTP time at ``now``, for the next SR. Whether it was sent: not when the transport
        is not (or no longer) connected, nor when it was dropped."""
        if self._dtls._state is not _CONNECTED:
            return False
        if self._nominated.get(1) is not self._pair and not self._select():
            return False
        if self._backlog is not None and self._backlog():
            self.dropped += 1
            return False
        level_at = self._level_at
        header = self._header if level is not None or not level_at else self._quiet
        _MARKER_PT_SEQ_TS.pack_into(
            header, 1, packet.marker << 7 | self._payload_type, sequence_number, packet.timestamp
        )
        if self._abs_end:
            header[self._abs_start : self._abs_end] = send_time
        if level is not None and level_at:
            header[level_at] = level
        slot = sequence_number & self._mask
        self.sources[slot] = packet
        self.numbers[slot] = sequence_number
        self.levels[slot] = level
        payload = packet.payload
        h = len(header)
        n = h + len(payload)
        if n > _BUFFER_BYTES - _SRTP_TRAILER:
            self.dropped += 1
            return False
        view = self._view
        view[:h] = header
        view[h:n] = payload
        length = self._length
        length[0] = n
        if _lib.srtp_protect(self._context, self._buffer, length):
            self.dropped += 1
            return False
        data = view[: length[0]]
        try:
            self._sendto(data if self._through is None else bytes(data), self._addr)
        except OSError:  # a full socket buffer (BlockingIOError) among them
            self.dropped += 1
            return False
        self.packets += 1
        self.sequence = sequence_number
        self.octets += len(payload)
        self.ntp = now
        self.rtp = report_rtp_timestamp
        return True

    def source(self, sequence_number: int) -> tuple[RtpPacket, int | None] | None:
        """The packet sent as ``sequence_number`` and its audio level, if still kept."""
        slot = sequence_number & self._mask
        packet = self.sources[slot]
        if packet is None or self.numbers[slot] != sequence_number:
            return None
        return packet, self.levels[slot]


def prime_history(sender: RTCRtpSender, packets: Sequence[RtpPacket]) -> None:
    """Put ``packets`` in the sender's history (``__rtp_history``), so that its NACK handler
    resends them (over RTX when negotiated) as if it had sent them itself."""
    s: Any = sender
    history = s._RTCRtpSender__rtp_history
    for packet in packets:
        history[packet.sequence_number % RTP_HISTORY_SIZE] = packet


def missing(sender: Any, connection: Any) -> list[str]:
    """What the hooks above need beyond what ``internals`` checks, and the installed aiortc,
    aioice or pylibsrtp lacks; ``sender`` is a fresh RTCRtpSender on an unstarted transport,
    ``connection`` that transport's aioice Connection."""
    found = [
        f"RTCRtpSender.{name}"
        for name in ("_send_rtcp", "_RTCRtpSender__lsr")
        if not hasattr(sender, name)
    ]
    found += [
        f"RTCDtlsTransport.{name}"
        for name in ("_tx_srtp", "_state")
        if not hasattr(sender.transport, name)
    ]
    if not callable(getattr(_lib, "srtp_protect", None)):
        found.append("pylibsrtp._binding.lib.srtp_protect")
    policy = pylibsrtp.Policy(key=bytes(30), ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
    if not hasattr(pylibsrtp.Session(policy), "_srtp"):
        found.append("pylibsrtp Session._srtp")
    for name, kind in (("_nominated", dict), ("_protocols", list)):
        if not isinstance(getattr(connection, name, None), kind):
            found.append(f"aioice Connection.{name}")
    if not callable(getattr(getattr(connection, "_queue", None), "empty", None)):
        found.append("aioice Connection._queue")
    if not callable(getattr(StunProtocol, "datagram_received", None)):
        found.append("aioice StunProtocol.datagram_received")
    return found
