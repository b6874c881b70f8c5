"""Participants that send and read SRTP themselves, against a relay worker process.

Each one negotiates with aiortc (ICE, DTLS) as a real peer would; once connected, the capacity
bench's ``FastPath`` takes its socket and SRTP sessions, so the test process can publish
thousands of packets a second and see every packet a subscriber gets, before any RTP stack:
which publisher packet it carries (the ``bench.capacity.wire`` stamp), its exact payload, and
the relay's RTP sequence number. A subscriber can drop chosen packets, send its own NACK, and
stop reading its socket altogether. The worker is ``bench/capacity/worker_entry.py`` run from
this tree (its packet-rate cap raised), connected to ``relay_fakes.FakeCore``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Final

from aiortc import RTCSessionDescription
from aiortc.rtp import RTCP_RTPFB, RTCP_RTPFB_NACK, RtcpRtpfbPacket

from bench.capacity import sdp, wire
from bench.capacity.core import REPO, WORKER_ENTRY
from bench.capacity.fastpath import FastPath
from bench.procstats import stop_process
from bot.relay import control
from bot.rtc.peer import make_peer_connection, prefer_codec
from bot.rtc.sending import SilentTrack
from tests.relay.relay_fakes import SECRET, FakeCore, eventually

TICK: Final = 0.005
STREAM: Final = 1  # the publisher's stream number in the payload stamps
RTX_CODEC: Final = "rtx/90000"
_RTP: Final = struct.Struct("!BBHII")


@dataclass(frozen=True)
class Arrival:
    number: int  # the publisher's packet number (its RTP sequence, unwrapped)
    seq: int  # the relay's RTP sequence number towards this subscriber
    ssrc: int
    payload: bytes


@dataclass
class Seen:
    arrivals: list[Arrival] = field(default_factory=list)
    dropped: list[Arrival] = field(default_factory=list)  # dropped here, on purpose
    rtx: list[tuple[int, bytes]] = field(default_factory=list)  # (SSRC, RTX payload)
    unreadable: int = 0


class FastPeer:
    """A FakeCore participant: publishes VP8-shaped video, or only subscribes."""

    def __init__(self, name: str, publish: bool = False) -> None:
        self.name = name
        self.joined = asyncio.Event()
        self.negotiating = asyncio.Lock()
        self.pc = make_peer_connection()
        self.fast: FastPath | None = None
        self.seen = Seen()
        self.drop: set[int] = set()  # publisher packet numbers to drop on arrival
        self.reading = True
        self.sent: dict[int, bytes] = {}  # publisher: packet number -> payload
        self._header: wire.HeaderTemplate | None = None
        self._kinds: dict[int, str] = {}  # payload type -> "video" or "rtx"
        if publish:
            t = self.pc.addTransceiver(SilentTrack("video", f"{name}-video"), "sendonly")
            prefer_codec(t)
        self.pc.on("connectionstatechange", self._on_state)

    def _on_state(self) -> None:
        # Inside aiortc's state change, before its DTLS transport reads any media.
        if self.pc.connectionState == "connected" and self.fast is None:
            self.fast = FastPath(self.pc, self._on_datagram)

    # --- the Participant protocol of FakeCore ---------------------------------------------

    async def offer(self) -> dict[str, str]:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return control.sdp("offer", self.pc.localDescription.sdp)

    async def accept_answer(self, answer: dict[str, str]) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        if self.pc.getTransceivers():
            offer = str(self.pc.localDescription.sdp)
            self._header = sdp.header_for("video", offer, answer["sdp"])

    async def answer_offer(self, offer: dict[str, str]) -> dict[str, str]:
        await self.pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
        for section in sdp.sections(offer["sdp"]):
            for pt, codec in section.payload_types.items():
                if section.kind == "video" and codec in (sdp.CODECS["video"], RTX_CODEC):
                    self._kinds[pt] = "rtx" if codec == RTX_CODEC else "video"
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return control.sdp("answer", self.pc.localDescription.sdp)

    def start_media(self) -> None:
        """Media is sent by ``send`` alone."""

    async def close(self) -> None:
        if self.fast is not None:
            self.fast.close()
        await self.pc.close()

    # --- receiving ------------------------------------------------------------------------

    @property
    def rtx_negotiated(self) -> bool:
        return "rtx" in self._kinds.values()

    def _on_datagram(self, data: bytes, arrived_ns: int) -> None:
        assert self.fast is not None
        if 191 < data[1] < 224:  # RTCP: sender reports, BYE; not what these tests read
            return
        try:
            plain = bytes(self.fast.rx.unprotect(data))
        except Exception:  # pylibsrtp.Error; counted, and the tests require none
            self.seen.unreadable += 1
            return
        _, pt, seq, _, ssrc = _RTP.unpack_from(plain)
        payload = plain[wire.rtp_payload_offset(plain) :]
        kind = self._kinds.get(pt & 0x7F)
        if kind == "rtx":
            self.seen.rtx.append((ssrc, payload))
            return
        if kind != "video":
            self.seen.unreadable += 1
            return
        _, index = wire.STAMP.unpack_from(payload, wire.stamp_offset(True, payload))
        arrival = Arrival(index & wire.SEQ_MASK, seq, ssrc, payload)
        if arrival.number in self.drop:
            self.seen.dropped.append(arrival)
        else:
            self.seen.arrivals.append(arrival)

    def highest(self) -> int:
        return self.seen.arrivals[-1].number if self.seen.arrivals else -1

    def send_nack(self, media_ssrc: int, seq: int) -> None:
        """Ask the relay again for its packet ``seq`` on ``media_ssrc`` (RFC 4585 generic NACK)."""
        assert self.fast is not None
        nack = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=self._own_ssrc(), media_ssrc=media_ssrc)
        nack.lost = [seq]
        data = bytes(nack)
        assert data[1] == RTCP_RTPFB
        self.fast.send(bytes(self.fast.tx.protect_rtcp(data)))

    def _own_ssrc(self) -> int:
        """An SSRC this peer's answer announced, so the relay's guard knows the sender."""
        for section in sdp.sections(str(self.pc.localDescription.sdp)):
            if section.ssrcs:
                return section.ssrcs[0]
        return 1

    def stop_reading(self, receive_buffer: int) -> None:
        """Never read the socket again, and shrink its buffer so the kernel soon drops."""
        assert self.fast is not None
        self.reading = False
        self.fast.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)

    def port(self) -> int:
        assert self.fast is not None
        return int(self.fast.sock.getsockname()[1])

    # --- publishing -----------------------------------------------------------------------

    def _packet(self, number: int) -> bytes:
        assert self._header is not None and self.fast is not None
        now_ns = time.time_ns()
        payload = wire.video_payload(STREAM, number, True, now_ns)  # every frame a key frame
        last = number % wire.PACKETS_PER_FRAME == wire.PACKETS_PER_FRAME - 1
        frame = number // wire.PACKETS_PER_FRAME * 3000
        header = self._header.pack(number, frame, last, now_ns / 1e9)
        self.sent[number] = payload
        return bytes(self.fast.tx.protect(header + payload))

    async def send(
        self, first: int, count: int, rate: float, readers: list[FastPeer], window: int
    ) -> None:
        """Send packets ``first`` .. ``first + count - 1`` at ``rate`` a second, never more
        than ``window`` ahead of what the slowest of ``readers`` got: a loaded machine then
        slows the run instead of overflowing the worker's socket, so any loss is the relay's."""
        fast = self.fast
        assert fast is not None
        started = time.monotonic()
        number = first
        while number < first + count:
            due = first + int((time.monotonic() - started) * rate)
            limit = due
            if readers and number > first:
                limit = min(limit, min(p.highest() for p in readers) + 1 + window)
            while number <= min(due, limit, first + count - 1):
                packet = self._packet(number)
                while True:
                    try:
                        fast.send(packet)
                        break
                    except BlockingIOError:
                        await asyncio.sleep(TICK)
                number += 1
            await asyncio.sleep(TICK)


async def pump(peers: list[FastPeer]) -> None:
    """Read every reading peer's socket each tick (a peer's non-media goes on to aioice)."""
    while True:
        for peer in peers:
            if peer.reading and peer.fast is not None:
                peer.fast.drain()
        await asyncio.sleep(TICK)


async def start_worker(core: FakeCore) -> asyncio.subprocess.Process:
    """A relay worker process running this tree, connected to ``core`` and ready."""
    env = {**os.environ, "CONCLAVE_RELAY_SECRET": SECRET.reveal(), "PYTHONPATH": str(REPO)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(WORKER_ENTRY), core.url, "fwd-1", str(REPO), cwd=REPO, env=env
    )
    try:
        await asyncio.wait_for(core.ready.wait(), 30)
    except TimeoutError:
        await stop_process(proc)
        raise
    return proc


async def connect(core: FakeCore, room: str, peers: list[FastPeer]) -> None:
    """Join ``peers`` in order, until each has its fast path."""
    for peer in peers:
        await core.join(room, peer, media=False)
    await eventually(lambda: all(p.fast is not None for p in peers), "every peer is connected")


async def warm_up(publisher: FastPeer, readers: list[FastPeer]) -> int:
    """Send slowly until every reader gets the publisher's packets; the next packet number."""
    number = 0
    deadline = time.monotonic() + 30
    while not all(r.seen.arrivals for r in readers):
        if time.monotonic() > deadline:
            raise AssertionError("the publisher's packets never reached every subscriber")
        await publisher.send(number, 5, 1000.0, [], 0)
        number += 5
        await asyncio.sleep(0.05)
    # One frame more, so no reader is midway through the warm-up's packets.
    await publisher.send(number, 5, 1000.0, [], 0)
    number += 5
    await eventually(lambda: all(r.highest() == number - 1 for r in readers), "warm-up arrived")
    return number


def udp_drops(port: int) -> int:
    """The kernel's count of datagrams dropped at the loopback UDP socket on ``port``."""
    with open("/proc/net/udp") as f:
        for line in f.read().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == port:
                return int(fields[-1])
    raise AssertionError(f"no UDP socket on port {port}")
