"""Domain events the core announces, so the signaling hub can react without the core knowing it."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoomEnded:
    room_id: str
    reason: str  # "ended by host" or "expired"


@dataclass(frozen=True)
class RoomLockChanged:
    room_id: str
    locked: bool


@dataclass(frozen=True)
class ParticipantKicked:
    room_id: str
    participant_id: str


Event = RoomEnded | RoomLockChanged | ParticipantKicked
Listener = Callable[[Event], Awaitable[None]]


class EventBus:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def publish(self, event: Event) -> None:
        for listener in self._listeners:
            # One failing listener must not stop the others or undo a committed change.
            try:
                await listener(event)
            except Exception:
                log.exception("event listener failed for %s", type(event).__name__)
