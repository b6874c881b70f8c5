"""One load generator process: participants that negotiate with aiortc, then send SRTP directly.

    python -m bench.capacity.generator        (driven by bench/capacity/core.py)

Commands arrive as JSON lines on stdin, ``{"id", "op", ...}``; each gets one JSON line on
stdout, ``{"id", "ok", ...}``. A participant's peer connection answers and offers as a client
would; once it is connected (ICE and DTLS done), ``fastpath.FastPath`` takes its socket and
SRTP sessions. From then on, every ``TICK`` seconds, the generator reads what arrived on each
socket and sends each published stream's packets that are due, in small batches. Received
packets are only decrypted and read (send time, index), or with ``verify`` also rebuilt and
compared byte for byte.

With ``BENCH_GENERATOR_PROFILE=PREFIX`` in its environment, a generator writes a cProfile of its
CPU time to ``PREFIX.<pid>`` when it is closed.
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Final

import pylibsrtp
from aiortc import RTCSessionDescription

from bench.capacity import sdp, wire
from bench.capacity.fastpath import FastPath
from bot.rtc.internals import restrict_host_addresses
from bot.rtc.peer import make_peer_connection, prefer_codec
from bot.rtc.sending import SilentTrack

TICK: Final = 0.005
# A stream sends at most this much of a second's packets per tick; a generator further behind
# gives the rest up (counted in ``behind``) rather than burst into the worker's socket.
MAX_BURST_SECONDS: Final = 0.05
MIN_BURST: Final = 4
PLI, FIR, PSFB = 1, 4, 206
PROFILE_ENV: Final = "BENCH_GENERATOR_PROFILE"
HEAD_BYTES: Final = 96  # RTP header, extensions, payload descriptor, clear prefix and stamp

log = logging.getLogger("bench.capacity.generator")


@dataclass
class Flow:
    """What one participant received on one SSRC since the window opened."""

    video: bool
    stream: int = -1
    count: int = 0
    first: int = -1
    last: int = -1
    verified: int = 0
    mismatched: int = 0


class Stream:
    """One published stream: its header, schedule and sequence."""

    def __init__(self, number: int, kind: str, header: wire.HeaderTemplate) -> None:
        self.number = number
        self.video = kind == "video"
        self.header = header
        self.rate = 0.0
        self.seq = 0
        self.sent = 0
        self.behind = 0  # packets the schedule asked for that the generator gave up
        self.skip: set[int] = set()
        self.want_key = True
        self._frame_key = True
        self._timestamp = 0
        self._scheduled = 0
        self._base = (0.0, 0)  # (time, packets scheduled) when the rate was last set
        self._pending: bytes | None = None

    def set_rate(self, rate: float, now: float) -> None:
        self.rate = rate
        self._base = (now, self._scheduled)

    def send_due(self, now: float, fast: FastPath) -> None:
        due = self._base[1] + int((now - self._base[0]) * self.rate) - self._scheduled
        burst = max(MIN_BURST, int(self.rate * MAX_BURST_SECONDS))
        if due > burst:
            self.behind += due - burst
            self._scheduled += due - burst
            due = burst
        if self._pending is not None:
            try:
                fast.send(self._pending)
            except BlockingIOError:
                return
            self._pending = None
            self.sent += 1
        for _ in range(due):
            self._scheduled += 1
            packet = self._next(fast.tx)
            if packet is None:
                continue
            try:
                fast.send(packet)
            except BlockingIOError:
                self._pending = packet
                return
            self.sent += 1

    def _next(self, tx: Any) -> bytes | None:
        seq = self.seq
        self.seq += 1
        if seq in self.skip:
            return None
        now_ns = time.time_ns()  # the clock the kernel stamps arrivals with
        if self.video:
            first = seq % wire.PACKETS_PER_FRAME == 0
            if first:
                self._frame_key, self.want_key = self.want_key, False
                self._timestamp = now_ns * 9 // 100_000  # 90 kHz
            payload = wire.video_payload(self.number, seq, self._frame_key, now_ns)
            marker = seq % wire.PACKETS_PER_FRAME == wire.PACKETS_PER_FRAME - 1
            header = self.header.pack(seq, self._timestamp, marker, now_ns / 1e9)
        else:
            payload = wire.audio_payload(self.number, seq, now_ns)
            header = self.header.pack(seq, seq * 960, False, now_ns / 1e9)
        return bytes(tx.protect(header + payload))


@dataclass
class Totals:
    """This process's receive side since the window opened."""

    latency: wire.Histogram = field(default_factory=wire.Histogram)
    received: int = 0
    errors: int = 0  # failed to decrypt or to read
    keyframe_requests: int = 0


