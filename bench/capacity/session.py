"""One case on one build: its workers, generators and members, and one measured load step.

A case is rooms of publishers (who also subscribe to everyone else) and subscribe-only
members. Rooms go to workers in turn and members to generator processes in turn, so the
publisher of a room and its subscribers usually live in different processes. Loss is counted
per (subscriber, stream) from the indexes seen in the window; a stream a subscriber expected
and never saw counts as wholly lost (everything its publisher sent in the window).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.capacity import wire
from bench.capacity.core import BenchCore, GeneratorProcess, Member, WorkerLink, start_worker
from bench.procstats import peak_rss_kib, stop_process
from bot.secret import Secret

FLOWING_TIMEOUT = 60.0


@dataclass(frozen=True)
class Case:
    key: str
    label: str
    rooms: int
    publishers: int  # per room; each also subscribes to the room's other publishers
    subscribers: int  # per room, subscribe-only
    kinds: tuple[str, ...]  # what each publisher sends

    @property
    def fanout(self) -> int:
        """How many members receive each published stream."""
        return self.publishers + self.subscribers - 1

    def with_rooms(self, rooms: int) -> Case:
        label = f"{self.label}, {rooms} of them"
        return Case(self.key, label, rooms, self.publishers, self.subscribers, self.kinds)

    def streams_out(self, video_rate: float) -> float:
        """Forwarded packets a second the worker(s) owe at this video rate per publisher."""
        audio = wire.AUDIO_RATE if "audio" in self.kinds else 0.0
        return self.rooms * self.publishers * self.fanout * (video_rate + audio)

    def video_rate_for(self, forwarded: float, minimum: float = 5.0) -> float:
        audio = wire.AUDIO_RATE if "audio" in self.kinds else 0.0
        return max(minimum, forwarded / (self.rooms * self.publishers * self.fanout) - audio)


@dataclass
class Step:
    video_rate: float
    target_per_s: float  # what the schedule asked the publishers for, times the fan-out
    offered_per_s: float  # what they sent, times the fan-out
    forwarded_per_s: float  # the workers' own count of packets sent to subscribers
    delivered_per_s: float  # what subscribers decrypted
    loss_pct: float
    lost: int  # packets subscribers should have had and did not
    p50_ms: float
    p99_ms: float
    worker_cpu_pct: float  # summed over workers: 100 is one core
    worker_us_per_packet: float
    generator_cpu_pct: float  # summed over generator processes
    generator_us_per_packet: float  # per packet sent or received
    peak_rss_mib: float  # the largest worker's
    missing_flows: int
    lost_connections: int  # participants whose peer connection failed or closed (ICE consent)
    behind: int
    errors: int
    verified: int
    mismatched: int
    held: bool = False  # within the loss and latency limits; set by the caller, which knows them
    delivers: bool = False  # within the loss limit (latency aside)
    # runnable but not running, summed over workers like their CPU: the machine's other work
    # (and the generators) had the CPUs
    worker_waited_pct: float = 0.0
    busiest_generator_pct: float = 0.0  # one process: near 100 it would be the bottleneck


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def runqueue_seconds(pid: int) -> float:
    """How long the process's main thread has waited, runnable, for a CPU (schedstat)."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[1]) / 1e9


