"""Every 10 s: the resident memory (VmRSS) and CPU time of the core and its relay worker, and
what /metrics says about rooms, connections and relay traffic; one printed line per sample.

Memory must be flat once the soak is under way: over the last WINDOW_S of the run, the last
sample may be at most GROWTH_LIMIT above the first, for each process. A run too short to leave
WARMUP_S before that window (a quick check) prints the figures without judging them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench.soak_core import Core, rss_kib
from bench.soak_tally import Tally

PERIOD_S = 10.0
WINDOW_S = 180.0
WARMUP_S = 60.0
GROWTH_LIMIT = 0.05


@dataclass(frozen=True)
class Sample:
    at: float  # seconds since the churn started
    core_kib: int
    worker_kib: int
    core_cpu_s: float
    worker_cpu_s: float


@dataclass(frozen=True)
class Growth:
    process: str
    since: float  # the window's first sample, seconds into the run
    first_kib: int
    last_kib: int
    max_kib: int
    judged: bool  # whether the run was long enough for the window to follow a warm-up

    @property
    def share(self) -> float:
        if self.first_kib <= 0 or self.last_kib <= 0:
            return float("inf")  # the process was not there to sample
        return (self.last_kib - self.first_kib) / self.first_kib

    @property
    def flat(self) -> bool:
        return self.share < GROWTH_LIMIT

    def line(self) -> str:
        verdict = "PASS" if self.flat else "FAIL"
        if not self.judged:
            verdict = f"(not judged: the run is shorter than {(WARMUP_S + WINDOW_S) / 60:.0f} min)"
        return (
            f"{self.process:<6} RSS from {self.since:3.0f} s: first {mib(self.first_kib)}, "
            f"last {mib(self.last_kib)}, max {mib(self.max_kib)}: growth {self.share:+.1%} "
            f"(limit < {GROWTH_LIMIT:.0%}) {verdict}"
        )


def mib(kib: int) -> str:
    return f"{kib / 1024:6.1f} MiB"


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used; 0.0 once it is gone."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


def total(metrics: dict[str, float], name: str) -> float:
    """The sum of a metric's samples over all its labels (counters end in ``_total``)."""
    names = (name, f"{name}_total")
    return sum(v for k, v in metrics.items() if k.split("{", 1)[0] in names)


class Sampler:
    def __init__(
        self, core: Core, tally: Tally, media_rooms: int, watch: Callable[[bool], str]
    ) -> None:
        """``watch`` looks at the media rooms (True: the first look) and says how they do."""
        self._core = core
        self._tally = tally
        self._media = media_rooms
        self._watch = watch
        self.samples: list[Sample] = []
        self._workers: list[int] = []
        self._forwarded: float | None = None
        self._started = 0.0

    async def run(self) -> None:
        """Sample now and every PERIOD_S until cancelled."""
        loop = asyncio.get_running_loop()
        self._started = loop.time()
        while True:
            await self._take(loop.time() - self._started)
            next_at = self._started + (len(self.samples)) * PERIOD_S
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    async def _take(self, at: float) -> None:
        workers = self._core.worker_pids()
        if self._workers and workers != self._workers:
            self._tally.error(f"relay worker changed: {self._workers} -> {workers}")
        self._workers = workers
        worker = workers[0] if workers else 0
        sample = Sample(
            at,
            rss_kib(self._core.pid),
            rss_kib(worker) if worker else -1,
            cpu_seconds(self._core.pid),
            cpu_seconds(worker) if worker else 0.0,
        )
        self.samples.append(sample)
        try:
            m = await self._core.metrics()
        except (aiohttp.ClientError, OSError) as exc:
            self._tally.error(f"metrics unreadable: {exc!r}")
            m = {}
        forwarded = total(m, "conclave_relay_forwarded_packets")
        delta = None if self._forwarded is None else forwarded - self._forwarded
        self._forwarded = forwarded
        if delta == 0 and self._media:
            self._tally.error(f"media stalled: the relay forwarded nothing in {PERIOD_S:.0f} s")
        media = self._watch(not self.samples[:-1])
        admitted = m.get("conclave_participants_connected{state=admitted}", 0)
        print(
            f"[{at:5.0f} s] core RSS {mib(sample.core_kib)} CPU {sample.core_cpu_s:6.1f} s | "
            f"worker RSS {mib(sample.worker_kib)} CPU {sample.worker_cpu_s:6.1f} s | "
            f"rooms {total(m, 'conclave_rooms_open'):.0f}, connected {admitted:.0f}, "
            f"relay participants {total(m, 'conclave_relay_worker_participants'):.0f}, "
            f"forwarded {'-' if delta is None else f'{delta:.0f}'} packets, {media} | "
            f"steps {sum(self._tally.actions.values())}, errors {len(self._tally.errors)}",
            flush=True,
        )

    def growth(self) -> list[Growth]:
        """Each process's memory over the last WINDOW_S of the samples."""
        if not self.samples:
            return []
        since = self.samples[-1].at - WINDOW_S
        judged = since >= WARMUP_S - 1.0
        window = [s for s in self.samples if s.at >= since - 1.0]
        out = []
        for name, kib in (
            ("core", [s.core_kib for s in window]),
            ("worker", [s.worker_kib for s in window]),
        ):
            out.append(Growth(name, window[0].at, kib[0], kib[-1], max(kib), judged))
        return out
