"""What the hub needs from the media relay, whichever worker serves the room."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from bot.errors import ConclaveError

# (room_id, participant_id, negotiation, offer) -> None: a relay-initiated renegotiation.
OfferListener = Callable[[str, str, int, dict[str, Any]], Awaitable[None]]
# (room_id) -> None: the worker serving the room is gone, with every peer connection in it.
LostListener = Callable[[str], Awaitable[None]]
# (room_id, participant_id, join_id) -> None: that one peer connection died (ICE consent lost,
# DTLS failed or closed by the peer); ``join_id`` is the ``Joined.join_id`` it was made with.
PeerLostListener = Callable[[str, str, int], Awaitable[None]]


class RelayUnavailable(ConclaveError):
    code = "relay_unavailable"

    def __init__(self, why: str = "No media relay is available right now.") -> None:
        super().__init__(why)


class PeerGone(RelayUnavailable):
    """The worker no longer has this participant's peer connection: it left, or the connection
    died and a ``PeerLostListener`` hears of it."""


@dataclass(frozen=True)
class Joined:
    answer: dict[str, Any]
    join_id: int  # names this peer connection, unique for the life of this process


class MediaRelay(Protocol):
    def on_offer(self, listener: OfferListener) -> None: ...

    def on_lost(self, listener: LostListener) -> None: ...

    def on_peer_lost(self, listener: PeerLostListener) -> None: ...

    async def join(self, room_id: str, participant_id: str, offer: dict[str, Any]) -> Joined:
        """Hand the participant's first offer to the room's worker; returns the answer."""

    async def answer(
        self, room_id: str, participant_id: str, negotiation: int, answer: dict[str, Any]
    ) -> None: ...

    async def leave(self, room_id: str, participant_id: str) -> None: ...

    async def close_room(self, room_id: str) -> None: ...
