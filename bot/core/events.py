"""Domain events the core announces, so the signaling hub can react without the core knowing it."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.core.models import EndReason, UserRef
from bot.errors import utc_minute

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MeetingEnded:
    """A room ended (not to be confused with the error ``bot.errors.RoomEnded``, which
    refuses whoever comes to a room that has)."""

    room_id: str
    reason: EndReason


@dataclass(frozen=True)
class RoomLockChanged:
    room_id: str
    locked: bool


@dataclass(frozen=True)
class ParticipantKicked:
    room_id: str
    participant_id: str


@dataclass(frozen=True)
class LinkReused:
    """An invite that was already spent came back: presented again in a hello, or its invitee
    asked for a new link in chat. Either can mean someone else joined under their name."""

    room_id: str
    topic: str
    host: UserRef
    invitee_user_id: str
    invitee_name: str
    participant_id: str  # whoever joined with the invite
    used_at: float
    asked_in_chat: bool = False

    @property
    def message(self) -> str:
        """For the host, in the meeting and in chat: what happened and the one-command fix."""
        name, when = self.invitee_name, utc_minute(self.used_at)
        if self.asked_in_chat:
            what = f"{name} asked for a new link, but {name}'s link was already used at {when}."
        else:
            what = (
                f"Someone tried to join as {name} with {name}'s link, which was already used "
                f"at {when}."
            )
        return (
            f"{what} If {name} says they did not join then, run "
            f"/meet reissue {self.room_id} @{self.invitee_user_id}."
        )


Event = MeetingEnded | RoomLockChanged | ParticipantKicked | LinkReused
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
