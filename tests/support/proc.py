"""Run ``python -m bot`` as a real process: its environment, its output, and its clean end."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

# Generous: a loaded CI machine can take seconds to import aiortc and friends.
START_TIMEOUT = 20.0
LINE_TIMEOUT = 10.0
CLI_TIMEOUT = 20.0


# The console's first line; the server is listening by then.
GREETING = re.compile(
    r"^Conclave console: you are @\S+\. Links use (?P<url>\S+)\. Type /meet help\.$"
)


def conclave_env(port: int, db: Path, **extra: str) -> dict[str, str]:
    """This process's environment without any ``CONCLAVE_*``, plus the port (0: any free
    port, which the console's greeting names), database and ``extra`` (keys given as
    ``CONCLAVE_...`` names)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONCLAVE_")}
    env["CONCLAVE_SERVER_PORT"] = str(port)
    env["CONCLAVE_STORAGE_PATH"] = str(db)
    # Media stays on loopback; tests that need no media run without relay workers.
    env["CONCLAVE_RELAY_HOST_ADDRESSES"] = "127.0.0.1"
    env["CONCLAVE_RELAY_WORKERS"] = "0"
    env.update(extra)
    return env


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONCLAVE_")}
    env.update(extra)
    return env


def run_bot(
    args: Sequence[str],
    env: Mapping[str, str],
    cwd: Path,
    timeout: float = CLI_TIMEOUT,
    stdin_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """``python -m bot ARGS`` to completion, output captured; stdin is ``stdin_text`` or
    closed."""
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        env=dict(env),
        cwd=cwd,
        input=stdin_text,
        stdin=subprocess.DEVNULL if stdin_text is None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class LineReader:
    """Reads a child's stream on a thread so the test can wait for a line with a timeout."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._pump, name="line-reader", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        try:
            for line in self._stream:
                self._queue.put(line.rstrip("\n"))
        except (OSError, ValueError):
            pass
        finally:
            self._queue.put(None)

    def wait_for(self, match: Callable[[str], bool], timeout: float = LINE_TIMEOUT) -> str:
        """The first unread line that ``match`` accepts; AssertionError on timeout or EOF."""
        while True:
            try:
                line = self._queue.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(
                    f"no matching line within {timeout}s; saw {len(self.lines)} lines"
                ) from None
            if line is None:
                self._queue.put(None)  # stay at EOF for later callers
                # Not the lines themselves: they may carry invite links.
                raise AssertionError(
                    f"stream closed before a matching line; saw {len(self.lines)} lines"
                )
            self.lines.append(line)
            if match(line):
                return line

    def join(self, timeout: float = LINE_TIMEOUT) -> None:
        self._thread.join(timeout)


class BotProcess:
    """``python -m bot ARGS`` running in the background: stdin and stdout are pipes, stderr
    goes to a file (so it can never fill a pipe and stall the child)."""

    def __init__(
        self, args: Sequence[str], env: Mapping[str, str], cwd: Path, stderr_path: Path
    ) -> None:
        self.stderr_path = stderr_path
        self._stderr_file = stderr_path.open("w", encoding="utf-8")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bot", *args],
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr_file,
                text=True,
                bufsize=1,
            )
        except BaseException:
            self._stderr_file.close()
            raise
        assert self.proc.stdout is not None
        self.stdout = LineReader(self.proc.stdout)

    def wait_for_greeting(self, timeout: float = START_TIMEOUT) -> str:
        """Wait until the console greets (the server listens by then); the URL it serves."""
        line = self.stdout.wait_for(lambda s: s.startswith("Conclave console:"), timeout)
        match = GREETING.match(line)
        assert match is not None, f"the greeting does not name the server's URL: {line!r}"
        return match["url"]

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def terminate(self, timeout: float = LINE_TIMEOUT) -> int:
        """SIGTERM, then the exit code; AssertionError if it does not exit in time."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the process did not exit within {timeout}s of SIGTERM") from None

    def stderr_text(self) -> str:
        self._stderr_file.flush()
        return self.stderr_path.read_text(encoding="utf-8")

    def close(self) -> None:
        """Kill if still running, reap, and close every pipe and file (idempotent)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=LINE_TIMEOUT)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self.stdout.join()
        self._stderr_file.close()
