"""A participant's signaling session: redeem the invite, wait in the lobby if there is one,
exchange keys, negotiate media with the relay through the hub, rejoin after a drop.

Every message from the hub is checked against its definition (``bot/signaling/messages.py``)
and handled by the one handler its type names; what a person is told is ``presenter.py``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiortc.exceptions import InvalidStateError

from bot.client.keyring import Keyring
from bot.client.media import MediaSession
from bot.client.presenter import Presenter
from bot.core.links import JoinLink
from bot.e2ee.errors import KeysTampered
from bot.errors import CodedError, ConclaveError, ProtocolError
from bot.ice_servers import IceServer
from bot.rtc.peer import IceSettings
from bot.secret import Secret
from bot.signaling.envelope import PROTOCOL_VERSION, WIRE_LIMIT
from bot.signaling.messages import TO_CLIENT, parse, to_server

log = logging.getLogger(__name__)

RESUME_ATTEMPTS = 5
PUBLISH_ATTEMPTS = 10


class RefusedByServer(CodedError):
    """The hub turned this client away with an ``error``; ``code`` is the hub's reason."""


class Unreachable(ConclaveError):
    code = "unreachable"


@dataclass(frozen=True)
class Welcome:
    participant_id: str
    sender_index: int
    name: str
    role: str
    room_id: str
    topic: str
    # The server's STUN and TURN servers for this participant's peer connection.
    ice_servers: tuple[IceServer, ...] = ()


@dataclass
class MediaOptions:
    enabled: bool = True
    video: str = "testsrc"
    audio: str = "tone"
    record_dir: Path | None = None
    # ICE servers of this machine's own, e.g. its [relay] settings, after the ones the
    # server's welcome gives; None: only those.
    ice: IceSettings | None = None
    relay_only: bool = False  # ICE through a TURN server only (iceTransportPolicy "relay")
    activation_delay: float = 1.0
    grace_period: float = 10.0


Handler = Callable[[dict[str, Any]], Awaitable[None]]


def _shown(show: Callable[[dict[str, Any]], None]) -> Handler:
    """A handler for a message that only tells the person something."""

    async def handler(message: dict[str, Any]) -> None:
        show(message)

    return handler


