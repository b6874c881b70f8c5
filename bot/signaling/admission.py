"""A new websocket's way in, and the limits on it before anyone is authenticated.

One address may hold only so many websockets that have not completed their hello; the hello
must come within the hello timeout; a room has only so many seats, counting hellos still being
checked. Each hello being checked is an ``Arrival`` that hears of a kick or an end meanwhile,
so that a resume in flight is not let in for a participant who is already gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

from aiohttp import web

from bot.core.links import split_resume_token
from bot.core.models import Admission
from bot.core.service import MeetingService
from bot.errors import ConclaveError, ProtocolError
from bot.signaling.closing import CLOSE_PROTOCOL, CLOSE_REFUSED, refuse
from bot.signaling.envelope import PROTOCOL_VERSION, decode_frame, text_field
from bot.signaling.outbox import Outbox
from bot.signaling.room import Arrival, LiveRoom

log = logging.getLogger(__name__)

HELLO_TYPES = frozenset({"hello"})


class UnsupportedVersion(ProtocolError):
    code = "unsupported_version"

    def __init__(self, version: object) -> None:
        spoken = f"version {version}" if isinstance(version, int) else "an older version"
        super().__init__(
            f"This client speaks {spoken} of the meeting protocol and this server speaks version "
            f"{PROTOCOL_VERSION}: reload the page, or update conclave."
        )


class RoomFull(ConclaveError):
    code = "room_full"

    def __init__(self, cap: int) -> None:
        super().__init__(f"This meeting is full ({cap} people).")


class Admissions:
    def __init__(
        self,
        service: MeetingService,
        rooms: dict[str, LiveRoom],
        *,
        hello_timeout: float,
        max_participants: int,
        unauthenticated_per_address: int,
    ) -> None:
        self._service = service
        self._rooms = rooms  # the hub's, read to count seats
        self._hello_timeout = hello_timeout
        self._cap = max_participants
        self._max_unheard = unauthenticated_per_address
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

    async def hello(
        self, ws: web.WebSocketResponse, outbox: Outbox, arrival: Arrival
    ) -> Admission | None:
        """The admission a hello earns; None once the connection has been refused."""
        try:
            msg = await asyncio.wait_for(ws.receive(), timeout=self._hello_timeout)
        except TimeoutError:
            refuse(outbox, ProtocolError("No hello received in time."), CLOSE_PROTOCOL)
            return None
        try:
            hello = decode_frame(msg, HELLO_TYPES)
            if hello is None:
                return None
            # Before any credential is looked at: an old client must not spend its invite.
            version = hello.get("version")
            if version != PROTOCOL_VERSION or isinstance(version, bool):
                raise UnsupportedVersion(version)
            if "resume" in hello:
                token = text_field(hello, "resume")
                # Known before the service looks, so that a kick meanwhile is heard.
                arrival.participant_id, _ = split_resume_token(token)
                admission = await self._service.resume(token)
                self._hold_seat(arrival, admission.room.id, admission.participant.id)
                return admission
            room_id = text_field(hello, "room", max_length=64)
            # Refuse a full room before the invite is spent.
            self._hold_seat(arrival, room_id, None)
            admission = await self._service.redeem(room_id, text_field(hello, "invite"))
            arrival.participant_id = admission.participant.id
            return admission
        except ProtocolError as err:
            refuse(outbox, err, CLOSE_PROTOCOL)
        except ConclaveError as err:
            refuse(outbox, err, CLOSE_REFUSED)
        return None

    def _hold_seat(self, arrival: Arrival, room_id: str, participant_id: str | None) -> None:
        live = self._rooms.get(room_id)
        others = 0 if live is None else sum(1 for pid in live.members if pid != participant_id)
        arriving = sum(1 for a in self._arrivals if a.room_id == room_id)
        if others + arriving >= self._cap:
            raise RoomFull(self._cap)
        arrival.place(room_id, participant_id)
