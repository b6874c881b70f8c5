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


async def test_a_dead_worker_is_restarted_and_none_outlives_the_server(tmp_path: Path) -> None:
    env = {"CONCLAVE_RELAY_WORKERS": "1", "CONCLAVE_RELAY_HOST_ADDRESSES": "127.0.0.1"}
    async with serve(tmp_path, env=env) as server:
        pool, workers = server.app.relay_pool, server.app.local_workers
        assert pool is not None and workers is not None
        assert pool.worker_ids() == ["local-1"]  # start() waited for it
        (first,) = workers.pids()
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
