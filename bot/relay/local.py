"""Relay worker processes that ``conclave run`` starts and looks after on this host."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
import time

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
RESTART_DELAYS = (1.0, 2.0, 5.0, 15.0, 30.0)
HEALTHY_AFTER = 60.0  # a worker that ran this long starts its back-off afresh when it dies


def _die_with_parent() -> None:
    """Linux: a local worker gets SIGTERM when ``conclave run`` dies, even by SIGKILL, instead
    of lingering and reconnecting to nothing."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class LocalWorkers:
    """Starts ``count`` workers and restarts any that dies, with a growing delay."""

    def __init__(
        self,
        count: int,
        core_url: str,
        relay_env: dict[str, str],
    ) -> None:
        """``relay_env``: the worker's settings, its secret included, as ``CONCLAVE_*``
        variables (it reads no config file, so they come out exactly as this process resolved
        them)."""
        self._count = count
        self._core_url = core_url
        self._relay_env = relay_env
        self._procs: dict[int, asyncio.subprocess.Process] = {}
        self._supervisors: list[asyncio.Task[None]] = []
        self._stopping = False
        self.restarts = 0

    def pids(self) -> list[int]:
        return [p.pid for p in self._procs.values() if p.returncode is None]

    async def start(self) -> None:
        for index in range(1, self._count + 1):
            await self._spawn(index)
            self._supervisors.append(asyncio.create_task(self._supervise(index)))

    async def _spawn(self, index: int) -> None:
        # Only the relay's own settings: a worker has no business holding the chat tokens or
        # anything else configured for the core. The secret goes through the environment,
        # never argv, which any local user can read.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("CONCLAVE_")}
        env = {**inherited, **self._relay_env}
        self._procs[index] = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "relay",
            "--core-url",
            self._core_url,
            "--worker-id",
            f"local-{index}",
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )

    async def _supervise(self, index: int) -> None:
        failures = 0
        while not self._stopping:
            started = time.monotonic()
            code = await self._procs[index].wait()
            if self._stopping:
                return
            failures = 0 if time.monotonic() - started > HEALTHY_AFTER else failures + 1
            delay = RESTART_DELAYS[min(failures, len(RESTART_DELAYS) - 1)]
            log.warning(
                "relay worker local-%d exited (code %s); restarting in %.0f s", index, code, delay
            )
            await asyncio.sleep(delay)
            if not self._stopping:
                await self._spawn(index)
                self.restarts += 1

    async def stop(self) -> None:
        self._stopping = True
        for task in self._supervisors:
            task.cancel()
        for task in self._supervisors:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._supervisors.clear()
        for proc in self._procs.values():
            if proc.returncode is None:
                proc.terminate()
        for proc in self._procs.values():
            try:
                await asyncio.wait_for(proc.wait(), 5.0)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        self._procs.clear()