class Participant:
    def __init__(self, name: str, number: int, kinds: list[str], totals: Totals) -> None:
        self.name = name
        self.number = number
        self.pc = make_peer_connection()
        self.kinds = kinds
        self.streams: dict[str, Stream] = {}
        self.flows: dict[int, Flow] = {}
        self.payload_kinds: dict[int, str] = {}
        self.fast: FastPath | None = None
        self.verify = False
        self._totals = totals
        for kind in kinds:
            t = self.pc.addTransceiver(SilentTrack(kind, f"{name}-{kind}"), direction="sendonly")
            prefer_codec(t)
        self.pc.on("connectionstatechange", self._on_state)

    def _on_state(self) -> None:
        # Runs inside aiortc's state change, before its DTLS transport reads any media.
        if self.pc.connectionState == "connected" and self.fast is None:
            self.fast = FastPath(self.pc, self._on_media)

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def accept_answer(self, answer: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        offer = str(self.pc.localDescription.sdp)
        for kind in self.kinds:
            header = sdp.header_for(kind, offer, answer)
            self.streams[kind] = Stream(wire.stream_number(self.number, kind), kind, header)

    async def answer_offer(self, offer: str) -> str:
        await self.pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        self.payload_kinds.update(sdp.payload_kinds(offer))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return str(self.pc.localDescription.sdp)

    def _on_media(self, data: bytes, arrived_ns: int) -> None:
        fast = self.fast
        assert fast is not None
        totals = self._totals
        if 191 < data[1] < 224:  # RTCP
            try:
                self._on_rtcp(bytes(fast.rx.unprotect_rtcp(data)))
            except pylibsrtp.Error:
                totals.errors += 1
            return
        size = fast.reader.unprotect(data)
        if size < 0:
            totals.errors += 1
            return
        # Only the header and stamp are copied out of the buffer, unless verifying.
        plain = fast.reader.buffer[0 : size if self.verify else min(size, HEAD_BYTES)]
        ssrc = int.from_bytes(plain[8:12])
        flow = self.flows.get(ssrc)
        if flow is None:
            kind = self.payload_kinds.get(plain[1] & 0x7F)
            if kind is None:
                totals.errors += 1
                return
            flow = self.flows[ssrc] = Flow(kind == "video")
        at = wire.rtp_payload_offset(plain)
        try:
            sent_ns, index = wire.STAMP.unpack_from(plain, wire.stamp_offset(flow.video, plain, at))
        except (IndexError, ValueError):
            totals.errors += 1
            return
        seq = index & wire.SEQ_MASK
        flow.stream = index >> wire.SEQ_BITS
        flow.count += 1
        if flow.first < 0:
            flow.first = seq
        if seq > flow.last:
            flow.last = seq
        totals.received += 1
        totals.latency.add(arrived_ns - sent_ns)
        if self.verify:
            if wire.payload_matches(flow.video, plain[at:]):
                flow.verified += 1
            else:
                flow.mismatched += 1

    def _on_rtcp(self, plain: bytes) -> None:
        at = 0
        while at + 4 <= len(plain):
            if plain[at + 1] == PSFB and plain[at] & 0x1F in (PLI, FIR) and "video" in self.streams:
                self.streams["video"].want_key = True
                self._totals.keyframe_requests += 1
            at += (int.from_bytes(plain[at + 2 : at + 4]) + 1) * 4

    async def close(self) -> None:
        if self.fast is not None:
            self.fast.close()
        await self.pc.close()


class Generator:
    """The participants of this process and the commands that drive them."""

    def __init__(self) -> None:
        self.participants: dict[str, Participant] = {}
        self.totals = Totals()
        self.rates = {"video": 0.0, "audio": 0.0}
        self._window: dict[int, tuple[int, int]] = {}  # stream -> (sent, behind) at the start
        self._window_opened = time.monotonic()
        self._pacer = asyncio.create_task(self.pace())

    async def pace(self) -> None:
        """Every tick: read what arrived, then send what each stream's schedule says is due."""
        while True:
            now = time.monotonic()
            for p in self.participants.values():
                if p.fast is not None:
                    p.fast.drain()
                    for stream in p.streams.values():
                        if stream.rate:
                            stream.send_due(now, p.fast)
            await asyncio.sleep(TICK)

    async def handle(self, op: str, m: dict[str, Any]) -> dict[str, Any]:
        if op == "add":
            p = Participant(m["name"], m["number"], m["kinds"], self.totals)
            self.participants[p.name] = p
            p.verify = bool(m.get("verify"))
            return {"offer": await p.offer()}
        if op == "answer":
            await self.participants[m["name"]].accept_answer(m["sdp"])
            return {}
        if op == "relay_offer":
            return {"answer": await self.participants[m["name"]].answer_offer(m["sdp"])}
        if op == "rates":
            return self._set_rates(m)
        if op == "status":
            return {
                "connected": sum(p.fast is not None for p in self.participants.values()),
                "seen": {
                    p.name: sorted({f.stream for f in p.flows.values() if f.count})
                    for p in self.participants.values()
                },
            }
        if op == "window_start":
            self._open_window({int(k): n for k, n in m.get("drop", {}).items()})
            return {}
        if op == "window_stop":
            return self._window_figures()
        if op == "close":
            self._pacer.cancel()
            for p in self.participants.values():
                await p.close()
            return {}
        raise ValueError(f"unknown op {op!r}")

    def _set_rates(self, m: dict[str, Any]) -> dict[str, Any]:
        now = time.monotonic()
        self.rates.update(m["rates"])
        for p in self.participants.values():
            for kind, stream in p.streams.items():
                stream.set_rate(self.rates[kind], now)
        return {}

    def _streams(self) -> list[Stream]:
        return [s for p in self.participants.values() for s in p.streams.values()]

    def _open_window(self, drop: dict[int, int]) -> None:
        """Start counting afresh; stream ``k`` of ``drop`` skips its ``drop[k]``-th next packet."""
        self.totals.latency = wire.Histogram()
        self.totals.received = self.totals.errors = 0
        for p in self.participants.values():
            for flow in p.flows.values():
                flow.count = flow.verified = flow.mismatched = 0
                flow.first = flow.last = -1
        self._window = {s.number: (s.sent, s.behind) for s in self._streams()}
        self._window_opened = time.monotonic()
        for s in self._streams():
            if s.number in drop:
                s.skip.add(s.seq + drop[s.number])

    def _window_figures(self) -> dict[str, Any]:
        sent = {}
        behind = 0
        for s in self._streams():
            sent0, behind0 = self._window.get(s.number, (0, 0))
            sent[str(s.number)] = s.sent - sent0
            behind += s.behind - behind0
        flows = [
            [p.name, f.stream, f.count, f.first, f.last, f.verified, f.mismatched]
            for p in self.participants.values()
            for f in p.flows.values()
            if f.count
        ]
        return {
            "lost": sum(
                p.pc.connectionState in ("failed", "closed") for p in self.participants.values()
            ),
            "seconds": time.monotonic() - self._window_opened,
            "sent": sent,
            "behind": behind,
            "flows": flows,
            "latency": self.totals.latency.sparse(),
            "received": self.totals.received,
            "errors": self.totals.errors,
            "keyframe_requests": self.totals.keyframe_requests,
        }


async def serve() -> None:
    restrict_host_addresses(["127.0.0.1"])
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**22)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    generator = Generator()
    tasks: set[asyncio.Task[None]] = set()

    def reply(message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    async def run(message: dict[str, Any]) -> None:
        try:
            fields = await generator.handle(message["op"], message)
        except Exception as exc:
            log.exception("generator command %s failed", message["op"])
            reply({"id": message["id"], "ok": False, "error": repr(exc)})
        else:
            reply({"id": message["id"], "ok": True, **fields})

    while line := await reader.readline():
        message = json.loads(line)
        task = asyncio.create_task(run(message))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        if message["op"] == "close":
            await task
            break


def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    prefix = os.environ.get(PROFILE_ENV)
    if not prefix:
        asyncio.run(serve())
        return
    # CPU time, not wall time: the generator shares its cores with the worker it measures.
    profile = cProfile.Profile(time.process_time)
    profile.runcall(asyncio.run, serve())
    profile.dump_stats(f"{prefix}.{os.getpid()}")


if __name__ == "__main__":
    main()
