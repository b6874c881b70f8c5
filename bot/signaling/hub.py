"""The signaling hub behind ``/ws``.

A connection must open with ``hello`` carrying an invite (``{"room", "invite"}``) or a resume
token (``{"resume"}``); it is answered with ``welcome`` or an ``error`` naming why not, after
which the connection is closed. Guests of a room with a lobby wait until the host admits them.
Admitted participants see the roster, exchange opaque key messages addressed to one
recipient, and negotiate media with the room's relay worker through the hub. ``error`` always
closes the connection; ``warning`` reports a refused request and keeps it open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from bot.core.events import Event, LinkReused, ParticipantKicked, RoomEnded, RoomLockChanged
from bot.core.models import Admission, Room
from bot.core.service import MeetingService
from bot.e2ee.announce import KeyAnnouncement
from bot.e2ee.errors import RosterError
from bot.errors import ConclaveError, ProtocolError
from bot.signaling.envelope import MAX_MESSAGE_BYTES, decode, encode, text_field
from bot.signaling.ratelimit import TokenBucket
from bot.signaling.relay_port import MediaRelay, RelayUnavailable
from bot.signaling.room import Connection, LiveRoom

log = logging.getLogger(__name__)

# aiohttp drops anything this big before it reaches us; below it we answer with our own error.
WIRE_LIMIT = 4 * MAX_MESSAGE_BYTES
CLOSE_REFUSED = 4403
CLOSE_PROTOCOL = 4400
CLOSE_ENDED = 4410
CLOSE_REPLACED = 4409
CLOSE_KICKED = 4401
CLOSE_RATE = 4429

MAX_SDP = 60_000
OFFER_HOLD_SECONDS = 10.0
MAX_KEY_PAYLOAD = 16_384

HELLO_TYPES = frozenset({"hello"})
LOBBY_TYPES = frozenset({"ping", "bye"})
SESSION_TYPES = frozenset(
    {"ping", "bye", "keys", "key", "publish", "answer", "admit", "kick", "lock", "unlock", "end"}
)


class RoomFull(ConclaveError):
    code = "room_full"

    def __init__(self, cap: int) -> None:
        super().__init__(f"This meeting is full ({cap} people).")


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
    ) -> None:
        self._service = service
        self._hello_timeout = hello_timeout
        self._relay = relay
        self._cap = max_participants
        self._rate = (rate_limit, rate_burst)
        self._rooms: dict[str, LiveRoom] = {}
        # Seats held for hellos being redeemed, so concurrent hellos cannot overfill a room.
        self._joining: dict[str, int] = {}
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
        await ws.prepare(request)
        conn: Connection | None = None
        held: list[str] = []
        try:
            admission = await self._hello(ws, held)
            if admission is None:
                return ws
            conn = await self._enter(ws, admission)
            self._release(held)
            await self._session(conn)
        finally:
            self._release(held)
            if conn is not None:
                await self._leave(conn)
            if not ws.closed:
                await ws.close()
        return ws

    def _hold_seat(self, room_id: str, participant_id: str | None, held: list[str]) -> None:
        live = self._rooms.get(room_id)
        others = 0 if live is None else sum(1 for pid in live.members if pid != participant_id)
        if others + self._joining.get(room_id, 0) >= self._cap:
            raise RoomFull(self._cap)
        self._joining[room_id] = self._joining.get(room_id, 0) + 1
        held.append(room_id)

    def _release(self, held: list[str]) -> None:
        while held:
            room_id = held.pop()
            left = self._joining.get(room_id, 0) - 1
            if left > 0:
                self._joining[room_id] = left
            else:
                self._joining.pop(room_id, None)

    # --- phases of a connection ---------------------------------------------------------

    async def _hello(self, ws: web.WebSocketResponse, held: list[str]) -> Admission | None:
        try:
            msg = await asyncio.wait_for(ws.receive(), timeout=self._hello_timeout)
        except TimeoutError:
            await self._refuse(ws, ProtocolError("No hello received in time."), CLOSE_PROTOCOL)
            return None
        try:
            hello = self._decode(msg, HELLO_TYPES)
            if hello is None:
                return None
            if "resume" in hello:
                admission = await self._service.resume(text_field(hello, "resume"))
                self._hold_seat(admission.room.id, admission.participant.id, held)
                return admission
            room_id = text_field(hello, "room", max_length=64)
            # Refuse a full room before the invite is spent.
            self._hold_seat(room_id, None, held)
            return await self._service.redeem(room_id, text_field(hello, "invite"))
        except ProtocolError as err:
            await self._refuse(ws, err, CLOSE_PROTOCOL)
        except ConclaveError as err:
            await self._refuse(ws, err, CLOSE_REFUSED)
        return None

    async def _enter(self, ws: web.WebSocketResponse, admission: Admission) -> Connection:
        p = admission.participant
        room = admission.room
        conn = Connection(ws=ws, participant=p, bucket=TokenBucket(*self._rate))
        live = self._rooms.setdefault(p.room_id, LiveRoom())
        previous = live.members.get(p.id)
        if previous is not None:
            # A resumed session supersedes a connection that has not noticed it is dead.
            replaced = encode("error", code="replaced", message="Rejoined elsewhere.")
            await self._drop(previous, replaced, CLOSE_REPLACED, b"replaced")
        live.members[p.id] = conn
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
            try:
                if not conn.bucket.take():
                    raise RateLimited()
                message = self._decode(msg, SESSION_TYPES)
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
                await self._refuse(conn.ws, err, CLOSE_RATE)
                return
            except ProtocolError as err:
                await self._refuse(conn.ws, err, CLOSE_PROTOCOL)
                return
            except ConclaveError as err:
                await conn.send(encode("warning", code=err.code, message=str(err)))

    async def _leave(self, conn: Connection) -> None:
        room_id = conn.participant.room_id
        live = self._rooms.get(room_id)
        if live is None or live.members.get(conn.id) is not conn:
            return
        del live.members[conn.id]
        if not live.members and not live.admitted_ids:
            del self._rooms[room_id]
        log.info("participant %s left room %s", conn.id, room_id)
        if conn.published and self._relay is not None:
            with contextlib.suppress(ConclaveError):
                await self._relay.leave(room_id, conn.id)
        if conn.admitted:
            await self._broadcast_roster(room_id)
        else:
            await self._announce_lobby(room_id)

    # --- messages --------------------------------------------------------------------------

    async def _ping(self, conn: Connection, message: dict[str, Any]) -> None:
        await conn.send(encode("pong"))

    async def _keys(self, conn: Connection, message: dict[str, Any]) -> None:
        if conn.keys is not None:
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
        conn.keys = announced.to_json()
        await self._broadcast_roster(conn.participant.room_id)

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

    @staticmethod
    def _decode(msg: Any, accepted: frozenset[str]) -> dict[str, Any] | None:
        """The message, None if the peer closed, ProtocolError if it broke the protocol."""
        if msg.type == WSMsgType.TEXT:
            return decode(msg.data, accepted)
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
            return None
        if msg.type == WSMsgType.BINARY:
            raise ProtocolError("Binary messages are not part of the protocol.")
        if msg.type == WSMsgType.ERROR:
            raise ProtocolError(f"Message rejected: {msg.data}")
        return None

    @staticmethod
    async def _refuse(ws: web.WebSocketResponse, err: ConclaveError, close_code: int) -> None:
        log.info("websocket refused: %s", err.code)
        if not ws.closed:
            with contextlib.suppress(ConnectionError):
                await ws.send_str(encode("error", code=err.code, message=str(err)))
            await ws.close(code=close_code, message=err.code.encode())

    @staticmethod
    async def _drop(conn: Connection, last_word: str, close_code: int, reason: bytes) -> None:
        """Send ``last_word`` (an encoded message), then close the connection."""
        await conn.send(last_word)
        await conn.ws.close(code=close_code, message=reason)

    async def _broadcast(self, room_id: str, text: str, *, admitted_only: bool = True) -> None:
        live = self._rooms.get(room_id)
        if live is None:
            return
        targets = live.admitted() if admitted_only else list(live.members.values())
        await asyncio.gather(*(c.send(text) for c in targets))

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
        await asyncio.gather(*(h.send(text) for h in live.hosts()))

    async def on_event(self, event: Event) -> None:
        if isinstance(event, RoomEnded):
            live = self._rooms.pop(event.room_id, None)
            if self._relay is not None:
                with contextlib.suppress(ConclaveError):
                    await self._relay.close_room(event.room_id)
            for member in [] if live is None else list(live.members.values()):
                await member.send(encode("ended", reason=event.reason))
                await member.ws.close(code=CLOSE_ENDED, message=b"ended")
        elif isinstance(event, RoomLockChanged):
            await self._broadcast(event.room_id, encode("room", locked=event.locked))
        elif isinstance(event, ParticipantKicked):
            live = self._rooms.get(event.room_id)
            conn = None if live is None else live.members.get(event.participant_id)
            if live is not None:
                live.admitted_ids.discard(event.participant_id)
            if conn is not None:
                kicked = encode("kicked", message="The host removed you from the meeting.")
                await self._drop(conn, kicked, CLOSE_KICKED, b"kicked")
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
        for live in list(self._rooms.values()):
            for conn in list(live.members.values()):
                await conn.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
        self._rooms.clear()
