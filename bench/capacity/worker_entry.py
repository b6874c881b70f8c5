"""Run one relay worker from a given source tree (the current one, or a baseline worktree).

    python bench/capacity/worker_entry.py CORE_URL WORKER_ID ROOT

``ROOT`` must come first on ``PYTHONPATH`` (the bench sets it, and the working directory);
this checks that ``bot`` was imported from there, so a baseline run cannot silently measure
the current tree. The secret comes from ``CONCLAVE_RELAY_SECRET``. Only APIs that are the
same at the baseline are used: ``run_worker`` and ``RelaySettings``. The per-participant packet
limit is raised out of the way (the fan-out case's one publisher sends far more than a camera).

With ``BENCH_WORKER_GC=1`` in its environment the worker prints, when it exits, how long its
garbage collections paused it, per generation (a pause holds every packet in the queues), and
the kinds of object the collector tracks most of.
A build that has ``bot.relay.worker.freeze_startup_heap`` gets it called, as ``conclave relay``
does. Two more settings are for measuring what they would be worth, not what the worker does:
``BENCH_WORKER_GC_FREEZE`` (``1``: ``gc.freeze()`` once everything is imported, so full
collections skip the start-up objects, in a build without it too; a number: that, and that
generation-0 threshold) and ``BENCH_WORKER_UVLOOP=1`` (uvloop's event loop; uvloop is not a
dependency of Conclave).
"""

from __future__ import annotations

import asyncio
import atexit
import gc
import logging
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

MAX_PACKET_RATE = 1_000_000
GC_ENV = "BENCH_WORKER_GC"
GC_FREEZE_ENV = "BENCH_WORKER_GC_FREEZE"
UVLOOP_ENV = "BENCH_WORKER_UVLOOP"


def report_gc_pauses() -> None:
    """At exit, print each generation's collections: count, longest and total pause."""
    pauses: dict[int, list[float]] = {}
    started = [0.0]

    def timed(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            elapsed = (time.perf_counter() - started[0]) * 1000
            pauses.setdefault(info["generation"], []).append(elapsed)

    def report() -> None:
        tracked = gc.get_objects()
        for generation, times in sorted(pauses.items()):
            print(
                f"worker {os.getpid()} GC generation {generation}: {len(times)} collections, "
                f"longest {max(times):.1f} ms, {sum(times):.0f} ms in all "
                f"({len(tracked)} objects tracked at exit)",
                file=sys.stderr,
            )
        # What a full collection walks: the kinds of object there are most of.
        kinds = Counter(type(o).__qualname__ for o in tracked).most_common(6)
        print(f"worker {os.getpid()} most tracked: {kinds}", file=sys.stderr)

    gc.callbacks.append(timed)
    atexit.register(report)


def main(core_url: str, worker_id: str, root: str) -> None:
    import bot
    import bot.relay.worker
    from bot.config import RelaySettings
    from bot.relay.worker import run_worker
    from bot.secret import Secret

    where = Path(str(bot.__file__)).resolve()
    if not where.is_relative_to(Path(root).resolve()):
        sys.exit(f"bot was imported from {where}, not from {root}")
    logging.basicConfig(level=logging.WARNING)
    if os.environ.get(GC_ENV):
        report_gc_pauses()
    # As ``conclave relay`` does, in a build that has it.
    freeze_startup_heap = getattr(bot.relay.worker, "freeze_startup_heap", None)
    if freeze_startup_heap is not None:
        freeze_startup_heap()
    if freeze := os.environ.get(GC_FREEZE_ENV):
        gc.collect()
        gc.freeze()
        if freeze != "1":
            gc.set_threshold(int(freeze), *gc.get_threshold()[1:])

    async def serve() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        settings = RelaySettings(
            secret=Secret(os.environ["CONCLAVE_RELAY_SECRET"]),
            host_addresses=("127.0.0.1",),
            max_packet_rate=MAX_PACKET_RATE,
        )
        await run_worker(core_url, worker_id, settings, stop=stop)

    if os.environ.get(UVLOOP_ENV):
        import uvloop  # measurement only: not a dependency of the worker

        uvloop.run(serve())
    else:
        asyncio.run(serve())


if __name__ == "__main__":
    main(*sys.argv[1:4])
