"""How many packets a second relay workers forward before loss or latency gives way.

    python bench/relay_capacity.py --quick                  # ~2-4 min: 1x9 and the meeting
    python bench/relay_capacity.py                          # every case, longer steps
    python bench/relay_capacity.py --workers 2 --cases rooms3,rooms20 --no-baseline

The bench plays the core (``bench/capacity/core.py``): worker processes dial its control
websocket, and participants live in separate generator processes (``bench/capacity/
generator.py``). Each participant negotiates with aiortc as a real client does (SDP through the
control channel, ICE, DTLS), then sends and receives SRTP itself on the same socket with the
keys DTLS gave it, so a packet costs the generator a few microseconds, not aiortc's path.

For each case the publishers' video rate is stepped up (the forwarded rate it asks for grows
by ``--factor`` per step, from ``--start``) until loss passes ``--max-loss`` %, or the worker
forwards less than 95 % of what the publishers offer, or the median latency passes the p99
limit (its queues grow: loss to come). "max" is the fastest step before that; "held" the
fastest that also kept latency p99 within ``--max-p99`` ms. The climb goes on past a p99
failure, because on a shared machine scheduling delays and the worker's garbage collections
(a full one stops it for 50-150 ms every ten seconds or so; ``--gc-report`` prints them) can
put a short window's p99 over 20 ms at any rate. A failing window is measured once more, and
the step fails only if that one fails too. Before the first step, and before the step that
refines the limit, the bench waits until the worker has worked off its backlog (what it
cannot handle at once waits in its sockets' buffers, so overload shows as latency first).

Figures per step: forwarded packets a second (the worker's own count), worker CPU (from
/proc/PID/stat) per forwarded packet, p50/p99 latency from the publisher's send to the
packet's arrival at the subscriber's socket (the kernel's timestamp, so the generator's own
delays in reading are left out; the publisher's SRTP and two loopback hops are in, so it is an
upper bound on what the relay adds), loss, the worker's peak RSS, and the generators' CPU with
offered vs. forwarded rate, to show they were not the bottleneck. Each step also shows how long
the worker waited, runnable, for a CPU (/proc/PID/schedstat): when a step fails with a large
wait, the machine's other work limited it, not the worker, and its CPU per packet is the figure
to go by (one core forwards about 1,000,000 / us-per-packet packets a second).

The same cases run against ``--baseline`` (a commit, checked out in a temporary git worktree
that is removed at the end) in the same run, and the summary gives current/baseline ratios.
The per-participant packet limit (``relay.max_packet_rate``) is raised out of the way in both.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

# Run as a script from anywhere: make the repository root importable.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.capacity.core import REPO
from bench.capacity.session import Case, Session, Step
from bench.capacity.worker_entry import GC_ENV, GC_FREEZE_ENV, UVLOOP_ENV

CASES = {
    c.key: c
    for c in (
        Case("fanout", "1 publisher x 9 subscribers, video", 1, 1, 9, ("video",)),
        Case("rooms3", "3 rooms x 3, audio+video", 3, 3, 0, ("video", "audio")),
        Case("meeting10", "10-person meeting, audio+video", 1, 10, 0, ("video", "audio")),
        Case("rooms20", "20 rooms x 3, audio+video", 20, 3, 0, ("video", "audio")),
    )
}
QUICK_CASES = "fanout,meeting10"
DEFAULT_BASELINE = "7e472fe"  # main before the relay's fast path (bot/rtc/internals/fastpath)
SETUP_VIDEO_RATE = 20.0  # while everyone joins: enough for key frames to flow
CATCH_UP_SECONDS = 20  # in windows of a second
# Forwarding less than the first share of what the publishers offered, a worker falls
# behind; more than the second, it works off an earlier backlog: either way not steady.
KEEPING_UP = (0.95, 1.05)
THROUGHPUT = ("loss", "backlog")  # what ends a climb, and may be refined
# A worker runnable but without a CPU this much of a window was limited by the machine.
BUSY_WAIT_PCT = 15.0


async def catch_up(session: Session, rate: float, args: argparse.Namespace) -> None:
    """Until the worker has caught up (at most ``CATCH_UP_SECONDS``): what it could not handle
    at once, during the joins or a failed step, waits in its sockets' buffers, and the first
    seconds after show that backlog (a median latency in the hundreds of ms), not the rate."""
    waited = 0
    while waited < CATCH_UP_SECONDS:
        step = await session.measure(rate, 1.0)
        waited += 1
        if (why := verdict(step, args)) in ("", "p99"):
            return
        if step.lost_connections:
            break
    print(
        f"  (catching up: still {why} after {waited} s; p50 {step.p50_ms:.0f} ms, "
        f"loss {step.loss_pct:.1f}%)",
        flush=True,
    )


@dataclass
class Climb:
    """One case on one build: every step, the best ones, and what stopped the climb."""

    build: str
    steps: list[Step] = field(default_factory=list)
    held: Step | None = None  # the fastest step within both the loss and the p99 limit
    top: Step | None = None  # the fastest step that kept up, within the loss limit
    limit: str = ""

    def top_at(self, video_rate: float) -> Step | None:
        return next((s for s in self.steps if s.video_rate == video_rate and s.delivers), None)


def verdict(step: Step, args: argparse.Namespace) -> str:
    """Empty when the step held; else what gave way."""
    if step.offered_per_s < 0.9 * step.target_per_s:
        # the generators fell behind their schedule: busy, or starved of a CPU
        return "offered < 90% of target"
    if step.lost_connections:
        return f"{step.lost_connections} connections lost"
    if step.missing_flows:
        return f"{step.missing_flows} flows stopped"
    if step.loss_pct > args.max_loss:
        return "loss"
    if (
        not KEEPING_UP[0] <= step.forwarded_per_s / max(step.offered_per_s, 1.0) <= KEEPING_UP[1]
        or step.p50_ms > args.max_p99
    ):
        # Nothing lost (yet), but the worker's queues grow, or a backlog still drains.
        return "backlog"
    if step.p99_ms > args.max_p99:
        return "p99"
    return ""


def step_line(case: Case, build: str, n: int, s: Step, why: str) -> str:
    return (
        f"  {case.key:9s} {build:8s} #{n:<2d} video {s.video_rate:6.0f}/s  "
        f"target {s.target_per_s:7.0f}  offered {s.offered_per_s:7.0f}  "
        f"fwd {s.forwarded_per_s:7.0f}  got {s.delivered_per_s:7.0f}  "
        f"loss {s.loss_pct:6.2f}%  p50 {s.p50_ms:6.2f}  p99 {s.p99_ms:6.2f} ms  "
        f"worker {s.worker_cpu_pct:4.0f}% {s.worker_us_per_packet:5.1f} us/pkt "
        f"(waited {s.worker_waited_pct:3.0f}%)  "
        f"gen {s.generator_cpu_pct:4.0f}% (busiest {s.busiest_generator_pct:3.0f}%) "
        f"{s.generator_us_per_packet:4.1f} us/pkt  "
        f"{'held' if not why else 'FAILED: ' + why}"
        + (f"  (mismatched payloads: {s.mismatched})" if s.mismatched else "")
    )


async def climb(case: Case, build: str, root: Path, args: argparse.Namespace) -> Climb:
    """Step the rate up while loss stays within its limit; p99 failures are noted, not final
    (on a shared machine scheduling delays alone can pass 20 ms, and the rate loss allows is
    the figure the worker's CPU cost decides)."""
    result = Climb(build)
    session = Session(case, root, args.workers, args.generators)
    try:
        await session.open()
        await session.set_rates(SETUP_VIDEO_RATE)
        await session.wait_flowing()
        target = args.start  # forwarded packets a second asked for
        rate = case.video_rate_for(target)
        await session.set_rates(rate)
        await catch_up(session, rate, args)
        failed: float | None = None
        for n in range(1, args.max_steps + 1):
            step = await session.step(rate, args.seconds, args.settle)
            why = verdict(step, args)
            if why in ("loss", "backlog", "p99") and args.confirm:
                # One window may hold a garbage collection of the worker's (tens of ms, every
                # ten or more seconds): a step fails when a second window fails too.
                print(step_line(case, build, n, step, why) + "; measuring again", flush=True)
                step = await session.measure(rate, args.seconds)
                why = verdict(step, args)
            step.held, step.delivers = not why, why in ("", "p99")
            result.steps.append(step)
            print(step_line(case, build, n, step, why), flush=True)
            if step.held and (result.held is None or step.video_rate > result.held.video_rate):
                result.held = step
            if step.delivers:
                if result.top is None or step.video_rate > result.top.video_rate:
                    result.top = step
                if failed is not None:
                    break  # the refinement step held
                while case.video_rate_for(target) <= rate:  # below the audio alone, at first
                    target *= args.factor
                rate = case.video_rate_for(target)
                continue
            result.limit = why
            if failed is not None or not args.refine or not result.top or why not in THROUGHPUT:
                break
            failed, rate = rate, (rate * result.top.video_rate) ** 0.5
            await session.set_rates(rate)
            await catch_up(session, rate, args)  # the failed step's backlog must go first
        else:
            result.limit = "max steps"
    finally:
        await session.close()
    return result


@contextlib.contextmanager
def worktree(ref: str) -> Iterator[Path]:
    """A temporary detached git worktree of ``ref``, removed afterwards."""
    parent = Path(tempfile.mkdtemp(prefix="conclave-baseline-"))
    path = parent / "tree"
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), ref],
        check=True,
        capture_output=True,
    )
    try:
        yield path
    finally:
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(parent, ignore_errors=True)


