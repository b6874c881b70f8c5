"""The hub's go-between for media: a client's offer and answers to the room's relay worker,
and the worker's offers back to that client.

The relay only ever offers after a participant's own first offer has been answered, so an
offer the worker sends early is held until the client has that answer. When the worker
serving a room is lost, every client of the room is told to negotiate afresh; when one
participant's peer connection dies, that participant is.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Mapping
from typing import Any, Final

from bot.errors import ConclaveError
from bot.signaling.closing import Declined
from bot.signaling.messages import description, to_client
from bot.signaling.relay_port import MediaRelay, PeerGone, RelayUnavailable
from bot.signaling.room import Connection, LiveRoom, member

OFFER_HOLD_SECONDS: Final = 10.0
RELAY_LOST: Final = "The media relay restarted; reconnecting media."
PEER_LOST: Final = "Your media connection was lost; reconnecting media."


class MediaBroker:
    def __init__(self, relay: MediaRelay | None, rooms: Mapping[str, LiveRoom]) -> None:
        self._relay = relay
        self._rooms = rooms  # the hub's
        # Which peer connection each published connection has (``Joined.join_id``); None while
        # its join is in flight. Weak: a connection replaced by a resume just goes.
        self._joins: weakref.WeakKeyDictionary[Connection, int | None] = weakref.WeakKeyDictionary()
        # Losses heard while a join was in flight: its own connection may be the one that died.
        self._lost_early: weakref.WeakKeyDictionary[Connection, set[int]] = (
            weakref.WeakKeyDictionary()
        )

    # --- from the client -------------------------------------------------------------------

    async def publish(self, conn: Connection, message: dict[str, Any]) -> None:
        if self._relay is None:
            raise RelayUnavailable("This server runs without a media relay.")
        if conn.published:
            raise Declined("already_published", "Media is already negotiated on this connection.")
        conn.published = True
        self._joins[conn] = None
        try:
            offer = description(message["offer"])
            joined = await self._relay.join(conn.participant.room_id, conn.id, offer)
        except BaseException:
            self._unpublish(conn)
            raise
        if joined.join_id in self._lost_early.pop(conn, set()):
            self._unpublish(conn)
            await conn.send(to_client("media_lost", message=PEER_LOST))
            return
        self._joins[conn] = joined.join_id
        await conn.send(to_client("answer", answer=joined.answer))
        conn.answered.set()

    async def answer(self, conn: Connection, message: dict[str, Any]) -> None:
        if self._relay is None or not conn.published:
            raise Declined("no_negotiation", "There is no media negotiation to answer.")
        room_id = conn.participant.room_id
        answer = description(message["answer"])
        # The connection died meanwhile: media_lost is on its way, and nothing is wrong with
        # the relay, which the client would otherwise be told (and retry for).
        with contextlib.suppress(PeerGone):
            await self._relay.answer(room_id, conn.id, message["negotiation"], answer)

    # --- from the relay --------------------------------------------------------------------

    async def relay_offer(
        self, room_id: str, participant_id: str, negotiation: int, offer: dict[str, Any]
    ) -> None:
        conn = member(self._rooms, room_id, participant_id)
        if conn is None or not conn.published:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(conn.answered.wait(), OFFER_HOLD_SECONDS)
        await conn.send(to_client("offer", negotiation=negotiation, offer=offer))

    async def relay_lost(self, room_id: str) -> None:
        """The room's worker died: every client negotiates afresh (the pool picks a live one)."""
        live = self._rooms.get(room_id)
        for conn in [] if live is None else live.admitted():
            if conn.published:
                self._unpublish(conn)
                await conn.send(to_client("media_lost", message=RELAY_LOST))

    async def peer_lost(self, room_id: str, participant_id: str, join_id: int) -> None:
        """One peer connection died: its client negotiates afresh, if it is still the one the
        participant's current connection published (not one it left or replaced)."""
        conn = member(self._rooms, room_id, participant_id)
        if conn is None or conn not in self._joins:
            return  # gone, or not publishing (it was told already, or never published)
        current = self._joins[conn]
        if current is None:
            self._lost_early.setdefault(conn, set()).add(join_id)
        elif current == join_id:
            self._unpublish(conn)
            await conn.send(to_client("media_lost", message=PEER_LOST))

    def _unpublish(self, conn: Connection) -> None:
        conn.published = False
        conn.answered.clear()
        self._joins.pop(conn, None)
        self._lost_early.pop(conn, None)

    # --- the hub's own news ----------------------------------------------------------------

    async def left(self, conn: Connection) -> None:
        if conn.published and self._relay is not None:
            with contextlib.suppress(ConclaveError):
                await self._relay.leave(conn.participant.room_id, conn.id)

    async def room_ended(self, room_id: str) -> None:
        if self._relay is not None:
            with contextlib.suppress(ConclaveError):
                await self._relay.close_room(room_id)
