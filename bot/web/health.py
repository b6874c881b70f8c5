"""``/healthz``: healthy while a relay worker is ready and the database takes writes.

The answer names each check that failed, in fixed words: it is public, so it says nothing of
paths or errors (the log does). Concurrent requests share one database check, so hammering
``/healthz`` cannot queue up write transactions behind each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Final

from aiohttp import web

from bot.errors import ConclaveError
from bot.relay.pool import RelayPool
from bot.store.base import Store

log = logging.getLogger(__name__)

# A database that has not taken its write lock by then counts as not writable for this answer;
# the check itself goes on (an interrupted transaction would hold the lock), and the next
# request shares it.
DATABASE_WAIT_SECONDS: Final = 3.0
NO_RELAY: Final = "no relay worker is ready"
NOT_WRITABLE: Final = "not writable"


class Health:
    def __init__(self, store: Store, relay: RelayPool) -> None:
        self._store = store
        self._relay = relay
        self._check: asyncio.Task[bool] | None = None

    async def failures(self) -> dict[str, str]:
        """Each failed check's name and what is wrong; empty when healthy."""
        failed = {}
        if not self._relay.worker_ids():
            failed["relay"] = NO_RELAY
        if not await self._database_writable():
            failed["database"] = NOT_WRITABLE
        return failed

    async def _database_writable(self) -> bool:
        if self._check is None or self._check.done():
            self._check = asyncio.create_task(self._try_write(), name="health-database")
        done, _ = await asyncio.wait({self._check}, timeout=DATABASE_WAIT_SECONDS)
        if not done:
            log.warning("health: the database did not answer in %.0f s", DATABASE_WAIT_SECONDS)
            return False
        return self._check.result()

    async def _try_write(self) -> bool:
        try:
            await self._store.check_writable()
        except ConclaveError as err:
            log.warning("health: %s", err)
            return False
        except Exception as exc:  # whatever the driver raises, the answer is "not writable"
            log.warning("health: the database is not writable: %s", type(exc).__name__)
            return False
        return True

    async def handle(self, request: web.Request) -> web.Response:
        failed = await self.failures()
        if failed:
            return web.json_response({"status": "unhealthy", "failed": failed}, status=503)
        return web.json_response({"status": "ok"})

    async def close(self, app: web.Application | None = None) -> None:
        """Stop a check still waiting for the database (at shutdown, before the store closes)."""
        if self._check is not None and not self._check.done():
            self._check.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._check