def describe(ref: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(REPO), "log", "-1", "--format=%h %s", ref],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()[:72]


def summary(results: list[tuple[Case, list[Climb]]]) -> str:
    """Per case and build: the fastest step within both limits ("held"), the fastest that
    kept up within the loss limit ("max") and that step's figures, and current/baseline
    ratios. A build that kept up at no step shows its first (slowest) step's figures."""
    head = (
        f"{'case':44s} {'build':8s} {'held fwd/s':>10s} {'max fwd/s':>9s} {'us/pkt':>7s} "
        f"{'p50 ms':>7s} {'p99 ms':>7s} {'loss %':>7s} {'RSS MiB':>8s} {'worker':>7s} "
        f"{'waited':>7s} {'gen CPU':>8s} {'offered/s':>10s} {'delivered':>10s}  stopped by"
    )
    rows = [head, "-" * len(head)]
    for case, climbs in results:
        label = case.label
        for c in climbs:
            s = c.top or (c.steps[0] if c.steps else None)
            if s is None:
                rows.append(f"{label:44s} {c.build:8s} {'-':>10s}  (no step ran)")
                label = ""
                continue
            held = f"{c.held.forwarded_per_s:10.0f}" if c.held else f"{'-':>10s}"
            top = f"{c.top.forwarded_per_s:9.0f}" if c.top else f"{'-':>9s}"
            note = c.limit + ("" if c.top else "; first step shown")
            failed = c.steps[-1] if c.steps and not c.steps[-1].delivers else None
            if failed is not None and failed.worker_waited_pct > BUSY_WAIT_PCT:
                note += f" (the worker waited {failed.worker_waited_pct:.0f}% for a CPU)"
            rows.append(
                f"{label:44s} {c.build:8s} {held} {top} "
                f"{s.worker_us_per_packet:7.1f} {s.p50_ms:7.2f} {s.p99_ms:7.2f} "
                f"{s.loss_pct:7.3f} {s.peak_rss_mib:8.0f} {s.worker_cpu_pct:6.0f}% "
                f"{s.worker_waited_pct:6.0f}% {s.generator_cpu_pct:7.0f}% "
                f"{s.offered_per_s:10.0f} {s.delivered_per_s:10.0f}  {note}"
            )
            label = ""
        if len(climbs) == 2:
            rows.append(ratio_row(*climbs))
    return "\n".join(rows)


