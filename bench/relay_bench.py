"""Throughput, latency, loss, CPU and memory of ONE relay worker process.

The bench is the core: it serves the control websocket on 127.0.0.1, starts a worker
subprocess (``run_worker`` with the secret in its environment, host candidates on loopback),
and hosts the fake participants as aiortc peers in this process. Publishers do not encode:
they write synthetic SFrame-shaped VP8 packets (payload descriptor, clear VP8 prefix, then an
8-byte send time and an 8-byte packet index where the ciphertext would start, then filler)
straight into their sender. Subscribers take packets before any depayloading and only read the
send time and index. So the generator costs little more than SRTP and a parse per packet; the
publish rates below are chosen so that it is not the bottleneck on a 2-core machine (its CPU
share is printed next to the worker's).

    python bench/relay_bench.py [seconds per case]

Latency is from the publisher handing the packet to its transport to the subscriber's receive
hook: two SRTP passes and loopback UDP on top of the relay's own time, so an upper bound on
what the relay adds. Loss counts packets missing between the first and last index each
subscriber saw from each publisher during the measurement window.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Any

# Run as a script from anywhere: make the repository root importable.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aiohttp import web
from aiortc import RTCRtpReceiver, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtp import RtpPacket

from bench.procstats import peak_rss_kib, percentile, stop_process
from bot.config import RelaySettings
from bot.relay import control
from bot.relay.tickets import HEADER, NonceCache, answer_worker_ticket
from bot.rtc.internals import on_keyframe_request, restrict_host_addresses
from bot.rtc.peer import make_peer_connection, prefer_codec
from bot.rtc.receiving import ReceiverTap
from bot.rtc.sending import SenderTap, SilentTrack
from bot.secret import Secret
from tests.support.fakes import listen_on_any_port

LOOPBACK = ["127.0.0.1"]
SCRIPT = os.path.abspath(__file__)
PACKETS_PER_FRAME = 5
PAYLOAD_BYTES = 1000
STAMP = struct.Struct("!QQ")  # send time (ns, monotonic), packet index
KEY_PREFIX = bytes([0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A, 0x80, 0x02, 0xE0, 0x01])
DELTA_PREFIX = bytes([0x11, 0x02, 0x00])
TARGET_FORWARDED_PER_SECOND = 10_000
TARGET_LOSS_PERCENT = 0.5
TARGET_MEETING_MIB = 250


@dataclass
class Flow:
    """What one subscriber got from one publisher during the window."""

    count: int = 0
    first: int | None = None
    last: int = 0
    latencies_us: list[int] = field(default_factory=list)


class Peer:
    def __init__(self, name: str, publish: bool) -> None:
        self.name = name
        self.pc = make_peer_connection()
        self.joined = asyncio.Event()
        self.lock = asyncio.Lock()
        self.flows: dict[str, Flow] = {}
        self.measuring = False
        self.sent = 0
        self._keyframe = True
        self._taps: list[ReceiverTap] = []
        self.tap: SenderTap | None = None
        if publish:
            t = self.pc.addTransceiver(SilentTrack("video", f"{name}-video"), direction="sendonly")
            prefer_codec(t)
            on_keyframe_request(t.sender, self._want_keyframe)
            self.tap = SenderTap(t)
        self.pc.on("track", self._on_track)

    def _want_keyframe(self) -> None:
        self._keyframe = True

    def _on_track(self, track: MediaStreamTrack) -> None:
        owner = track.id.rsplit("-", 1)[0]
        receiver: RTCRtpReceiver = next(
            t.receiver for t in self.pc.getTransceivers() if t.receiver.track is track
        )
        self.flows.setdefault(owner, Flow())

        async def on_packet(packet: RtpPacket) -> None:
            flow = self.flows[owner]  # replaced when the measurement window opens
            if not self.measuring:
                flow.count = max(flow.count, 1)  # "flowing" marker for the warm-up
                return
            payload = packet.payload
            at = 4  # the payload descriptor; a frame's first packet has the clear prefix too
            if payload[0] & 0x10:
                at += len(DELTA_PREFIX) if payload[4] & 1 else len(KEY_PREFIX)
            sent_ns, index = STAMP.unpack_from(payload, at)
            flow.latencies_us.append((time.monotonic_ns() - sent_ns) // 1000)
            flow.count += 1
            if flow.first is None:
                flow.first = index
            flow.last = max(flow.last, index)

        self._taps.append(ReceiverTap(receiver, "video", on_packet))

    async def publish(self, rate: float, stop: asyncio.Event) -> None:
        tap = self.tap
        assert tap is not None
        for _ in range(600):  # the sender starts once the answer is applied
            if tap.ready():
                break
            await asyncio.sleep(0.05)
        frame_interval = PACKETS_PER_FRAME / rate
        seq = timestamp = picture = 0
        start = time.monotonic()
        frames = 0
        filler = os.urandom(PAYLOAD_BYTES)
        while not stop.is_set():
            key, self._keyframe = self._keyframe, False
            picture = (picture + 1) & 0x7FFF
            for i in range(PACKETS_PER_FRAME):
                descriptor = bytes(
                    [0x90 if i == 0 else 0x80, 0x80, 0x80 | picture >> 8, picture & 0xFF]
                )
                prefix = (KEY_PREFIX if key else DELTA_PREFIX) if i == 0 else b""
                stamp = STAMP.pack(time.monotonic_ns(), self.sent)
                body = descriptor + prefix + stamp + filler[: PAYLOAD_BYTES - len(prefix)]
                packet = RtpPacket(
                    payload_type=0,
                    marker=int(i == PACKETS_PER_FRAME - 1),
                    sequence_number=seq,
                    timestamp=timestamp,
                    payload=body,
                )
                await tap.send(packet, seq, timestamp)
                seq = (seq + 1) & 0xFFFF
                self.sent += 1
            timestamp = (timestamp + 3000) & 0xFFFFFFFF
            frames += 1
            await asyncio.sleep(max(0.0, start + frames * frame_interval - time.monotonic()))

    async def answer_offer(self, offer: dict[str, str]) -> dict[str, str]:
        await self.pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return control.sdp("answer", self.pc.localDescription.sdp)


class BenchCore:
    def __init__(self, secret: Secret) -> None:
        self.secret = secret
        self.ready = asyncio.Event()
        self.peers: dict[str, Peer] = {}
        self._nonces = NonceCache()
        self._ws: web.WebSocketResponse | None = None
        self._results: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def handler(self, request: web.Request) -> web.StreamResponse:
        ticket = request.headers.get(HEADER, "")
        _, core_ticket = answer_worker_ticket(self.secret, ticket, time.time(), self._nonces)
        ws = web.WebSocketResponse(max_msg_size=4 * control.MAX_MESSAGE_BYTES)
        await ws.prepare(request)
        self._ws = ws
        await ws.send_str(control.encode(control.WELCOME, ticket=core_ticket))
        async for message in ws:
            data = control.decode(message.data, control.TO_CORE)
            if data["type"] == control.READY:
                self.ready.set()
            elif data["type"] == control.RESULT:
                self._results.pop(data["id"]).set_result(data)
            elif data["type"] == control.OFFER:
                task = asyncio.create_task(self._offer(data))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        return ws

    async def _offer(self, event: dict[str, Any]) -> None:
        peer = self.peers[event["participant"]]
        await peer.joined.wait()
        async with peer.lock:
            answer = await peer.answer_offer(event["offer"])
        fields = {k: event[k] for k in ("room", "participant", "negotiation")}
        await self.request("answer", answer=answer, **fields)

    async def request(self, kind: str, **fields: Any) -> dict[str, Any]:
        assert self._ws is not None
        self._next += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._results[self._next] = future
        await self._ws.send_str(json.dumps({"type": kind, "id": self._next, **fields}))
        result = await asyncio.wait_for(future, 30)
        assert result["ok"], result
        return result

    async def join(self, room: str, peer: Peer) -> None:
        self.peers[peer.name] = peer
        await peer.pc.setLocalDescription(await peer.pc.createOffer())
        offer = control.sdp("offer", peer.pc.localDescription.sdp)
        result = await self.request("join", room=room, participant=peer.name, offer=offer)
        await peer.pc.setRemoteDescription(RTCSessionDescription(result["answer"]["sdp"], "answer"))
        peer.joined.set()


def proc_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Case:
    label: str
    publishers: int
    subscribers: int  # subscriber-only participants
    rate: float  # packets per second per publisher
    seen_by: int = 0  # filled in: how many subscribers see each publisher


async def run_case(case: Case, seconds: float) -> dict[str, Any]:
    secret = Secret(secrets.token_urlsafe(24))
    core = BenchCore(secret)
    app = web.Application()
    app.router.add_get(control.ROUTE, core.handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = await listen_on_any_port(runner)
    env = {**os.environ, "CONCLAVE_RELAY_SECRET": secret.reveal()}
    worker = await asyncio.create_subprocess_exec(
        sys.executable, SCRIPT, "--worker", f"http://127.0.0.1:{port}", env=env
    )
    peers: list[Peer] = []
    stop = asyncio.Event()
    publishing: list[asyncio.Task[None]] = []
    try:
        await asyncio.wait_for(core.ready.wait(), 30)
        both = case.subscribers == 0  # a meeting: everyone publishes and subscribes
        for i in range(case.publishers):
            peers.append(Peer(f"p{i}", publish=True))
        for i in range(case.subscribers):
            peers.append(Peer(f"s{i}", publish=False))
        for peer in peers:
            await core.join("bench", peer)
        publishers = [p for p in peers if p.tap is not None]
        subscribers = peers if both else [p for p in peers if p.tap is None]
        case.seen_by = len(subscribers) - (1 if both else 0)
        publishing = [asyncio.create_task(p.publish(case.rate, stop)) for p in publishers]
        deadline = time.monotonic() + 30
        while not all(
            p.name in s.flows and s.flows[p.name].count
            for s in subscribers
            for p in publishers
            if s is not p
        ):
            if time.monotonic() > deadline:
                raise RuntimeError("not every subscriber receives every publisher")
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # settle after the last renegotiation
        for s in subscribers:
            s.flows = {k: Flow() for k in s.flows}
            s.measuring = True
        cpu0, wall0, gen0 = proc_cpu_seconds(worker.pid), time.monotonic(), os.times()
        await asyncio.sleep(seconds)
        cpu1, wall1, gen1 = proc_cpu_seconds(worker.pid), time.monotonic(), os.times()
        for s in subscribers:
            s.measuring = False
        stats = await core.request("stats")
        flows = [f for s in subscribers for f in s.flows.values() if f.first is not None]
        received = sum(f.count for f in flows)
        expected = sum(f.last - f.first + 1 for f in flows if f.first is not None)
        latencies = [x for f in flows for x in f.latencies_us]
        wall = wall1 - wall0
        return {
            "case": case.label,
            "publishers": case.publishers,
            "seen_by": case.seen_by,
            "rate": case.rate,
            "forwarded_per_s": received / wall,
            "p50_ms": percentile(latencies, 0.50) / 1000,
            "p99_ms": percentile(latencies, 0.99) / 1000,
            "loss_pct": 100 * (1 - received / expected) if expected else 100.0,
            "worker_cpu_pct": 100 * (cpu1 - cpu0) / wall,
            "generator_cpu_pct": 100
            * ((gen1.user + gen1.system) - (gen0.user + gen0.system))
            / wall,
            "worker_peak_mib": peak_rss_kib(worker.pid) / 1024,
            "worker_rss_mib_reported": stats["rss_bytes"] / 2**20,
        }
    finally:
        stop.set()
        await asyncio.gather(*publishing, return_exceptions=True)
        for peer in peers:
            await peer.pc.close()
        await stop_process(worker)
        for task in list(core._tasks):
            task.cancel()
        await runner.cleanup()


def worker_main(core_url: str) -> None:
    import logging
    import signal

    from bot.relay.worker import run_worker

    logging.basicConfig(level=logging.WARNING)

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        secret = Secret(os.environ["CONCLAVE_RELAY_SECRET"])
        settings = RelaySettings(secret=secret, host_addresses=tuple(LOOPBACK))
        await run_worker(core_url, "bench-1", settings, stop=stop)

    asyncio.run(main())


async def main(seconds: float) -> None:
    restrict_host_addresses(LOOPBACK)
    cases = [
        Case("1 publisher x 9 subscribers", 1, 9, 1200),
        Case("3 publishers x 3 subscribers", 3, 3, 400),
        Case("10-person meeting (each seen by 9)", 10, 0, 90),
    ]
    print(
        f"{'case':38s} {'pub rate':>8s} {'fwd/s':>8s} {'p50 ms':>7s} {'p99 ms':>7s} "
        f"{'loss %':>7s} {'worker CPU':>10s} {'gen CPU':>8s} {'peak RSS':>9s}"
    )
    results = []
    for case in cases:
        r = await run_case(case, seconds)
        results.append(r)
        print(
            f"{r['case']:38s} {r['rate']:8.0f} {r['forwarded_per_s']:8.0f} {r['p50_ms']:7.2f} "
            f"{r['p99_ms']:7.2f} {r['loss_pct']:7.3f} {r['worker_cpu_pct']:9.0f}% "
            f"{r['generator_cpu_pct']:7.0f}% {r['worker_peak_mib']:6.0f} MiB",
            flush=True,
        )
    best = max(r["forwarded_per_s"] for r in results if r["loss_pct"] < TARGET_LOSS_PERCENT)
    meeting = results[-1]["worker_peak_mib"]
    print(
        f"target >= {TARGET_FORWARDED_PER_SECOND} forwarded/s with loss < {TARGET_LOSS_PERCENT}%:"
        f" {'met' if best >= TARGET_FORWARDED_PER_SECOND else 'NOT met'} ({best:.0f}/s); "
        f"10-person meeting under {TARGET_MEETING_MIB} MiB: "
        f"{'met' if meeting < TARGET_MEETING_MIB else 'NOT met'} ({meeting:.0f} MiB)"
    )


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        worker_main(sys.argv[2])
    else:
        asyncio.run(main(float(sys.argv[1]) if len(sys.argv) > 1 else 8.0))
