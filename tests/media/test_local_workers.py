"""`conclave run` looks after its relay workers: a worker that dies is started again, and
none outlives the server."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from tests.support.server import serve

pytestmark = pytest.mark.slow


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().partition("=")[::2] for item in raw if item)


async def test_a_dead_worker_is_restarted_and_none_outlives_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Set for the core's process as an operator would; a worker must not inherit them.
    monkeypatch.setenv("CONCLAVE_SLACK_BOT_TOKEN", "xoxb-for-the-core-only")
    monkeypatch.setenv("CONCLAVE_STORAGE_PATH", str(tmp_path / "elsewhere.db"))
    env = {"CONCLAVE_RELAY_WORKERS": "1", "CONCLAVE_RELAY_HOST_ADDRESSES": "127.0.0.1"}
    async with serve(tmp_path, env=env) as server:
        pool, workers = server.app.relay_pool, server.app.local_workers
        assert pool is not None and workers is not None
        assert pool.worker_ids() == ["local-1"]  # start() waited for it
        (first,) = workers.pids()
        worker_env = environ_of(first)
        conclave = {k for k in worker_env if k.startswith("CONCLAVE_")}
        assert "CONCLAVE_RELAY_SECRET" in conclave and "CONCLAVE_RELAY_HOST_ADDRESSES" in conclave
        assert all(k.startswith(("CONCLAVE_RELAY_", "CONCLAVE_LOGGING_")) for k in conclave)
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while workers.restarts == 0 or pool.worker_ids() != ["local-1"]:
            assert time.monotonic() < deadline, "the worker was not restarted"
            await asyncio.sleep(0.1)
        (second,) = workers.pids()
        assert second != first
    # Stopping the server stopped its worker.
    deadline = time.monotonic() + 10
    while alive(second):
        assert time.monotonic() < deadline, "a relay worker outlived the server"
        await asyncio.sleep(0.1)