def ratio_row(a: Climb, b: Climb) -> str:
    """Capacity: held over held, max over max. Cost and latency: at the highest rate both kept
    loss within the limit, or else at the first step (the same rate for both), so the same
    work is compared."""

    def ratio(x: Step | None, y: Step | None, width: int) -> str:
        if x is None or y is None or not y.forwarded_per_s:
            return f"{'-':>{width}s}"
        return f"{x.forwarded_per_s / y.forwarded_per_s:{width}.2f}"

    def per(x: float, y: float, width: int) -> str:
        return f"{x / y:{width}.2f}" if y else f"{'-':>{width}s}"

    common = [(x, y) for x in a.steps if x.delivers and (y := b.top_at(x.video_rate))]
    if common:
        x, y = max(common, key=lambda pair: pair[0].video_rate)
        where = f"cost and latency at {x.target_per_s:.0f}/s, the highest rate both kept"
    elif a.steps and b.steps:
        x, y = a.steps[0], b.steps[0]
        where = f"cost and latency at {x.target_per_s:.0f}/s, the first step"
    else:
        return f"{'':44s} {'ratio':8s} {ratio(a.held, b.held, 10)} {ratio(a.top, b.top, 9)}"
    return (
        f"{'':44s} {'ratio':8s} {ratio(a.held, b.held, 10)} {ratio(a.top, b.top, 9)} "
        f"{per(x.worker_us_per_packet, y.worker_us_per_packet, 7)} "
        f"{per(x.p50_ms, y.p50_ms, 7)} {per(x.p99_ms, y.p99_ms, 7)} "
        f"{'':7s} {per(x.peak_rss_mib, y.peak_rss_mib, 8)} "
        f"{per(x.worker_cpu_pct, y.worker_cpu_pct, 7)}  ({where})"
    )


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} cores"


