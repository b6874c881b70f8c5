"""What the hub needs from the media relay, whichever worker serves the room."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from bot.errors import ConclaveError

# (room_id, participant_id, negotiation, offer) -> None: a relay-initiated renegotiation.
OfferListener = Callable[[str, str, int, dict[str, Any]], Awaitable[None]]
# (room_id) -> None: the worker serving the room is gone, with every peer connection in it.
LostListener = Callable[[str], Awaitable[None]]


class RelayUnavailable(ConclaveError):
    code = "relay_unavailable"

    def __init__(self, why: str = "No media relay is available right now.") -> None:
        super().__init__(why)


class MediaRelay(Protocol):
    def on_offer(self, listener: OfferListener) -> None: ...

    def on_lost(self, listener: LostListener) -> None: ...

    async def join(
        self, room_id: str, participant_id: str, offer: dict[str, Any]
    ) -> dict[str, Any]:
        """Hand the participant's first offer to the room's worker; returns the answer."""

    async def answer(
        self, room_id: str, participant_id: str, negotiation: int, answer: dict[str, Any]
    ) -> None: ...

    async def leave(self, room_id: str, participant_id: str) -> None: ...

    async def close_room(self, room_id: str) -> None: ...
