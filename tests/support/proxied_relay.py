"""One real relay worker process whose control channel passes through a recording proxy
(``tests/support/relay_proxy.py``): a test sees, and can falsify, what the relay tells the core."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from tests.support.proc import clean_env
from tests.support.relay_proxy import RecordingProxy, recording_proxy
from tests.support.server import Running


@asynccontextmanager
async def proxied_worker(
    server: Running, secret: str, within: float
) -> AsyncIterator[RecordingProxy]:
    """``server`` must run with ``CONCLAVE_RELAY_SECRET=secret`` and no workers of its own."""
    async with recording_proxy(server.base_url) as proxy:
        worker = subprocess.Popen(
            [sys.executable, "-m", "bot", "relay", "--core-url", proxy.url, "--worker-id", "w1"],
            env=clean_env(CONCLAVE_RELAY_SECRET=secret, CONCLAVE_RELAY_HOST_ADDRESSES="127.0.0.1"),
            stdin=subprocess.DEVNULL,
        )
        try:
            pool = server.app.relay_pool
            assert pool is not None
            assert await pool.wait_for_workers(1, within=within), "the relay worker never came up"
            yield proxy
        finally:
            worker.terminate()
            worker.wait(timeout=10)
