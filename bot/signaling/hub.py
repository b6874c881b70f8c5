"""The signaling hub behind ``/ws``: lets a connection in, keeps each room's roster current.

A connection must open with ``hello`` carrying an invite (``{"room", "invite"}``) or a resume
token (``{"resume"}``); it is answered with ``welcome`` or an ``error`` naming why not, after
which the connection is closed. Admitted connections receive ``roster`` whenever someone
joins or leaves, and ``ended`` when the meeting is over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from bot.core.events import Event, RoomEnded, RoomLockChanged
from bot.core.models import Admission, Participant, Room
from bot.core.service import MeetingService
from bot.errors import ConclaveError, ProtocolError
from bot.signaling.envelope import MAX_MESSAGE_BYTES, decode, encode, text_field

log = logging.getLogger(__name__)

# aiohttp drops anything this big before it reaches us; below it we answer with our own error.
WIRE_LIMIT = 4 * MAX_MESSAGE_BYTES
CLOSE_REFUSED = 4403
CLOSE_PROTOCOL = 4400
CLOSE_ENDED = 4410
CLOSE_REPLACED = 4409

HELLO_TYPES = frozenset({"hello"})
SESSION_TYPES = frozenset({"ping", "bye"})


@dataclass(eq=False)
class Connection:
    ws: web.WebSocketResponse
    participant: Participant
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def send(self, text: str) -> None:
        async with self.lock:
            if not self.ws.closed:
                # A peer that vanished mid-send is cleaned up by its own reader.
                with contextlib.suppress(ConnectionError):
                    await self.ws.send_str(text)


def _roster_entry(p: Participant) -> dict[str, Any]:
    return {
        "participant_id": p.id,
        "name": p.display_name,
        "role": p.role.value,
        "sender_index": p.sender_index,
    }


def _room_info(room: Room) -> dict[str, Any]:
    return {"id": room.id, "topic": room.topic, "state": room.state.value, "lobby": room.lobby}


class Hub:
    def __init__(self, service: MeetingService, hello_timeout: float) -> None:
        self._service = service
        self._hello_timeout = hello_timeout
        self._rooms: dict[str, dict[str, Connection]] = {}
        service.events.subscribe(self.on_event)

    def roster(self, room_id: str) -> list[dict[str, Any]]:
        members = self._rooms.get(room_id, {})
        return [
            _roster_entry(c.participant)
            for c in sorted(members.values(), key=lambda c: c.participant.sender_index)
        ]

    def connection_count(self) -> int:
        return sum(len(m) for m in self._rooms.values())

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=WIRE_LIMIT, heartbeat=30.0)
        await ws.prepare(request)
        conn: Connection | None = None
        try:
            admission = await self._admit(ws)
            if admission is None:
                return ws
            conn = await self._join(ws, admission)
            await self._session(conn)
        finally:
            if conn is not None:
                await self._leave(conn)
            if not ws.closed:
                await ws.close()
        return ws

    # --- phases of a connection ---------------------------------------------------------

    async def _admit(self, ws: web.WebSocketResponse) -> Admission | None:
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
                return await self._service.resume(text_field(hello, "resume"))
            room_id = text_field(hello, "room", max_length=64)
            return await self._service.redeem(room_id, text_field(hello, "invite"))
        except ProtocolError as err:
            await self._refuse(ws, err, CLOSE_PROTOCOL)
        except ConclaveError as err:
            await self._refuse(ws, err, CLOSE_REFUSED)
        return None

    async def _join(self, ws: web.WebSocketResponse, admission: Admission) -> Connection:
        p = admission.participant
        conn = Connection(ws=ws, participant=p)
        members = self._rooms.setdefault(p.room_id, {})
        previous = members.get(p.id)
        members[p.id] = conn
        if previous is not None:
            # A resumed session supersedes a connection that has not noticed it is dead.
            await previous.send(encode("error", code="replaced", message="Rejoined elsewhere."))
            await previous.ws.close(code=CLOSE_REPLACED, message=b"replaced")
        await conn.send(
            encode(
                "welcome",
                participant_id=p.id,
                sender_index=p.sender_index,
                name=p.display_name,
                role=p.role.value,
                room=_room_info(admission.room),
                roster=self.roster(p.room_id),
                resume_token=admission.resume_token.reveal(),
            )
        )
        log.info("participant %s connected to room %s", p.id, p.room_id)
        await self._broadcast_roster(p.room_id)
        return conn

    async def _session(self, conn: Connection) -> None:
        async for msg in conn.ws:
            try:
                message = self._decode(msg, SESSION_TYPES)
            except ProtocolError as err:
                await self._refuse(conn.ws, err, CLOSE_PROTOCOL)
                return
            if message is None:
                return
            if message["type"] == "ping":
                await conn.send(encode("pong"))
            elif message["type"] == "bye":
                await conn.ws.close()
                return

    async def _leave(self, conn: Connection) -> None:
        room_id = conn.participant.room_id
        members = self._rooms.get(room_id)
        if members is None or members.get(conn.participant.id) is not conn:
            return
        del members[conn.participant.id]
        if not members:
            del self._rooms[room_id]
        log.info("participant %s left room %s", conn.participant.id, room_id)
        await self._broadcast_roster(room_id)

    # --- helpers -------------------------------------------------------------------------

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

    async def _broadcast(self, room_id: str, text: str) -> None:
        members = list(self._rooms.get(room_id, {}).values())
        await asyncio.gather(*(c.send(text) for c in members))

    async def _broadcast_roster(self, room_id: str) -> None:
        await self._broadcast(room_id, encode("roster", roster=self.roster(room_id)))

    async def on_event(self, event: Event) -> None:
        if isinstance(event, RoomEnded):
            members = list(self._rooms.pop(event.room_id, {}).values())
            for conn in members:
                await conn.send(encode("ended", reason=event.reason))
                await conn.ws.close(code=CLOSE_ENDED, message=b"ended")
        elif isinstance(event, RoomLockChanged):
            await self._broadcast(event.room_id, encode("room", locked=event.locked))

    async def close_all(self) -> None:
        for members in list(self._rooms.values()):
            for conn in list(members.values()):
                await conn.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
        self._rooms.clear()
