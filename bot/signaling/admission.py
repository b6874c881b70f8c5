"""A new websocket's way in, and the limits on it before anyone is authenticated.

One address may hold only so many websockets that have not completed their hello; the hello
must come within the hello timeout; a room has only so many seats (``seats.py``), counting
hellos still being checked. Each hello being checked is an ``Arrival`` that hears of a kick or
an end meanwhile, so that a resume in flight is not let in for a participant who is already
gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from aiohttp import web

from bot.config import SignalingSettings
from bot.core.links import split_resume_token
from bot.core.models import Admission
from bot.core.service import MeetingService
from bot.errors import ConclaveError, ProtocolError
from bot.signaling.closing import CLOSE_PROTOCOL, CLOSE_REFUSED, refuse
from bot.signaling.envelope import decode_frame
from bot.signaling.messages import HELLO
from bot.signaling.outbox import Outbox
from bot.signaling.room import Arrival, Connection, LiveRoom
from bot.signaling.seats import Seats

log = logging.getLogger(__name__)

# Installs an admitted connection in its room (the hub's part); None if it was turned away.
Enter = Callable[[Admission, Arrival], Awaitable[Connection | None]]


class Admissions:
    def __init__(
        self, service: MeetingService, rooms: dict[str, LiveRoom], settings: SignalingSettings
    ) -> None:
        self._service = service
        self._seats = Seats(rooms, settings.max_participants)
        self._hello_timeout = settings.hello_timeout
        self._max_unheard = settings.unauthenticated_per_address
        self._unheard: dict[str, int] = {}
        self._arrivals: set[Arrival] = set()

    @contextlib.contextmanager
    def unauthenticated(self, request: web.Request) -> Iterator[None]:
        """Count a websocket against its address while it has not completed its hello.

        Over the cap it is refused before the upgrade, so a flood of silent sockets costs
        one HTTP answer each.
        """
        address = request.remote or "unknown"
        if self._unheard.get(address, 0) >= self._max_unheard:
            log.info("refused a websocket from %s: too many have not said hello", address)
            raise web.HTTPTooManyRequests(
                text="Too many connections from your address have not said hello yet."
            )
        self._unheard[address] = self._unheard.get(address, 0) + 1
        try:
            yield
        finally:
            left = self._unheard.pop(address) - 1
            if left > 0:
                self._unheard[address] = left

    @contextlib.contextmanager
    def arrival(self) -> Iterator[Arrival]:
        arrival = Arrival()
        self._arrivals.add(arrival)
        try:
            yield arrival
        finally:
            self._arrivals.discard(arrival)

    def room_ended(self, room_id: str) -> None:
        for arrival in self._arrivals:
            arrival.room_ended(room_id)

    def participant_kicked(self, participant_id: str) -> None:
        for arrival in self._arrivals:
            arrival.participant_kicked(participant_id)

    async def admit(
        self, ws: web.WebSocketResponse, outbox: Outbox, enter: Enter
    ) -> Connection | None:
        """Admit a hello, and have ``enter`` install the connection while its seat is held;
        None once the connection has been refused."""
        with self.arrival() as arrival:
            hello = await self._hello(ws, outbox)
            if hello is None:
                return None
            try:
                if "resume" in hello:
                    token = hello["resume"]
                    # Known before the service looks, so that a kick meanwhile is heard.
                    arrival.participant_id, _ = split_resume_token(token)
                    admission = await self._service.resume(token)
                    room_id, participant_id = admission.room.id, admission.participant.id
                    with self._seats.hold(room_id, participant_id):
                        arrival.place(room_id, participant_id)
                        return await enter(admission, arrival)
                room_id = hello["room"]
                # Refuse a full room before the invite is spent.
                with self._seats.hold(room_id):
                    arrival.place(room_id, None)
                    admission = await self._service.redeem(room_id, hello["invite"])
                    arrival.participant_id = admission.participant.id
                    return await enter(admission, arrival)
            except ProtocolError as err:
                refuse(outbox, err, CLOSE_PROTOCOL)
            except ConclaveError as err:
                refuse(outbox, err, CLOSE_REFUSED)
            return None

    async def _hello(self, ws: web.WebSocketResponse, outbox: Outbox) -> dict[str, Any] | None:
        """The hello, checked field by field (its version first: an old client must not spend
        its invite); None once the connection has been refused or has closed."""
        try:
            msg = await asyncio.wait_for(ws.receive(), timeout=self._hello_timeout)
        except TimeoutError:
            refuse(outbox, ProtocolError("No hello received in time."), CLOSE_PROTOCOL)
            return None
        try:
            hello = decode_frame(msg, (HELLO.type,))
            return None if hello is None else HELLO.check(hello)
        except ProtocolError as err:
            refuse(outbox, err, CLOSE_PROTOCOL)
            return None
