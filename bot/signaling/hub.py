"""The signaling hub behind ``/ws``.

A connection must open with ``hello`` carrying an invite (``{"room", "invite"}``) or a resume
token (``{"resume"}``); it is answered with ``welcome`` or an ``error`` naming why not, after
which the connection is closed. Guests of a room with a lobby wait until the host admits them.
Admitted participants see the roster, exchange opaque key messages addressed to one
recipient, and negotiate media with the room's relay worker through the hub. ``error`` always
closes the connection; ``warning`` reports a refused request and keeps it open.

Everything sent to a connection goes through its own bounded queue (``outbox.py``): a
participant who stops reading is cut off, and slows nobody else, not even the host's kick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSCloseCode, web

from bot.core.events import Event, LinkReused, ParticipantKicked, RoomEnded, RoomLockChanged
from bot.core.models import Admission, Room
from bot.core.service import MeetingService
from bot.e2ee.announce import KeyAnnouncement
from bot.e2ee.errors import RosterError
from bot.errors import ConclaveError, ProtocolError
from bot.signaling.admission import Admissions
from bot.signaling.closing import (
    CLOSE_ENDED,
    CLOSE_KICKED,
    CLOSE_PROTOCOL,
    CLOSE_RATE,
    CLOSE_REFUSED,
    CLOSE_REPLACED,
    refuse,
)
from bot.signaling.envelope import MAX_MESSAGE_BYTES, decode_frame, encode, text_field
from bot.signaling.outbox import Outbox
from bot.signaling.ratelimit import TokenBucket
from bot.signaling.relay_port import MediaRelay, RelayUnavailable
from bot.signaling.room import Arrival, Connection, LiveRoom

log = logging.getLogger(__name__)

# aiohttp drops anything this big before it reaches us; below it we answer with our own error.
WIRE_LIMIT = 4 * MAX_MESSAGE_BYTES
# The close codes belong to the hub's interface, whichever module defines them.
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

MAX_SDP = 60_000
OFFER_HOLD_SECONDS = 10.0
MAX_KEY_PAYLOAD = 16_384

LOBBY_TYPES = frozenset({"ping", "bye"})
SESSION_TYPES = frozenset(
    {"ping", "bye", "keys", "key", "publish", "answer", "admit", "kick", "lock", "unlock", "end"}
)


class RateLimited(ProtocolError):
    code = "rate_limited"

    def __init__(self) -> None:
        super().__init__("Too many messages; slow down.")


class Refusal(ConclaveError):
    """A request the hub declines without closing the connection (sent as ``warning``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _sdp(message: dict[str, Any], name: str, kind: str) -> dict[str, Any]:
    value = message.get(name)
    if (
        not isinstance(value, dict)
        or value.get("type") != kind
        or not isinstance(value.get("sdp"), str)
        or len(value["sdp"]) > MAX_SDP
    ):
        raise ProtocolError(f"Field {name!r} must be an SDP {kind}.")
    return {"type": kind, "sdp": value["sdp"]}


def _room_info(room: Room) -> dict[str, Any]:
    return {"id": room.id, "topic": room.topic, "state": room.state.value, "lobby": room.lobby}


class Hub:
    def __init__(
        self,
        service: MeetingService,
        hello_timeout: float,
        *,
        relay: MediaRelay | None = None,
        max_participants: int = 50,
        rate_limit: float = 50.0,
        rate_burst: float = 200.0,
        send_timeout: float = 5.0,
        send_queue_bytes: int = 1 << 20,
        unauthenticated_per_address: int = 20,
    ) -> None:
        self._service = service
        self._relay = relay
        self._rate = (rate_limit, rate_burst)
        self._send_timeout = send_timeout
        self._send_queue_bytes = send_queue_bytes
        self._rooms: dict[str, LiveRoom] = {}
        self._admissions = Admissions(
            service,
            self._rooms,
            hello_timeout=hello_timeout,
            max_participants=max_participants,
            unauthenticated_per_address=unauthenticated_per_address,
        )
        service.events.subscribe(self.on_event)
        if relay is not None:
            relay.on_offer(self._relay_offer)
            relay.on_lost(self._relay_lost)
        self._handlers: dict[str, Callable[[Connection, dict[str, Any]], Awaitable[None]]] = {
            "ping": self._ping,
            "keys": self._keys,
            "key": self._key,
            "publish": self._publish,
            "answer": self._answer,
            "admit": self._admit_guest,
            "kick": self._kick,
            "lock": self._room_control,
            "unlock": self._room_control,
            "end": self._room_control,
        }

    def roster(self, room_id: str) -> list[dict[str, Any]]:
        live = self._rooms.get(room_id)
        return [] if live is None else live.roster()

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
                    max_bytes=self._send_queue_bytes,
                    send_timeout=self._send_timeout,
                )
                conn = await self._admit(ws, outbox)
            if conn is not None:
                await self._session(conn)
        finally:
            if conn is not None:
                await self._leave(conn)
            if outbox is not None:
                await outbox.finish()
        return ws

    # --- phases of a connection ---------------------------------------------------------

    async def _admit(self, ws: web.WebSocketResponse, outbox: Outbox) -> Connection | None:
        with self._admissions.arrival() as arrival:
            admission = await self._admissions.hello(ws, outbox, arrival)
            if admission is None:
                return None
            return await self._enter(ws, outbox, admission, arrival)

    async def _enter(
        self, ws: web.WebSocketResponse, outbox: Outbox, admission: Admission, arrival: Arrival
    ) -> Connection | None:
        # From this check until the connection is in the room nothing awaits, so a kick or an
        # end is either heard by the arrival or finds the connection installed.
        if arrival.gone is not None:
            refuse(outbox, arrival.gone, CLOSE_REFUSED)
            return None
        p = admission.participant
        room = admission.room
        outbox.who = p.id
        conn = Connection(ws=ws, outbox=outbox, participant=p, bucket=TokenBucket(*self._rate))
        live = self._rooms.setdefault(p.room_id, LiveRoom())
        previous = live.members.get(p.id)
        if previous is not None:
            # A resumed session supersedes a connection that has not noticed it is dead.
            replaced = encode("error", code="replaced", message="Rejoined elsewhere.")
            previous.outbox.close(CLOSE_REPLACED, b"replaced", replaced)
        live.members[p.id] = conn
        conn.keys = live.keys.get(p.id)
        conn.admitted = not room.lobby or conn.is_host or p.id in live.admitted_ids
        if conn.admitted:
            live.admitted_ids.add(p.id)
        await conn.send(
            encode(
                "welcome",
                participant_id=p.id,
                sender_index=p.sender_index,
                name=p.display_name,
                role=p.role.value,
                admitted=conn.admitted,
                room=_room_info(room),
                roster=live.roster() if conn.admitted else [],
                resume_token=admission.resume_token.reveal(),
            )
        )
        log.info(
            "participant %s connected to room %s%s",
            p.id,
            p.room_id,
            "" if conn.admitted else " (lobby)",
        )
        if conn.admitted:
            await self._broadcast_roster(p.room_id)
        else:
            await conn.send(encode("lobby", message="Waiting for the host to let you in."))
        if not conn.admitted or conn.is_host:
            # A host arriving after its guests must learn who is already waiting.
            await self._announce_lobby(p.room_id)
        return conn

    async def _session(self, conn: Connection) -> None:
        async for msg in conn.ws:
            if conn.outbox.closing:
                return  # kicked, replaced or ended: what it sent after that is not heard
            try:
                if not conn.bucket.take():
                    raise RateLimited()
                message = decode_frame(msg, SESSION_TYPES)
                if message is None:
                    return
                if not conn.admitted and message["type"] not in LOBBY_TYPES:
                    raise Refusal("in_lobby", "You are still waiting in the lobby.")
                if message["type"] == "bye":
                    return  # the caller leaves the room first, then closes
                await self._handlers[message["type"]](conn, message)
            except Refusal as refusal:
                await conn.send(encode("warning", code=refusal.code, message=str(refusal)))
            except RateLimited as err:
                refuse(conn.outbox, err, CLOSE_RATE)
                return
            except ProtocolError as err:
                refuse(conn.outbox, err, CLOSE_PROTOCOL)
                return
            except ConclaveError as err:
                await conn.send(encode("warning", code=err.code, message=str(err)))

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
            await self._broadcast_roster(room_id)
        else:
            await self._announce_lobby(room_id)
        if conn.published and self._relay is not None:
            with contextlib.suppress(ConclaveError):
                await self._relay.leave(room_id, conn.id)

    # --- messages --------------------------------------------------------------------------

    async def _ping(self, conn: Connection, message: dict[str, Any]) -> None:
        await conn.send(encode("pong"))

    async def _keys(self, conn: Connection, message: dict[str, Any]) -> None:
        if conn.announced:
            raise Refusal("keys_fixed", "This connection's public keys are already announced.")
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
            await self._broadcast(p.room_id, encode("roster", roster=without))
        live.keys[p.id] = conn.keys = keys
        await self._broadcast_roster(p.room_id)

    async def _key(self, conn: Connection, message: dict[str, Any]) -> None:
        # The hub routes key messages by their envelope and never looks inside the payload.
        to = text_field(message, "to", max_length=64)
        payload = text_field(message, "payload", max_length=MAX_KEY_PAYLOAD)
        live = self._rooms.get(conn.participant.room_id)
        target = None if live is None else live.members.get(to)
        if target is None or not target.admitted or target is conn:
            raise Refusal("undeliverable", f"{to} is not in this meeting.")
        await target.send(encode("key", **{"from": conn.id, "payload": payload}))

    async def _publish(self, conn: Connection, message: dict[str, Any]) -> None:
        offer = _sdp(message, "offer", "offer")
        if self._relay is None:
            raise RelayUnavailable("This server runs without a media relay.")
        if conn.published:
            raise Refusal("already_published", "Media is already negotiated on this connection.")
        conn.published = True
        try:
            answer = await self._relay.join(conn.participant.room_id, conn.id, offer)
        except BaseException:
            conn.published = False
            raise
        await conn.send(encode("answer", answer=answer))
        conn.answered.set()

    async def _answer(self, conn: Connection, message: dict[str, Any]) -> None:
        answer = _sdp(message, "answer", "answer")
        negotiation = message.get("negotiation")
        if not isinstance(negotiation, int) or isinstance(negotiation, bool):
            raise ProtocolError("Field 'negotiation' must be an integer.")
        if self._relay is None or not conn.published:
            raise Refusal("no_negotiation", "There is no media negotiation to answer.")
        await self._relay.answer(conn.participant.room_id, conn.id, negotiation, answer)

    async def _relay_offer(
        self, room_id: str, participant_id: str, negotiation: int, offer: dict[str, Any]
    ) -> None:
        live = self._rooms.get(room_id)
        conn = None if live is None else live.members.get(participant_id)
        if conn is None or not conn.published:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(conn.answered.wait(), OFFER_HOLD_SECONDS)
        await conn.send(encode("offer", negotiation=negotiation, offer=offer))

    async def _relay_lost(self, room_id: str) -> None:
        """The room's worker died: every client negotiates afresh (the pool picks a live one)."""
        live = self._rooms.get(room_id)
        for conn in [] if live is None else live.admitted():
            if conn.published:
                conn.published = False
                conn.answered.clear()
                await conn.send(encode("media_lost", message="The media relay restarted."))

    async def _admit_guest(self, conn: Connection, message: dict[str, Any]) -> None:
        await self._service.host_of(conn.id)
        target_id = text_field(message, "participant", max_length=64)
        live = self._rooms[conn.participant.room_id]
        target = live.members.get(target_id)
        if target is None or target.admitted:
            raise Refusal("not_waiting", "Nobody by that id is waiting in the lobby.")
        target.admitted = True
        live.admitted_ids.add(target.id)
        await target.send(encode("admitted", roster=live.roster()))
        await self._broadcast_roster(conn.participant.room_id)
        await self._announce_lobby(conn.participant.room_id)

    async def _kick(self, conn: Connection, message: dict[str, Any]) -> None:
        target = text_field(message, "participant", max_length=64)
        await self._service.kick(conn.id, target)

    async def _room_control(self, conn: Connection, message: dict[str, Any]) -> None:
        """lock, unlock or end, as the host's chat identity would from a slash command."""
        room, actor = await self._service.host_of(conn.id)
        action = {
            "lock": self._service.lock,
            "unlock": self._service.unlock,
            "end": self._service.end,
        }[message["type"]]
        await action(actor, room.id)

    # --- helpers ---------------------------------------------------------------------------

    async def _broadcast(self, room_id: str, text: str, *, admitted_only: bool = True) -> None:
        live = self._rooms.get(room_id)
        if live is None:
            return
        for conn in live.admitted() if admitted_only else list(live.members.values()):
            conn.outbox.put(text)

    async def _broadcast_roster(self, room_id: str) -> None:
        await self._broadcast(room_id, encode("roster", roster=self.roster(room_id)))

    async def _announce_lobby(self, room_id: str) -> None:
        live = self._rooms.get(room_id)
        if live is None:
            return
        waiting = [
            {"participant_id": c.id, "name": c.participant.display_name} for c in live.waiting()
        ]
        text = encode("lobby_waiting", waiting=waiting)
        for host in live.hosts():
            host.outbox.put(text)

    async def on_event(self, event: Event) -> None:
        if isinstance(event, RoomEnded):
            live = self._rooms.pop(event.room_id, None)
            self._admissions.room_ended(event.room_id)
            ended = encode("ended", reason=event.reason)
            for member in [] if live is None else list(live.members.values()):
                member.outbox.close(CLOSE_ENDED, b"ended", ended)
            if self._relay is not None:
                with contextlib.suppress(ConclaveError):
                    await self._relay.close_room(event.room_id)
        elif isinstance(event, RoomLockChanged):
            await self._broadcast(event.room_id, encode("room", locked=event.locked))
        elif isinstance(event, ParticipantKicked):
            self._admissions.participant_kicked(event.participant_id)
            live = self._rooms.get(event.room_id)
            conn = None if live is None else live.members.get(event.participant_id)
            if live is not None:
                live.admitted_ids.discard(event.participant_id)
            if conn is not None:
                kicked = encode("kicked", message="The host removed you from the meeting.")
                conn.outbox.close(CLOSE_KICKED, b"kicked", kicked)
                # Out of the room now, not when its socket gets round to closing.
                await self._leave(conn)
        elif isinstance(event, LinkReused):
            # The host learns, in the meeting, who joined with a link that came back.
            live = self._rooms.get(event.room_id)
            notice = encode(
                "notice",
                code="link_reused",
                participant=event.participant_id,
                message=event.message,
            )
            for host in [] if live is None else live.hosts():
                await host.send(notice)

    async def close_all(self) -> None:
        conns = [conn for live in self._rooms.values() for conn in live.members.values()]
        self._rooms.clear()
        for conn in conns:
            conn.outbox.close(WSCloseCode.GOING_AWAY, b"server shutdown")
        await asyncio.gather(*(conn.outbox.finish() for conn in conns))
