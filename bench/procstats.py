"""What the benches measure about processes: percentiles, peak memory, a clean stop."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank value at ``fraction`` (0.99 for p99); 0.0 for no values."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def peak_rss_kib(pid: int) -> int:
    """The process's peak resident memory (VmHWM), in KiB; -1 if /proc does not say."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return -1


async def stop_process(proc: asyncio.subprocess.Process, grace: float = 10.0) -> None:
    """SIGTERM, and SIGKILL if it has not exited within ``grace`` seconds."""
    proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), grace)
    except TimeoutError:
        proc.kill()
        await proc.wait()
