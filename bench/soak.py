"""Soak: many rooms of people joining, leaving, being kicked and resuming for minutes on end,
plus rooms with media, all against one real ``conclave run`` (issue 14). Not run in CI.

    python -m bench.soak [--minutes 5] [--rooms 20] [--media-rooms 3]

The server is ``conclave run`` as a subprocess: a temporary SQLite database, one local relay
worker, its console adapter (every meeting is made with ``/meet``, kicks re-invited with
``/meet reissue``, half the meetings ended with ``/meet end``), /metrics on a loopback port.

- ``--rooms`` rooms of four signaling-only participants (a host and three guests; this
  process, ``bench/soak_peer.py``) go through ``bench/soak_room.py``'s loop until the time is
  up: bye and resume, dropped connections, the host's own drop, kicks and reissues. After every
  step each room must settle (same roster, same security code, every probe frame decrypts for
  every other member, and whoever left cannot decrypt what follows).
- ``--media-rooms`` rooms of 3, 2, 2, ... ``conclave join`` processes send test video and audio
  through the relay worker for the whole run (``bench/soak_media.py``; ``--record`` has each
  room's host record what it decrypts, for an exact check every sample, at a cost in CPU).
- Every 10 s: RSS and CPU of the core and the worker, and what /metrics shows.

At the end every meeting is ended and the server stopped with SIGTERM; then the database is
checked for rooms, invites and sessions in a wrong state (``bench/soak_db.py``). Printed:
errors (expected 0), wrong states (0), memory growth of each process over the last 3 minutes
(first vs last sample, and the max; must be under 5 %; a run shorter than 4 minutes prints it
unjudged), and PASS or FAIL. Exit code 0 on PASS. ``--keep`` keeps the database and the logs.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.soak_core import Core
from bench.soak_db import Wrong, after_end, definitions, while_running
from bench.soak_media import AUDIO_FPS, MediaRoom
from bench.soak_memory import Sampler, total
from bench.soak_room import SoakRoom
from bench.soak_tally import ErrorLogs, Tally
from bot.client.tracks import FPS as VIDEO_FPS

MEDIA_SIZES = (3, 2)  # the first media room has three participants, the others two
QUIET_S = 15.0  # for the live state to empty once every meeting has ended


def media_size(n: int) -> int:
    return MEDIA_SIZES[0] if n == 1 else MEDIA_SIZES[1]


class Soak:
    def __init__(self, args: argparse.Namespace, folder: Path) -> None:
        self.args = args
        self.folder = folder
        self.tally = Tally()
        self.core = Core(folder, self.tally)
        self.sampler = Sampler(self.core, self.tally, args.media_rooms, self._media_progress)
        self.rooms: list[SoakRoom] = []
        self.media: list[MediaRoom] = []
        self.live_wrong: list[Wrong] = []
        self.end_wrong: list[Wrong] = []
        self.counts: dict[str, int] = {}
        self.left_over: dict[str, float] = {}
        self.exit_code = 0
        self.load = (os.getloadavg(), (0.0, 0.0, 0.0))

    async def run(self) -> None:
        seconds = self.args.minutes * 60
        await self.core.start()
        print(
            f"conclave run (pid {self.core.pid}) at {self.core.url}, relay worker pid "
            f"{self.core.worker_pids()}, database {self.core.db}",
            flush=True,
        )
        try:
            async with aiohttp.ClientSession() as http:
                await self._meet(http, seconds)
        finally:
            for media in self.media:
                await media.kill()
            self.exit_code = await self.core.stop()
        self.end_wrong, self.counts = after_end(self.core.db)

    async def _meet(self, http: aiohttp.ClientSession, seconds: float) -> None:
        a = self.args
        self.media = [
            MediaRoom(n, media_size(n), self.core, self.folder, self.tally, record=a.record)
            for n in range(1, a.media_rooms + 1)
        ]
        for media in self.media:
            await media.open(duration=seconds + 900)  # the soak ends them long before
        self.rooms = [
            SoakRoom(n, self.core, http, self.tally, a.seed + n) for n in range(1, a.rooms + 1)
        ]
        await asyncio.gather(*(room.open() for room in self.rooms))
        await asyncio.gather(*(media.joined() for media in self.media))
        print(
            f"{len(self.rooms)} rooms and {len(self.media)} media rooms in session; "
            f"churning for {seconds / 60:.1f} min",
            flush=True,
        )
        self.tally.restart_clock()
        sampling = asyncio.create_task(self.sampler.run())
        until = time.monotonic() + seconds
        try:
            # The media rooms run for the whole time, also with no signaling-only rooms.
            hold = asyncio.sleep(seconds)
            await asyncio.gather(hold, *(room.churn(until) for room in self.rooms))
        finally:
            sampling.cancel()
        self.load = (self.load[0], os.getloadavg())
        await asyncio.gather(*(room.settle() for room in self.rooms if not room.broken))
        held = {r.room_id: r.holders() for r in self.rooms if not r.broken}
        removed = {pid for r in self.rooms for pid in r.removed}
        self.live_wrong = while_running(self.core.db, held, removed)
        await asyncio.gather(*(r.end(from_console=r.n % 2 == 1) for r in self.rooms))
        for media in self.media:
            await media.end()
        self.left_over = await self._live_state()

    def _media_progress(self, first: bool) -> str:
        decrypting = sum(media.progress(first) for media in self.media)
        return f"media rooms working {decrypting}/{len(self.media)}"

    async def _live_state(self) -> dict[str, float]:
        """What the server still holds in memory once every meeting has ended (all 0)."""
        names = (
            "conclave_rooms_open",
            "conclave_participants_connected",
            "conclave_relay_worker_rooms",
            "conclave_relay_worker_participants",
        )
        deadline = time.monotonic() + QUIET_S
        while True:
            metrics = await self.core.metrics()
            left = {name: total(metrics, name) for name in names}
            if not any(left.values()) or time.monotonic() > deadline:
                return left
            await asyncio.sleep(0.5)

    # --- the figures ---------------------------------------------------------------------

    def report(self) -> bool:
        a, t = self.args, self.tally
        print("\n==== soak figures ====")
        sizes = "+".join(str(media_size(n)) for n in range(1, a.media_rooms + 1)) or "none"
        print(
            f"{a.rooms} rooms x 4 signaling-only participants, {a.media_rooms} media rooms "
            f"({sizes} conclave join), {a.minutes:g} min of churn, one conclave run"
        )
        start, end = self.load
        print(
            f"machine: {os.cpu_count()} cores, load average at start {start[0]:.2f}, "
            f"at the end of the churn {end[0]:.2f} (1 min) / {end[2]:.2f} (15 min)"
        )
        steps = sum(t.actions.values())
        rate = steps / max(1, a.rooms) / a.minutes
        print(
            f"steps: {steps} ({rate:.1f} per room per minute): "
            + ", ".join(f"{k} {v}" for k, v in sorted(t.actions.items()))
        )
        if t.notes:
            print("notes (not errors): " + ", ".join(f"{k} {v}" for k, v in t.notes.items()))
        log = self.core.stderr_report()
        print(f"core+worker log: {dict(log.levels)}, tracebacks {log.tracebacks}")
        for kind, n in log.warnings.most_common(15):
            print(f"  {n:5d} x {kind}")
        if log.tracebacks:
            t.error(f"traceback: {log.tracebacks} in the core's or the worker's log")
        for kind in log.warnings:
            if not kind.startswith("WARNING"):
                t.error(f"server log: {kind}")
        if self.exit_code != 0:
            t.error(f"conclave run: exit code {self.exit_code} after SIGTERM")
        self._report_media()
        wrong = self._report_state()
        growth = self.sampler.growth()
        print("memory (VmRSS, sampled every 10 s):")
        for g in growth:
            print("  " + g.line())
        if self.sampler.samples:
            last = self.sampler.samples[-1]
            cpu = f"core {last.core_cpu_s:.1f} s, worker {last.worker_cpu_s:.1f} s"
            print(f"CPU over the churn: {cpu}")
        print(f"errors: {len(t.errors)}" + (f" {dict(t.kinds())}" if t.errors else ""))
        print(f"wrong states: {wrong}")
        flat = all(g.flat or not g.judged for g in growth)
        passed = not t.errors and not wrong and flat and bool(growth)
        print(f"RESULT: {'PASS' if passed else 'FAIL'}")
        return passed

    def _report_media(self) -> None:
        if not self.media:
            return
        print(f"media (each sender sends {VIDEO_FPS} video + {AUDIO_FPS} audio frames/s):")
        for media in self.media:
            for f in media.frames:
                print(
                    f"  {f.label:<16} decrypted {f.decrypted:7d}, dropped {f.dropped:4d}, "
                    f"refused {f.refused}, {f.per_sender_per_s:5.1f} frames/s per sender"
                )

    def _report_state(self) -> int:
        print("wrong state, as checked (each must be 0):")
        for line in definitions():
            print(f"  - {line}")
        wrong = 0
        for when, found in (("while running", self.live_wrong), ("after the end", self.end_wrong)):
            wrong += sum(len(w.rows) for w in found)
            detail = ", ".join(f"{w.check} {len(w.rows)} (e.g. {w.rows[0]})" for w in found)
            print(
                f"  {when}: {sum(len(w.rows) for w in found)}" + (f": {detail}" if detail else "")
            )
        print(f"  records: {self.counts}")
        left = {k: v for k, v in self.left_over.items() if v}
        print(
            f"  in memory after every meeting ended (rooms, connections, relay rooms and "
            f"participants): {left or 'none'}"
        )
        return wrong + len(left)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=5.0, help="how long the churn lasts")
    p.add_argument("--rooms", type=int, default=20, help="signaling-only rooms of four")
    p.add_argument("--media-rooms", type=int, default=3, help="rooms of conclave join processes")
    p.add_argument("--seed", type=int, default=14, help="for the random choice of steps")
    p.add_argument(
        "--record",
        action="store_true",
        help="each media room's host records what it decrypts, checked every sample (costs CPU)",
    )
    p.add_argument("--keep", action="store_true", help="keep the folder with the database and logs")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="conclave-soak-"))
    soak = Soak(args, folder)
    logging.getLogger("bot").addHandler(ErrorLogs(soak.tally))
    passed = False
    try:
        asyncio.run(soak.run())
        passed = soak.report()
    finally:
        if args.keep:
            print(f"database and logs kept in {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
