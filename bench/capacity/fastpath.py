"""A connected aiortc peer connection's SRTP sessions and UDP socket, taken over for the bench.

aiortc negotiates, runs ICE and completes DTLS as a real peer would; after that, the generator
sends and receives RTP itself, which costs a fraction of aiortc's per-packet path. Every use of
aiortc's and aioice's private attributes in the bench is in this module (aiortc 1.16.0):

- ``RTCDtlsTransport._tx_srtp`` / ``._rx_srtp``: the pylibsrtp sessions DTLS keyed (set in
  ``_setup_srtp``, before the connection reports "connected");
- ``RTCIceTransport._connection._nominated[1]``: aioice's nominated candidate pair, whose
  ``protocol`` owns the UDP socket and whose ``remote_addr`` is the worker's address;
- pylibsrtp's ``Session._srtp`` and its cffi ``lib``, to decrypt in one preallocated buffer
  (``Session.unprotect`` allocates, and copies every packet in and out of its own).

The socket is duplicated, so packets go out on the same 5-tuple as before and ICE consent
(STUN, still answered and sent by aioice) stays fresh. aioice's own reading is paused; the
generator drains the socket on its own tick, and what is not SRTP or SRTCP (STUN, DTLS) goes
to aioice's protocol as if it had read it. Reading on a tick rather than when the socket
becomes readable costs far less per packet (a wake-up per datagram, and its cold caches,
cost the generator more than the datagram's decryption did).

Each datagram comes with the kernel's arrival time (``SO_TIMESTAMPNS``, the ``time.time_ns``
clock): when the worker's send reached this socket, however long the generator then took to
read it, so the latency figures do not include the generator's own delays.
"""

from __future__ import annotations

import importlib
import socket
import struct
import time
from collections.abc import Callable
from typing import Any, Final

from aiortc import RTCPeerConnection

RECEIVE_BUFFER_BYTES: Final = 4 * 1024 * 1024  # so a busy generator does not drop what it gets
MAX_DATAGRAM: Final = 2048
BATCH: Final = 512  # datagrams read per drain before letting other work run
SO_TIMESTAMPNS: Final = 35  # Linux; the socket module does not name it
_TIMESPEC: Final = struct.Struct("qq")
_ANCILLARY_BYTES: Final = 64
_binding: Any = importlib.import_module("pylibsrtp._binding")  # compiled, without type stubs
ffi, lib = _binding.ffi, _binding.lib


class SrtpReader:
    """Decrypts SRTP in place in ``buffer``; a caller copies out only the bytes it reads."""

    def __init__(self, session: Any) -> None:
        self._session = session  # keeps the libsrtp context alive
        self._srtp = session._srtp[0]
        self._cdata = ffi.new("char[]", MAX_DATAGRAM)
        self.buffer: Any = ffi.buffer(self._cdata)
        self._length = ffi.new("int *")

    def unprotect(self, data: bytes) -> int:
        """The plain packet's length (it is in ``buffer``); -1 when it does not authenticate."""
        n = len(data)
        if n > MAX_DATAGRAM:
            return -1
        self.buffer[0:n] = data
        self._length[0] = n
        if lib.srtp_unprotect(self._srtp, self._cdata, self._length):
            return -1
        return int(self._length[0])


class FastPath:
    """Send protected packets on, and read SRTP/SRTCP from, one connection's UDP socket."""

    def __init__(self, pc: RTCPeerConnection, on_media: Callable[[bytes, int], None]) -> None:
        dtls: Any = pc.getTransceivers()[0].receiver.transport  # bundled: one transport
        self.rx: Any = dtls._rx_srtp  # pylibsrtp.Session
        self.tx: Any = dtls._tx_srtp
        self.reader = SrtpReader(self.rx)
        pair = dtls.transport._connection._nominated[1]
        self.remote: tuple[str, int] = pair.remote_addr
        self._protocol: Any = pair.protocol
        transport: Any = self._protocol.transport
        transport.pause_reading()
        self.sock: socket.socket = transport.get_extra_info("socket").dup()
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self._on_media = on_media

    def send(self, protected: bytes) -> None:
        """Send one packet; BlockingIOError when the socket's buffer is full."""
        self.sock.sendto(protected, self.remote)

    def drain(self) -> None:
        """Handle every datagram waiting on the socket (up to ``BATCH``)."""
        recvmsg = self.sock.recvmsg
        on_media = self._on_media
        for _ in range(BATCH):
            try:
                data, ancillary, _, addr = recvmsg(MAX_DATAGRAM, _ANCILLARY_BYTES)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # ICMP errors of a closing peer; aioice notices the rest itself
            if 127 < data[0] < 192:  # RTP or RTCP (RFC 7983)
                if ancillary:
                    seconds, ns = _TIMESPEC.unpack_from(ancillary[0][2])
                    on_media(data, seconds * 1_000_000_000 + ns)
                else:
                    on_media(data, time.time_ns())
            else:
                self._protocol.datagram_received(data, addr)

    def close(self) -> None:
        self.sock.close()
