"""The background task that ends rooms and expires invites once their time is up."""

from __future__ import annotations

import asyncio
import logging

from bot.core.service import MeetingService

log = logging.getLogger(__name__)


async def run_sweeper(service: MeetingService, interval: float) -> None:
    while True:
        try:
            await service.sweep()
        except Exception:
            # A failed sweep is retried on the next tick; the server must keep running.
            log.exception("sweep failed")
        await asyncio.sleep(interval)
