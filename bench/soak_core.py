"""The soak's one ``conclave run``: a temporary database, one local relay worker, /metrics on
its own loopback port, driven through its console as an operator would be.

Each console command is followed by a line that is not a command; the console answers that
with a fixed hint, which marks where the command's own output ends (the console handles its
lines one at a time, in order).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import socket
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from bench.soak_tally import Tally
from tests.support.proc import GREETING, conclave_env

START_S = 60.0  # importing aiortc on a busy machine takes a while
COMMAND_S = 30.0
STOP_S = 30.0
MARKER = "soak: end of command"
HINT = "Commands start with /meet (try /meet help)."
DM = re.compile(r"^DM to @(?P<who>\S+): (?P<link>\S+)$")
# A log line: "2026-01-01 10:00:00,123 WARNING bot.x: message".
LOG_LINE = re.compile(r"^(?P<at>\S+ \S+) (?P<level>[A-Z]+) +(?P<logger>\S+): (?P<message>.*)$")
# Ids and numbers vary from line to line; without them, lines of one kind group together.
VARYING = re.compile(r"\b[A-Za-z0-9_-]*\d[A-Za-z0-9_.-]*\b")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Reply:
    """What the console printed for one command."""

    lines: list[str]

    def dms(self) -> dict[str, str]:
        """The links it sent, by the user they went to."""
        found = (DM.match(line) for line in self.lines)
        return {m["who"]: m["link"] for m in found if m is not None}


@dataclass(frozen=True)
class StderrReport:
    tracebacks: int
    levels: Counter[str]
    # Each kind of WARNING+ line (ids and numbers blanked, "(at shutdown)" once SIGTERM was
    # sent), how often.
    warnings: Counter[str]


class Core:
    def __init__(self, folder: Path, tally: Tally) -> None:
        self.folder = folder
        self.db = folder / "soak.db"
        self.stderr_path = folder / "core.stderr"
        self.metrics_port = free_port()
        self._tally = tally
        self._proc: asyncio.subprocess.Process | None = None
        self._lines: asyncio.Queue[str | None] = asyncio.Queue()
        self._lock = asyncio.Lock()
        self._pump: asyncio.Task[None] | None = None
        self.url = ""
        self.stopped_at = float("inf")  # when SIGTERM was sent (wall clock, as the log has it)

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    async def start(self) -> None:
        env = conclave_env(
            0,
            self.db,
            CONCLAVE_RELAY_WORKERS="1",
            CONCLAVE_METRICS_LISTEN=f"127.0.0.1:{self.metrics_port}",
            # 80 clients share one address here; on the internet each person has their own.
            CONCLAVE_SIGNALING_UNAUTHENTICATED_PER_ADDRESS="400",
        )
        with self.stderr_path.open("w", encoding="utf-8") as stderr:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                "run",
                cwd=self.folder,
                env=env,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
            )
        assert self._proc.stdout is not None
        line = await asyncio.wait_for(self._proc.stdout.readline(), START_S)
        match = GREETING.match(line.decode().rstrip("\n"))
        if match is None:
            raise RuntimeError(f"conclave run did not greet: {line!r}")
        self.url = match["url"]
        self._pump = asyncio.create_task(self._read(self._proc.stdout))
        await self._until_healthy()

    async def _read(self, stdout: asyncio.StreamReader) -> None:
        while line := await stdout.readline():
            text = line.decode(errors="replace").rstrip("\n")
            if text.startswith("Notice to @"):
                # Only a link presented twice makes one, and the soak never does that.
                self._tally.error(f"unexpected host notice: {text}")
            else:
                await self._lines.put(text)
        await self._lines.put(None)

    async def _until_healthy(self) -> None:
        """/healthz says ok once the relay worker is ready and the database writable."""
        async with aiohttp.ClientSession() as http:
            for _ in range(int(START_S * 4)):
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{self.url}/healthz") as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.25)
        raise RuntimeError("conclave run did not become healthy (no relay worker ready?)")

    async def command(self, text: str) -> Reply:
        """Type ``text`` at the console; what it printed in answer."""
        assert self._proc is not None and self._proc.stdin is not None
        async with self._lock:
            self._proc.stdin.write(f"{text}\n{MARKER}\n".encode())
            await self._proc.stdin.drain()
            lines: list[str] = []
            while True:
                line = await asyncio.wait_for(self._lines.get(), COMMAND_S)
                if line is None:
                    raise RuntimeError("conclave run closed its output")
                if line == HINT:
                    return Reply(lines)
                lines.append(line)

    def worker_pids(self) -> list[int]:
        """The core's child processes that are relay workers."""
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == self.pid:
                    cmdline = (stat.parent / "cmdline").read_bytes().split(b"\0")
                    if b"relay" in cmdline:
                        pids.append(int(stat.parent.name))
        return sorted(pids)

    async def metrics(self) -> dict[str, float]:
        """/metrics as ``name{label=value,...}`` -> value."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            text = await response.text()
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                out[f"{sample.name}{{{labels}}}"] = sample.value
        return out

    async def stop(self) -> int:
        """SIGTERM, as a service manager stops it; its exit code (SIGKILL after STOP_S)."""
        assert self._proc is not None
        if self._proc.returncode is None:
            self.stopped_at = time.time()
            self._proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(self._proc.wait(), STOP_S)
        except TimeoutError:
            self._proc.kill()
            await self._proc.wait()
            self._tally.error(f"conclave run: still running {STOP_S:.0f} s after SIGTERM")
            code = -9
        if self._pump is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._pump, 5.0)
        return code

    def stderr_report(self) -> StderrReport:
        """The core's and its worker's log (the worker writes to the core's stderr)."""
        levels: Counter[str] = Counter()
        warnings: Counter[str] = Counter()
        tracebacks = 0
        for line in self.stderr_path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("Traceback"):
                tracebacks += 1
            match = LOG_LINE.match(line)
            if match is None:
                continue
            levels[match["level"]] += 1
            if match["level"] in ("WARNING", "ERROR", "CRITICAL"):
                kind = VARYING.sub("#", match["message"])
                when = datetime.strptime(match["at"], "%Y-%m-%d %H:%M:%S,%f").timestamp()
                late = " (at shutdown)" if when >= self.stopped_at else ""
                warnings[f"{match['level']} {match['logger']}: {kind}{late}"] += 1
        return StderrReport(tracebacks, levels, warnings)


def rss_kib(pid: int) -> int:
    """Resident memory (VmRSS) in KiB; -1 once the process is gone."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1