class Session:
    """The processes and members of one case on one build (source tree ``root``)."""

    def __init__(self, case: Case, root: Path, workers: int, generators: int) -> None:
        self.case = case
        self.root = root
        self.core = BenchCore(Secret(secrets.token_urlsafe(24)))
        self._n_workers = workers
        self._n_generators = generators
        self.workers: list[tuple[WorkerLink, asyncio.subprocess.Process]] = []
        self.generators: list[GeneratorProcess] = []
        self.members: list[Member] = []
        self.expected: set[tuple[str, int]] = set()  # (subscriber, stream number)

    async def open(self, verify: bool = False) -> None:
        await self.core.start()
        for i in range(self._n_workers):
            self.workers.append(await start_worker(self.core, f"bench-{i + 1}", self.root))
        self.generators = list(
            await asyncio.gather(*(GeneratorProcess.start() for _ in range(self._n_generators)))
        )
        rooms: list[list[Member]] = []
        case = self.case
        for r in range(case.rooms):
            link = self.workers[r % len(self.workers)][0]
            room = []
            for i in range(case.publishers + case.subscribers):
                n = len(self.members)
                kinds = list(case.kinds) if i < case.publishers else []
                gen = self.generators[n % len(self.generators)]
                member = Member(f"r{r}-m{i}", n, f"room{r}", kinds, link, gen)
                self.members.append(member)
                room.append(member)
            rooms.append(room)
            for m in room:
                self.expected |= {
                    (m.name, wire.stream_number(o.number, k))
                    for o in room
                    if o is not m
                    for k in o.kinds
                }

        async def fill(room: list[Member]) -> None:
            for member in room:
                await self.core.join(member, verify)

        await asyncio.gather(*(fill(room) for room in rooms))

    async def set_rates(self, video_rate: float) -> None:
        rates = {"video": video_rate, "audio": wire.AUDIO_RATE}
        await asyncio.gather(*(g.call("rates", rates=rates) for g in self.generators))

    async def wait_flowing(self) -> None:
        """Until every subscriber has received every stream it should (key frames came)."""
        deadline = time.monotonic() + FLOWING_TIMEOUT
        while True:
            statuses = await asyncio.gather(*(g.call("status") for g in self.generators))
            seen = {
                (name, stream)
                for s in statuses
                for name, streams in s["seen"].items()
                for stream in streams
            }
            missing = self.expected - seen
            if not missing:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(missing)} flows never started, e.g. {min(missing)}")
            await asyncio.sleep(0.2)

    async def step(self, video_rate: float, seconds: float, settle: float) -> Step:
        await self.set_rates(video_rate)
        await asyncio.sleep(settle)
        return await self.measure(video_rate, seconds)

    async def measure(
        self, video_rate: float, seconds: float, drop: dict[int, int] | None = None
    ) -> Step:
        """One window of ``seconds``; stream ``k`` of ``drop`` skips its ``drop[k]``-th packet
        after the window opens (a loss the counts must show)."""
        pids = [proc.pid for _, proc in self.workers]
        gen_pids = [g.pid for g in self.generators]
        await asyncio.gather(*(g.call("window_start", drop=drop or {}) for g in self.generators))
        stats0 = await asyncio.gather(*(link.request("stats") for link, _ in self.workers))
        cpu0 = [cpu_seconds(p) for p in pids + gen_pids]
        waited0 = sum(runqueue_seconds(p) for p in pids)
        t0 = time.monotonic()
        await asyncio.sleep(seconds)
        wall = time.monotonic() - t0
        cpu1 = [cpu_seconds(p) for p in pids + gen_pids]
        waited = sum(runqueue_seconds(p) for p in pids) - waited0
        stats1 = await asyncio.gather(*(link.request("stats") for link, _ in self.workers))
        windows = await asyncio.gather(*(g.call("window_stop") for g in self.generators))
        forwarded = sum(
            b["forwarded_packets"] - a["forwarded_packets"]
            for a, b in zip(stats0, stats1, strict=True)
        )
        used = [b - a for a, b in zip(cpu0, cpu1, strict=True)]
        worker_cpu, gen_cpu = sum(used[: len(pids)]), sum(used[len(pids) :])
        step = self._figures(video_rate, wall, forwarded, worker_cpu, gen_cpu, windows)
        step.busiest_generator_pct = 100 * max(used[len(pids) :]) / wall
        step.worker_waited_pct = 100 * waited / wall
        return step

    def _figures(
        self,
        video_rate: float,
        wall: float,
        forwarded: int,
        worker_cpu: float,
        gen_cpu: float,
        windows: list[dict[str, Any]],
    ) -> Step:
        sent: dict[int, int] = {}
        latency = wire.Histogram()
        got: dict[tuple[str, int], list[int]] = {}
        offered = delivered = 0.0  # per second, each over its generator's own window
        for w in windows:
            sent.update({int(k): v for k, v in w["sent"].items()})
            offered += sum(w["sent"].values()) * self.case.fanout / w["seconds"]
            delivered += w["received"] / w["seconds"]
            latency.merge_sparse(w["latency"])
            for name, stream, count, first, last, verified, mismatched in w["flows"]:
                got[(name, stream)] = [count, last - first + 1, verified, mismatched]
        received = expected = 0
        for key in self.expected:
            if key in got:
                received += got[key][0]
                expected += got[key][1]
            else:
                expected += sent.get(key[1], 0)
        handled = sum(sent.values()) + sum(w["received"] for w in windows)
        return Step(
            video_rate=video_rate,
            target_per_s=self.case.streams_out(video_rate),
            offered_per_s=offered,
            forwarded_per_s=forwarded / wall,
            delivered_per_s=delivered,
            loss_pct=100 * (1 - received / expected) if expected else 100.0,
            lost=expected - received,
            p50_ms=latency.percentile_ms(0.50),
            p99_ms=latency.percentile_ms(0.99),
            worker_cpu_pct=100 * worker_cpu / wall,
            worker_us_per_packet=1e6 * worker_cpu / forwarded if forwarded else 0.0,
            generator_cpu_pct=100 * gen_cpu / wall,
            generator_us_per_packet=1e6 * gen_cpu / handled if handled else 0.0,
            peak_rss_mib=max(peak_rss_kib(proc.pid) for _, proc in self.workers) / 1024,
            missing_flows=len(self.expected - got.keys()),
            lost_connections=sum(w["lost"] for w in windows),
            behind=sum(w["behind"] for w in windows),
            errors=sum(w["errors"] for w in windows),
            verified=sum(v[2] for v in got.values()),
            mismatched=sum(v[3] for v in got.values()),
        )

    async def close(self) -> None:
        await asyncio.gather(*(g.close() for g in self.generators), return_exceptions=True)
        for _, proc in self.workers:
            await stop_process(proc)
        await self.core.stop()
