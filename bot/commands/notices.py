"""Messages for a host that no command asked for: the core's events, worded once, handed to
each platform adapter's way of sending a direct message."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.commands import render
from bot.core.events import Event, EventBus, LinkReused
from bot.core.models import UserRef

log = logging.getLogger(__name__)

# The event is published from the hello or command that caused it; a platform slower than
# this gives up on the message rather than hold that up.
SEND_TIMEOUT = 10.0


@dataclass(frozen=True)
class Notice:
    to: UserRef
    text: str  # never holds a secret


Notify = Callable[[Notice], Awaitable[None]]


def subscribe(events: EventBus, platform: str, notify: Notify) -> None:
    """Have ``notify`` tell hosts on ``platform`` what they must know about their meetings."""

    async def on_event(event: Event) -> None:
        if not isinstance(event, LinkReused) or event.host.platform != platform:
            return
        notice = Notice(event.host, render.link_reused(event))
        try:
            async with asyncio.timeout(SEND_TIMEOUT):
                await notify(notice)
        except Exception as exc:
            log.warning(
                "could not tell the host of room %s about a reused link: %s",
                event.room_id,
                type(exc).__name__,
            )

    events.subscribe(on_event)
