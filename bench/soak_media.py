"""The soak's rooms with media: ``conclave join`` processes sending their test video and tone
through the relay worker, each decrypting the others' frames for the whole run.

That they keep working is watched while they run (``progress``, each sample):

- by default, each join's CPU time must grow by BUSY_S a sample: encoding its own video and
  decoding the others' keeps it busy, and one whose media connection died idles (a proxy);
- with ``record``, each room's host also records what it receives (``--record``): an audio
  file grows only by frames that decrypted, so each other participant's file must have grown.
  Exact, but the recording client re-encodes video in its event loop, which costs CPU.

A join prints how many frames it decrypted and dropped when it leaves, which it does when the
soak ends its meeting: frames refused as someone else's are errors, and so is a rate below
MIN_RATE_SHARE of what the senders send (decrypting stopped for much of the run); frames
dropped are counted (a frame that arrives before its sender's key does is dropped, which a
loaded machine makes more likely while a room is starting). Lines saying the connection was
lost or the relay restarted, a warning, or a non-zero exit are errors. A line saying the
join's own media connection was lost is a note, not an error: the worker saw that connection
die and the join negotiated a new one; whether its media came back is what the samples judge.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.soak_core import Core
from bench.soak_memory import cpu_seconds
from bench.soak_room import room_of
from bench.soak_tally import Tally
from bot.client.tracks import FPS as VIDEO_FPS
from tests.support.proc import clean_env

AUDIO_FPS = 50  # 20 ms Opus frames
NOMINAL_FPS = VIDEO_FPS + AUDIO_FPS
# A receiver that decrypted less than this share of what its senders sent stopped for much of
# the run (a loaded machine sends and decodes less, but not this much less).
MIN_RATE_SHARE = 0.25
BUSY_S = 0.2  # CPU seconds a working join uses in a sample at the least; a dead one idles
JOIN_S = 90.0  # several aiortc processes starting on a busy machine
LEAVE_S = 60.0
FRAMES = re.compile(
    r"frames decrypted: (?P<ok>\d+), dropped \(failed to decrypt\): (?P<dropped>\d+), "
    r"refused \(not from the participant shown\): (?P<refused>\d+)"
)
TROUBLE = ("connection lost", "warning:", "media relay restarted", "no media relay")
OWN_CONNECTION_LOST = "media connection was lost"  # the hub's media_lost, for this join only


@dataclass
class Joined:
    label: str
    proc: asyncio.subprocess.Process
    stderr: Path
    lines: list[str] = field(default_factory=list)
    joined: asyncio.Event = field(default_factory=asyncio.Event)
    reader: asyncio.Task[None] | None = None
    cpu_s: float = 0.0  # at the last look


@dataclass(frozen=True)
class Frames:
    label: str
    decrypted: int
    dropped: int
    refused: int
    per_sender_per_s: float


class MediaRoom:
    def __init__(
        self, n: int, size: int, core: Core, folder: Path, tally: Tally, *, record: bool
    ) -> None:
        self.n = n
        self.size = size
        self.record = record
        self.room_id = ""
        self._core = core
        self._folder = folder
        self._tally = tally
        self._joins: list[Joined] = []
        self._all_in = 0.0
        self._recorded: dict[str, int] = {}  # audio file -> its size at the last look
        self.frames: list[Frames] = []

    @property
    def _record_dir(self) -> Path:
        return self._folder / f"media{self.n}-received"

    async def open(self, duration: float) -> None:
        users = [f"m{self.n}g{i}" for i in range(1, self.size)]
        reply = await self._core.command(
            f"/meet {' '.join('@' + u for u in users)} Media room {self.n}"
        )
        dms = reply.dms()
        self.room_id = room_of(dms["host"])
        for who in ["host", *users]:
            recording = self.record and who == "host"
            record = ["--record", str(self._record_dir)] if recording else []
            label = f"media{self.n}-{who}"
            self._joins.append(await self._start(label, dms[who], duration, record))

    async def _start(self, label: str, link: str, duration: float, extra: list[str]) -> Joined:
        stderr = self._folder / f"{label}.stderr"
        with stderr.open("w", encoding="utf-8") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                "join",
                "-",  # the link on standard input keeps its key out of the process list
                "--duration",
                f"{duration:.0f}",
                "--name",
                label,
                *extra,
                # Host candidates on loopback only, as the core's worker has.
                env=clean_env(CONCLAVE_RELAY_HOST_ADDRESSES="127.0.0.1"),
                cwd=self._folder,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
            )
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(f"{link}\n".encode())
        await proc.stdin.drain()
        proc.stdin.close()
        joined = Joined(label, proc, stderr)
        joined.reader = asyncio.create_task(self._read(joined, proc.stdout))
        return joined

    async def _read(self, joined: Joined, stdout: asyncio.StreamReader) -> None:
        # Kept with the time each line came (seconds into the soak), for --keep.
        with (self._folder / f"{joined.label}.stdout").open("w", encoding="utf-8") as log:
            while line := await stdout.readline():
                text = line.decode(errors="replace").rstrip("\n")
                joined.lines.append(text)
                print(f"{self._tally.elapsed():7.1f} {text}", file=log, flush=True)
                self._judge_line(joined, text)

    def _judge_line(self, joined: Joined, text: str) -> None:
        if "] joined " in text:
            joined.joined.set()
        if any(t in text for t in TROUBLE):
            self._tally.error(f"media client: media room {self.n}: {text}")
        elif OWN_CONNECTION_LOST in text:
            print(f"[{self._tally.elapsed():6.1f} s] {joined.label}: {text}", flush=True)
            self._tally.note("media connection lost and negotiated again")

    async def joined(self) -> None:
        """Until every join has said it joined."""
        waits = [asyncio.wait_for(j.joined.wait(), JOIN_S) for j in self._joins]
        try:
            await asyncio.gather(*waits)
        except TimeoutError:
            late = [j.label for j in self._joins if not j.joined.is_set()]
            self._tally.error(f"media join: media room {self.n}: not joined: {late}")
        self._all_in = time.monotonic()

    def progress(self, first: bool) -> bool:
        """Whether every join kept busy since the last look, and (``record``) the host
        decrypted audio from each other participant; an error for each that did not. The
        ``first`` look only notes where they are."""
        busy = self._busy(first)
        return self._recording(first) and busy

    def _busy(self, first: bool) -> bool:
        fine = True
        for j in self._joins:
            cpu = cpu_seconds(j.proc.pid)
            if not first and cpu - j.cpu_s < BUSY_S:
                self._tally.error(
                    f"media stalled: media room {self.n}: {j.label} used "
                    f"{cpu - j.cpu_s:.2f} s of CPU since the last sample"
                )
                fine = False
            j.cpu_s = cpu
        return fine

    def _recording(self, first: bool) -> bool:
        if not self.record:
            return True
        sizes = {f.name: f.stat().st_size for f in self._record_dir.glob("*.audio.wav")}
        if first:
            self._recorded = sizes
            return True
        fine = len(sizes) >= self.size - 1
        if not fine:
            self._tally.error(
                f"media stalled: media room {self.n}: audio from {len(sizes)} of "
                f"{self.size - 1} others recorded"
            )
        for name, size in sizes.items():
            if size <= self._recorded.get(name, 0):
                self._tally.error(
                    f"media stalled: media room {self.n}: no audio decrypted "
                    f"from {name.split('.')[0]} since the last sample"
                )
                fine = False
        self._recorded = sizes
        return fine

    async def end(self) -> None:
        """End the meeting from the console; each join leaves and prints its frame counts."""
        reply = await self._core.command(f"/meet end {self.room_id}")
        if not any(line.startswith("Ended") for line in reply.lines):
            self._tally.error(f"/meet end refused: media room {self.n}: {reply.lines}")
        seconds = time.monotonic() - self._all_in
        for j in self._joins:
            try:
                code = await asyncio.wait_for(j.proc.wait(), LEAVE_S)
            except TimeoutError:
                j.proc.kill()
                code = await j.proc.wait()
                self._tally.error(f"media join: {j.label} did not leave when the meeting ended")
            if j.reader is not None:
                await j.reader
            self._judge(j, code, seconds)

    def _judge(self, j: Joined, code: int, seconds: float) -> None:
        stderr = j.stderr.read_text(encoding="utf-8", errors="replace")
        if code != 0 or "Traceback" in stderr:
            self._tally.error(f"media join: {j.label} exited {code}: {stderr[-500:]!r}")
        found = [m for m in map(FRAMES.search, j.lines) if m is not None]
        if not found:
            self._tally.error(f"media join: {j.label} printed no frame counts")
            return
        m = found[-1]
        ok, dropped, refused = int(m["ok"]), int(m["dropped"]), int(m["refused"])
        senders = self.size - 1
        rate = ok / max(seconds, 1.0) / senders
        self.frames.append(Frames(j.label, ok, dropped, refused, rate))
        if refused:
            self._tally.error(f"media frames: {j.label} refused {refused} misattributed frames")
        if rate < MIN_RATE_SHARE * NOMINAL_FPS:
            self._tally.error(
                f"media frames: {j.label} decrypted {rate:.1f} frames/s per sender "
                f"(senders send {NOMINAL_FPS})"
            )

    async def kill(self) -> None:
        """After a failure: no join outlives the soak."""
        for j in self._joins:
            if j.proc.returncode is None:
                j.proc.kill()
                await j.proc.wait()