class ClientSession:
    """Holds one connection at a time; reconnects with the resume token if it drops."""

    def __init__(
        self, link: JoinLink, say: Callable[[str], None], media: MediaOptions | None = None
    ) -> None:
        self._link = link
        self.presenter = Presenter(say)
        self._options = media or MediaOptions(enabled=False)
        self._resume: Secret | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._roster: list[dict[str, Any]] = []
        self.welcome: Welcome | None = None
        self.keyring: Keyring | None = None
        self.media: MediaSession | None = None
        self.ended: str | None = None
        self.admitted = False
        self._retry: asyncio.Future[None] | None = None
        self._publish_attempts = 0
        self._welcomes = 0
        p = self.presenter
        # One handler per message the hub may send (``messages.TO_CLIENT``).
        self.handlers: dict[str, Handler] = {
            "welcome": self._on_welcome,
            "admitted": self._on_admitted,
            "roster": self._on_roster_message,
            "lobby": _shown(lambda m: p.server_said(m["message"])),
            "lobby_waiting": _shown(lambda m: p.lobby_waiting(m["waiting"])),
            "room": _shown(lambda m: p.room_locked(m["locked"])),
            "notice": _shown(lambda m: p.notice(m["message"])),
            "pong": _shown(lambda m: None),
            "key": self._on_key,
            "answer": self._on_answer,
            "offer": self._on_offer,
            "media_lost": self._on_media_lost,
            "warning": self._on_warning,
            "ended": self._on_ended,
            "kicked": self._on_kicked,
            "error": self._on_error,
        }

    # --- connection ------------------------------------------------------------------------

    async def run(self, duration: float | None) -> None:
        async with aiohttp.ClientSession() as http:
            try:
                await asyncio.wait_for(self._run(http), timeout=duration)
            except TimeoutError:
                return
            finally:
                if self._retry is not None:
                    self._retry.cancel()
                await self._stop_media()

    async def _run(self, http: aiohttp.ClientSession) -> None:
        attempts = 0
        while True:
            welcomes = self._welcomes
            if self._resume is None:
                hello = {"room": self._link.room_id, "invite": self._link.credential.reveal()}
            else:
                hello = {"resume": self._resume.reveal()}
            try:
                await self._connect(http, hello)
            except (aiohttp.ClientError, OSError) as exc:
                if self._resume is None:
                    raise Unreachable(
                        f"Cannot reach the meeting server at {self._link.base_url} ({exc})."
                    ) from None
            if self.ended is not None:
                return
            # Only drops in a row count: a long meeting may see many rejoins in all.
            attempts = 1 if self._welcomes > welcomes else attempts + 1
            if attempts > RESUME_ATTEMPTS:
                raise Unreachable("Lost the connection to the meeting server and could not rejoin.")
            self.presenter.connection_lost()
            await self._stop_media()
            await asyncio.sleep(min(0.5 * 2**attempts, 5.0))

    async def _connect(self, http: aiohttp.ClientSession, hello: dict[str, str]) -> None:
        async with http.ws_connect(
            self._link.websocket_url, max_msg_size=WIRE_LIMIT, heartbeat=30.0
        ) as ws:
            self._ws = ws
            ticker = asyncio.ensure_future(self._tick())
            try:
                await ws.send_str(to_server("hello", version=PROTOCOL_VERSION, **hello))
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        break
                    await self._on_text(msg.data)
                    if self.ended is not None:
                        return
            finally:
                ticker.cancel()
                self._ws = None
                if self.ended is None and not ws.closed:
                    with contextlib.suppress(Exception):
                        await ws.send_str(to_server("bye"))

    async def send(self, kind: str, **fields: Any) -> None:
        if self._ws is not None and not self._ws.closed:
            await self._ws.send_str(to_server(kind, **fields))

    async def _tick(self) -> None:
        # Pending sender keys must start being used (and old ones expire) even while idle.
        while True:
            await asyncio.sleep(0.25)
            if self.keyring is not None:
                self.keyring.tick()

    # --- messages --------------------------------------------------------------------------

    async def _on_text(self, text: str) -> None:
        # Sized by the websocket's own limit: a large room's roster may outgrow the envelope.
        try:
            message = parse(text, TO_CLIENT, max_bytes=WIRE_LIMIT)
        except ProtocolError as err:
            raise ProtocolError(f"The server sent a malformed message: {err}") from None
        await self.handlers[message["type"]](message)

    async def _on_welcome(self, message: dict[str, Any]) -> None:
        room = message["room"]
        first = self.welcome is None
        self._welcomes += 1
        self._resume = Secret(message["resume_token"])
        self.welcome = Welcome(
            participant_id=message["participant_id"],
            sender_index=message["sender_index"],
            name=message["name"],
            role=message["role"],
            room_id=room["id"],
            topic=room["topic"],
            ice_servers=tuple(IceServer.from_json(s) for s in message.get("ice_servers", [])),
        )
        if first:
            self.presenter.joined(
                room["topic"], self.welcome.name, self.welcome.role, self.welcome.participant_id
            )
        else:
            self.presenter.rejoined()
        self.admitted = message["admitted"]
        if self.admitted:
            await self._start_meeting()
            await self._on_roster(message["roster"])

    async def _on_admitted(self, message: dict[str, Any]) -> None:
        self.presenter.let_in()
        self.admitted = True
        await self._start_meeting()
        await self._on_roster(message["roster"])

    async def _on_roster_message(self, message: dict[str, Any]) -> None:
        await self._on_roster(message["roster"])

    async def _on_key(self, message: dict[str, Any]) -> None:
        if self.keyring is not None:
            self.keyring.on_key(message["from"], message["payload"])

    async def _on_answer(self, message: dict[str, Any]) -> None:
        media = self.media
        if media is not None:
            with _usable_description(), _unless_replaced(self, media):
                await media.accept_answer(message["answer"])
            self._publish_attempts = 0

    async def _on_offer(self, message: dict[str, Any]) -> None:
        media = self.media
        if media is None:
            return
        with _usable_description(), _unless_replaced(self, media):
            answer = await media.answer_offer(message["offer"])
            await self.send("answer", negotiation=message["negotiation"], answer=answer)

    async def _on_media_lost(self, message: dict[str, Any]) -> None:
        # Our relay worker went away, or our own connection to it died (the server's sentence
        # says which); negotiate again (keys and roster are unaffected).
        self.presenter.server_said(message["message"])
        if self._retry is not None:
            self._retry.cancel()  # a pending retry would tear down the media published now
        await self._stop_media()
        await self._publish()

    async def _on_warning(self, message: dict[str, Any]) -> None:
        self.presenter.warning(message["message"])
        if message["code"] == "relay_unavailable" and self._options.enabled:
            self._retry_publish()

    async def _on_ended(self, message: dict[str, Any]) -> None:
        self.ended = message["reason"]
        self.presenter.ended(message["reason"])

    async def _on_kicked(self, message: dict[str, Any]) -> None:
        self.ended = "kicked"
        self.presenter.kicked()

    async def _on_error(self, message: dict[str, Any]) -> None:
        code, text = message["code"], message["message"]
        if self.welcome is not None and code in ("bad_resume", "room_ended"):
            self.ended = text
            self.presenter.server_said(text)
        elif self.welcome is not None and code == "resume_too_soon":
            # The token is still good; the reconnect loop waits and tries again.
            self.presenter.server_said(text)
        else:
            raise RefusedByServer(code, text)

    async def _start_meeting(self) -> None:
        """Once admitted: announce keys, then publish media."""
        welcome = self.welcome
        assert welcome is not None
        if self.keyring is None:
            self.keyring = Keyring(
                welcome.room_id,
                welcome.participant_id,
                welcome.sender_index,
                activation_delay=self._options.activation_delay,
                grace_period=self._options.grace_period,
            )
        else:
            self.keyring.rejoin()
        await self.send("keys", **self.keyring.announcement())
        await self._publish()

    def _retry_publish(self) -> None:
        """No relay worker right now (one may be restarting): try again a little later."""
        if self._retry is not None and not self._retry.done():
            return
        self._publish_attempts += 1
        if self._publish_attempts > PUBLISH_ATTEMPTS:
            self.presenter.no_relay()
            return
        delay = min(2.0 * self._publish_attempts, 10.0)

        async def later() -> None:
            await asyncio.sleep(delay)
            await self._stop_media()
            await self._publish()

        self._retry = asyncio.ensure_future(later())

    async def _publish(self) -> None:
        if self._options.enabled and self.keyring is not None and self.welcome is not None:
            o = self._options
            self.media = MediaSession(
                self.keyring,
                video=o.video,
                audio=o.audio,
                record_dir=o.record_dir,
                ice=o.ice,
                servers=self.welcome.ice_servers,
                relay_only=o.relay_only,
                roster=lambda: self._roster,
            )
            await self.send("publish", offer=await self.media.offer())

    async def _on_roster(self, roster: list[dict[str, Any]]) -> None:
        self._roster = roster
        self.presenter.roster(roster)
        if self.keyring is None:
            return
        try:
            outgoing = self.keyring.on_roster(roster)
        except KeysTampered as err:
            # Raised out of run(): `conclave join` prints the sentence and exits non-zero.
            self.ended = err.code
            log.warning("leaving: the roster shows tampered keys")
            raise
        for out in outgoing:
            await self.send("key", to=out.to, payload=out.payload)
        self.presenter.security_code(self.keyring.view)

    async def _stop_media(self) -> None:
        if self.media is not None:
            media, self.media = self.media, None
            await media.close()


@contextlib.contextmanager
def _unless_replaced(session: ClientSession, media: MediaSession) -> Iterator[None]:
    """A description for a peer connection that was closed meanwhile (``media_lost``, or a
    publish retry, closed it while it was being applied) is for nobody: dropped, not a crash.
    Out of turn for the connection still in use, it is the server's fault."""
    try:
        yield
    except InvalidStateError as exc:
        if session.media is media:
            raise ProtocolError(
                f"The server sent a session description out of turn ({exc})."
            ) from None


@contextlib.contextmanager
def _usable_description() -> Iterator[None]:
    """A session description from the hub that the peer connection cannot use is the
    server's fault, said as such rather than as a crash."""
    try:
        yield
    except ValueError as exc:
        raise ProtocolError(f"The server sent an unusable session description ({exc}).") from None