async def run(args: argparse.Namespace) -> None:
    keys = [k.strip() for k in args.cases.split(",") if k.strip()]
    unknown = [k for k in keys if k not in CASES]
    if unknown:
        sys.exit(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    with contextlib.ExitStack() as stack:
        if args.current:
            print(f"current:  {describe(args.current)} (temporary worktree)")
            builds = [("current", stack.enter_context(worktree(args.current)))]
        else:
            print(f"current:  {REPO} at {describe('HEAD')} (working tree, as it is now)")
            builds = [("current", REPO)]
        if args.baseline:
            print(f"baseline: {describe(args.baseline)} (temporary worktree)")
            builds.append(("baseline", stack.enter_context(worktree(args.baseline))))
        print(
            f"{args.workers} worker(s), {args.generators} generator process(es), "
            f"{args.seconds:g} s per step after {args.settle:g} s to settle; "
            f"held = loss <= {args.max_loss}% and p99 <= {args.max_p99} ms"
            + (f"; workers: gc.freeze() ({args.gc_freeze})" if args.gc_freeze else "")
            + ("; workers on uvloop" if args.uvloop else "")
        )
        results: list[tuple[Case, list[Climb]]] = []
        for key in keys:
            case = CASES[key]
            if case.rooms < args.workers:  # one room per worker at least, to load them all
                case = case.with_rooms(args.workers)
            print(f"{case.label} ({load_average()})", flush=True)
            results.append((case, [await climb(case, b, root, args) for b, root in builds]))
    print()
    print(summary(results))


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help=f"cases {QUICK_CASES}, short steps")
    p.add_argument("--cases", help=f"comma-separated, of {', '.join(CASES)} (default: all)")
    p.add_argument("--seconds", type=float, help="measured seconds per step (4; quick: 2)")
    p.add_argument("--settle", type=float, help="seconds after a rate change (1.5; quick: 1)")
    p.add_argument("--start", type=float, default=4000, help="forwarded/s of the first step")
    p.add_argument("--factor", type=float, help="rate growth per step (1.35; quick: 1.6)")
    p.add_argument("--max-steps", type=int, default=12)
    p.add_argument("--no-refine", dest="refine", action="store_false", default=None)
    p.add_argument(
        "--no-confirm",
        dest="confirm",
        action="store_false",
        help="a step fails on its first failing window (default: on two in a row)",
    )
    p.add_argument("--max-loss", type=float, default=0.5, help="percent")
    p.add_argument("--max-p99", type=float, default=20.0, help="milliseconds")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--generators", type=int, default=2)
    p.add_argument("--gc-report", action="store_true", help="workers print their GC pauses")
    p.add_argument(
        "--gc-freeze",
        nargs="?",
        const="1",
        default="",
        metavar="THRESHOLD",
        help="workers (of every build) call gc.freeze() once started, with this gen-0 threshold",
    )
    p.add_argument(
        "--uvloop", action="store_true", help="workers (of every build) run on uvloop's loop"
    )
    p.add_argument("--current", default="", help="a commit to measure (default: the work tree)")
    p.add_argument("--baseline", default=DEFAULT_BASELINE, help="commit to compare with")
    p.add_argument("--no-baseline", dest="baseline", action="store_const", const="")
    args = p.parse_args(argv)
    if args.gc_report:
        os.environ[GC_ENV] = "1"  # the worker processes inherit it
    if args.gc_freeze:
        os.environ[GC_FREEZE_ENV] = args.gc_freeze
    if args.uvloop:
        os.environ[UVLOOP_ENV] = "1"
    quick = args.quick
    args.cases = args.cases or (QUICK_CASES if quick else ",".join(CASES))
    args.seconds = args.seconds or (2.0 if quick else 4.0)
    args.settle = args.settle if args.settle is not None else (1.0 if quick else 1.5)
    args.factor = args.factor or (1.6 if quick else 1.35)
    args.refine = (not quick) if args.refine is None else args.refine
    return args


if __name__ == "__main__":
    asyncio.run(run(parse(sys.argv[1:])))
