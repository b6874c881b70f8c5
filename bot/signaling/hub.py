"""The signaling hub behind ``/ws``.

A connection must open with ``hello`` carrying an invite (``{"room", "invite"}``) or a resume
token (``{"resume"}``); it is answered with ``welcome`` or an ``error`` naming why not, after
which the connection is closed (``admission.py``). Guests of a room with a lobby wait until the
host admits them. Admitted participants see the roster, exchange opaque key messages addressed
to one recipient, and negotiate media with the room's relay worker through the hub
(``broker.py``). ``error`` always closes the connection; ``warning`` reports a refused request
and keeps it open. Every message is checked against its definition in ``messages.py``.

Everything sent to a connection goes through its own bounded queue (``outbox.py``): a
participant who stops reading is cut off, and slows nobody else, not even the host's kick.

The hub hears the core's events through ``on_event`` and the relay's through ``media``; the
composition root (``bot/bootstrap.py``) subscribes them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import WSCloseCode, web

from bot.config import SignalingSettings
from bot.core.events import Event, LinkReused, MeetingEnded, ParticipantKicked, RoomLockChanged
from bot.core.models import Admission, Room
from bot.core.service import MeetingService
from bot.e2ee.announce import KeyAnnouncement
from bot.e2ee.errors import RosterError
from bot.errors import ConclaveError, ProtocolError
from bot.ice_servers import IceServer
from bot.metrics import Census, Metrics
from bot.ratelimit import TokenBucket
from bot.signaling.admission import Admissions
from bot.signaling.broker import MediaBroker
from bot.signaling.closing import (
    CLOSE_ENDED,
    CLOSE_KICKED,
    CLOSE_PROTOCOL,
    CLOSE_RATE,
    CLOSE_REFUSED,
    CLOSE_REPLACED,
    Declined,
    RateLimited,
    refuse,
)
from bot.signaling.envelope import WIRE_LIMIT, decode_frame
from bot.signaling.messages import SESSION, to_client
from bot.signaling.outbox import Outbox
from bot.signaling.relay_port import MediaRelay
from bot.signaling.room import Arrival, Connection, LiveRoom, member
from bot.signaling.untie import clear_failure, drop_heartbeat

log = logging.getLogger(__name__)

# The close codes and the wire limit belong to the hub's interface, wherever defined.
__all__ = [
    "CLOSE_ENDED",
    "CLOSE_KICKED",
    "CLOSE_PROTOCOL",
    "CLOSE_RATE",
    "CLOSE_REFUSED",
    "CLOSE_REPLACED",
    "WIRE_LIMIT",
    "Hub",
]

Handler = Callable[[Connection, dict[str, Any]], Awaitable[None]]

# A connection closed with one of these was refused; its close reason is the error code.
_REFUSED = frozenset({CLOSE_PROTOCOL, CLOSE_REFUSED, CLOSE_RATE})


def _room_info(room: Room) -> dict[str, Any]:
    return {"id": room.id, "topic": room.topic, "state": room.state.value, "lobby": room.lobby}


class Hub:
    def __init__(
        self,
        service: MeetingService,
        settings: SignalingSettings,
        relay: MediaRelay | None = None,
        metrics: Metrics | None = None,
        ice_servers: Callable[[str], Sequence[IceServer]] = lambda participant_id: (),
    ) -> None:
        """``ice_servers``: the STUN and TURN servers a participant's ``welcome`` hands it,
        with TURN credentials of its own (``bot.ice_servers.ice_servers_for``)."""
        self._service = service
        self._ice_servers = ice_servers
        self.metrics = metrics or Metrics()
        self._settings = settings
        self._rooms: dict[str, LiveRoom] = {}
        self._admissions = Admissions(service, self._rooms, settings)
        self.media = MediaBroker(relay, self._rooms)
        # One handler per message a connection may send after its hello ("bye" ends it).
        self.message_handlers: dict[str, Handler] = {
            "ping": self._ping,
            "keys": self._keys,
            "key": self._key,
            "publish": self.media.publish,
            "answer": self.media.answer,
            "admit": self._admit,
            "kick": self._kick,
            "lock": self._room_control,
            "unlock": self._room_control,
            "end": self._room_control,
        }
        self.event_handlers: dict[type[Any], Callable[[Any], Awaitable[None]]] = {
            MeetingEnded: self._room_ended,
            RoomLockChanged: self._lock_changed,
            ParticipantKicked: self._kicked,
            LinkReused: self._link_reused,
        }

    def census(self) -> Census:
        """Rooms with someone connected, and the connections in a meeting or in its lobby."""
        connected = [c for live in self._rooms.values() for c in live.members.values()]
        admitted = sum(c.admitted for c in connected)
        rooms = sum(1 for live in self._rooms.values() if live.members)
        return Census(rooms=rooms, admitted=admitted, waiting=len(connected) - admitted)

    def roster(self, room_id: str) -> list[dict[str, Any]]:
        live = self._rooms.get(room_id)
        return [] if live is None else live.roster()

    def held_keys(self, room_id: str) -> frozenset[str]:
        """Whose key announcements the hub keeps for ``room_id`` (for resumes)."""
        live = self._rooms.get(room_id)
        return frozenset() if live is None else frozenset(live.keys)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=WIRE_LIMIT, heartbeat=30.0)
        conn: Connection | None = None
        outbox: Outbox | None = None
        try:
            with self._admissions.unauthenticated(request):
                await ws.prepare(request)
                outbox = Outbox(
                    request,
                    ws,
                    max_bytes=self._settings.send_queue_bytes,
                    send_timeout=self._settings.send_timeout,
                )
                enter = functools.partial(self._enter, ws, outbox)
                conn = await self._admissions.admit(ws, outbox, enter)
            if conn is not None:
                await self._session(conn)
        except web.HTTPTooManyRequests:
            self.metrics.refused("too_many_unauthenticated")
            raise
        finally:
            # Untied from aiohttp's reference cycles, a finished connection is freed at once
            # rather than at the next full garbage collection (``untie.py``).
            drop_heartbeat(request)
            if conn is not None:
                await self._leave(conn)
            if outbox is not None:
                await outbox.finish()
                if (closed := outbox.close_reason) is not None and closed[0] in _REFUSED:
                    self.metrics.refused(closed[1].decode(errors="replace"))
            clear_failure(ws)
        return ws

    async def on_event(self, event: Event) -> None:
        handler = self.event_handlers.get(type(event))
        if handler is not None:
            await handler(event)

    async def close_all(self) -> None:
        conns = [conn for live in self._rooms.values() for conn in live.members.values()]
        self._rooms.clear()
        for conn in conns:
            conn.outbox.close(WSCloseCode.GOING_AWAY, b"server shutdown")
        await asyncio.gather(*(conn.outbox.finish() for conn in conns))

    def _bucket(self) -> TokenBucket:
        return TokenBucket(self._settings.rate_limit, self._settings.rate_burst)

    # --- phases of a connection ---------------------------------------------------------

    async def _enter(
        self, ws: web.WebSocketResponse, outbox: Outbox, admission: Admission, arrival: Arrival
    ) -> Connection | None:
        # From this check until the connection is in the room nothing awaits, so a kick or an
        # end is either heard by the arrival or finds the connection installed.
        if arrival.gone is not None:
            refuse(outbox, arrival.gone, CLOSE_REFUSED)
            return None
        p = admission.participant
        outbox.who = p.id
        conn = Connection(ws=ws, outbox=outbox, participant=p, bucket=self._bucket())
        live = self._rooms.setdefault(p.room_id, LiveRoom())
        previous = live.members.get(p.id)
        if previous is not None:
            # A resumed session supersedes a connection that has not noticed it is dead.
            replaced = to_client("error", code="replaced", message="Rejoined elsewhere.")
            previous.outbox.close(CLOSE_REPLACED, b"replaced", replaced)
        live.members[p.id] = conn
        conn.keys = live.keys.get(p.id)
        # Let in on record (which outlives a restart of the core), or since this resume read it.
        conn.admitted = p.admitted_to(admission.room) or p.id in live.admitted_ids
        if conn.admitted:
            live.admitted_ids.add(p.id)
        outbox.put(
            to_client(
                "welcome",
                participant_id=p.id,
                sender_index=p.sender_index,
                name=p.display_name,
                role=p.role.value,
                admitted=conn.admitted,
                room=_room_info(admission.room),
                roster=live.roster() if conn.admitted else [],
                resume_token=admission.resume_token.reveal(),
                ice_servers=[server.to_json() for server in self._ice_servers(p.id)],
            )
        )
        log.info(
            "participant %s connected to room %s%s",
            p.id,
            p.room_id,
            "" if conn.admitted else " (lobby)",
        )
        if conn.admitted:
            live.broadcast_roster()
        else:
            outbox.put(to_client("lobby", message="Waiting for the host to let you in."))
        if not conn.admitted or conn.is_host:
            # A host arriving after its guests must learn who is already waiting.
            live.announce_lobby()
        return conn

    async def _session(self, conn: Connection) -> None:
        async for msg in conn.ws:
            if conn.outbox.closing:
                return  # kicked, replaced or ended: what it sent after that is not heard
            try:
                if not conn.bucket.take():
                    raise RateLimited()
                message = decode_frame(msg, SESSION)
                if message is None:
                    return
                kind = SESSION[message["type"]]
                self.metrics.message(kind.type)
                if not conn.admitted and not kind.in_lobby:
                    raise Declined("in_lobby", "You are still waiting in the lobby.")
                if kind.type == "bye":
                    return  # the caller leaves the room first, then closes
                await self.message_handlers[kind.type](conn, kind.check(message))
            except RateLimited as err:
                refuse(conn.outbox, err, CLOSE_RATE)
                return
            except ProtocolError as err:
                refuse(conn.outbox, err, CLOSE_PROTOCOL)
                return
            except ConclaveError as err:
                # A Declined request, or one the service refused: the connection stays.
                self.metrics.refused(err.code)
                await conn.send(to_client("warning", code=err.code, message=str(err)))

    async def _leave(self, conn: Connection) -> None:
        """Take ``conn`` out of its room and tell the others; the first call does, later ones
        (the kicked connection's own reader, after the kick) find nothing to do."""
        room_id = conn.participant.room_id
        live = self._rooms.get(room_id)
        if live is None or live.members.get(conn.id) is not conn:
            return
        del live.members[conn.id]
        if not live.members and not live.admitted_ids:
            del self._rooms[room_id]
        log.info("participant %s left room %s", conn.id, room_id)
        # Told before the relay is, so the others start replacing their keys at once.
        if conn.admitted:
            live.broadcast_roster()
        else:
            live.announce_lobby()
        await self.media.left(conn)

    # --- messages --------------------------------------------------------------------------

    async def _ping(self, conn: Connection, message: dict[str, Any]) -> None:
        await conn.send(to_client("pong"))

    async def _keys(self, conn: Connection, message: dict[str, Any]) -> None:
        if conn.announced:
            raise Declined("keys_fixed", "This connection's public keys are already announced.")
        # Parsed and verified exactly as the clients will, so nobody can announce keys that the
        # others' clients choke on or refuse: signed for this connection's room and participant.
        try:
            announced = KeyAnnouncement.from_json(message)
        except RosterError:
            raise ProtocolError(
                "Fields 'x25519' and 'ed25519' must be 32-byte keys and 'signature' a 64-byte "
                "signature, in unpadded base64url."
            ) from None
        p = conn.participant
        if not announced.verifies(p.room_id, p.id, p.sender_index):
            raise ProtocolError("The key announcement is not signed for this room and participant.")
        conn.announced = True
        keys = announced.to_json()
        live = self._rooms[p.room_id]
        if live.keys.get(p.id, keys) != keys:
            # A device that lost its keys (a reloaded page) is back with new ones. Clients take
            # new keys for a participant only after it has left the roster (anything else is a
            # server swapping keys), so the roster shows it leave first; the code changes.
            without = [e for e in live.roster() if e["participant_id"] != p.id]
            live.broadcast(to_client("roster", roster=without))
        live.keys[p.id] = conn.keys = keys
        live.broadcast_roster()

    async def _key(self, conn: Connection, message: dict[str, Any]) -> None:
        # The hub routes key messages by their envelope and never looks inside the payload.
        to = message["to"]
        target = member(self._rooms, conn.participant.room_id, to)
        if target is None or not target.admitted or target is conn:
            raise Declined("undeliverable", f"{to} is not in this meeting.")
        await target.send(to_client("key", **{"from": conn.id, "payload": message["payload"]}))

    async def _admit(self, conn: Connection, message: dict[str, Any]) -> None:
        """The host lets a guest in from the lobby; the service checks it and puts it on
        record, the hub lets the guest's connection in."""
        room_id = conn.participant.room_id
        target_id = message["participant"]
        waiting = [c.id for c in self._rooms[room_id].waiting()]
        await self._service.admit(conn.id, target_id, waiting)
        live = self._rooms.get(room_id)
        if live is None:
            return
        # Admitted for good, also if its connection dropped while this was being recorded.
        live.admitted_ids.add(target_id)
        target = live.members.get(target_id)
        if target is None or target.admitted:
            return
        target.admitted = True
        target.outbox.put(to_client("admitted", roster=live.roster()))
        live.broadcast_roster()
        live.announce_lobby()

    async def _kick(self, conn: Connection, message: dict[str, Any]) -> None:
        await self._service.kick(conn.id, message["participant"])

    async def _room_control(self, conn: Connection, message: dict[str, Any]) -> None:
        """lock, unlock or end, as the host's chat identity would from a slash command."""
        room, actor = await self._service.host_of(conn.id)
        action = {
            "lock": self._service.lock,
            "unlock": self._service.unlock,
            "end": self._service.end,
        }[message["type"]]
        await action(actor, room.id)

    # --- the core's events -----------------------------------------------------------------

    async def _room_ended(self, event: MeetingEnded) -> None:
        live = self._rooms.pop(event.room_id, None)
        self._admissions.room_ended(event.room_id)
        ended = to_client("ended", reason=event.reason)
        for conn in [] if live is None else list(live.members.values()):
            conn.outbox.close(CLOSE_ENDED, b"ended", ended)
        await self.media.room_ended(event.room_id)

    async def _lock_changed(self, event: RoomLockChanged) -> None:
        live = self._rooms.get(event.room_id)
        if live is not None:
            live.broadcast(to_client("room", locked=event.locked))

    async def _kicked(self, event: ParticipantKicked) -> None:
        self._admissions.participant_kicked(event.participant_id)
        live = self._rooms.get(event.room_id)
        if live is not None:
            live.admitted_ids.discard(event.participant_id)
            # A kicked session never resumes: its keys need not be kept for one (the soak
            # run saw rooms that kick often hold every kicked announcement until they end).
            live.keys.pop(event.participant_id, None)
        conn = member(self._rooms, event.room_id, event.participant_id)
        if conn is not None:
            kicked = to_client("kicked", message="The host removed you from the meeting.")
            conn.outbox.close(CLOSE_KICKED, b"kicked", kicked)
            # Out of the room now, not when its socket gets round to closing.
            await self._leave(conn)

    async def _link_reused(self, event: LinkReused) -> None:
        # The host learns, in the meeting, who joined with a link that came back.
        live = self._rooms.get(event.room_id)
        if live is not None:
            pid, text = event.participant_id, event.message
            live.tell_hosts(to_client("notice", code="link_reused", participant=pid, message=text))
