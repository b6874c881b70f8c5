"""A participant's signaling session: redeem the invite, wait in the lobby if there is one,
exchange keys, negotiate media with the relay through the hub, rejoin after a drop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bot.client.keyring import Keyring
from bot.client.media import MediaSession
from bot.core.links import JoinLink
from bot.e2ee.errors import KeysTampered
from bot.e2ee.roster import RosterView
from bot.errors import ConclaveError, ProtocolError
from bot.rtc.peer import IceSettings
from bot.secret import Secret
from bot.signaling.envelope import MAX_MESSAGE_BYTES, PROTOCOL_VERSION, encode

log = logging.getLogger(__name__)

RESUME_ATTEMPTS = 5
PUBLISH_ATTEMPTS = 10


class Refused(ConclaveError):
    """The server turned the client away; ``code`` is the server's reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


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


@dataclass
class MediaOptions:
    enabled: bool = True
    video: str = "testsrc"
    audio: str = "tone"
    record_dir: Path | None = None
    ice: IceSettings | None = None  # the ICE servers, e.g. the [relay] settings; None: none
    activation_delay: float = 1.0
    grace_period: float = 10.0


def describe_roster(roster: list[dict[str, Any]]) -> str:
    return ", ".join(f"{m['name']} ({m['role']})" for m in roster) or "(nobody)"


def _code_line(view: RosterView) -> str:
    """What people compare; "pending" (and why) until everyone's keys are verified, never a
    code left over from an earlier roster."""
    if view.code is not None:
        return f"security code: {view.code}"
    reasons = []
    if view.waiting:
        reasons.append(f"waiting for the keys of {', '.join(view.waiting)}")
    if view.rejected:
        reasons.append(f"the keys shown for {', '.join(view.rejected)} are not signed by them")
    return "security code: pending" + (f" ({'; '.join(reasons)})" if reasons else "")


class ClientSession:
    """Holds one connection at a time; reconnects with the resume token if it drops."""

    def __init__(
        self, link: JoinLink, say: Callable[[str], None], media: MediaOptions | None = None
    ) -> None:
        self._link = link
        self._say = say
        self._options = media or MediaOptions(enabled=False)
        self._resume: Secret | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._roster: list[dict[str, Any]] = []
        self._code: str | None = None
        self.welcome: Welcome | None = None
        self.keyring: Keyring | None = None
        self.media: MediaSession | None = None
        self.ended: str | None = None
        self.admitted = False
        self._retry: asyncio.Future[None] | None = None
        self._publish_attempts = 0
        self._welcomes = 0
        self._last_code: str | None = None  # the last code shown, pending lines aside

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
            self._say("connection lost; rejoining…")
            await self._stop_media()
            await asyncio.sleep(min(0.5 * 2**attempts, 5.0))

    async def _connect(self, http: aiohttp.ClientSession, hello: dict[str, str]) -> None:
        async with http.ws_connect(
            self._link.websocket_url, max_msg_size=4 * MAX_MESSAGE_BYTES, heartbeat=30.0
        ) as ws:
            self._ws = ws
            ticker = asyncio.ensure_future(self._tick())
            try:
                await ws.send_str(encode("hello", version=PROTOCOL_VERSION, **hello))
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        break
                    try:
                        message = json.loads(msg.data)
                        await self._on_message(message)
                    except (ValueError, KeyError, TypeError) as exc:
                        raise ProtocolError(
                            f"The server sent a malformed message ({exc})."
                        ) from None
                    if self.ended is not None:
                        return
            finally:
                ticker.cancel()
                self._ws = None
                if self.ended is None and not ws.closed:
                    with contextlib.suppress(Exception):
                        await ws.send_str(encode("bye"))

    async def send(self, kind: str, **fields: Any) -> None:
        if self._ws is not None and not self._ws.closed:
            await self._ws.send_str(encode(kind, **fields))

    async def _tick(self) -> None:
        # Pending sender keys must start being used (and old ones expire) even while idle.
        while True:
            await asyncio.sleep(0.25)
            if self.keyring is not None:
                self.keyring.tick()

    # --- messages --------------------------------------------------------------------------

    async def _on_message(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "welcome":
            await self._on_welcome(message)
        elif kind in ("roster", "admitted"):
            if kind == "admitted":
                self._say("the host let you in")
                self.admitted = True
                await self._start_meeting()
            await self._on_roster(message["roster"])
        elif kind == "lobby":
            self._say(str(message.get("message", "waiting in the lobby")))
        elif kind == "lobby_waiting":
            waiting = ", ".join(f"{w['name']} ({w['participant_id']})" for w in message["waiting"])
            self._say(f"waiting in the lobby: {waiting or '(nobody)'}")
        elif kind == "key":
            if self.keyring is not None:
                self.keyring.on_key(str(message["from"]), str(message["payload"]))
        elif kind == "answer":
            if self.media is not None:
                await self.media.accept_answer(message["answer"])
                self._publish_attempts = 0
        elif kind == "offer":
            if self.media is not None:
                answer = await self.media.answer_offer(message["offer"])
                await self.send("answer", negotiation=message["negotiation"], answer=answer)
        elif kind == "media_lost":
            # Our relay worker went away; negotiate again (keys and roster are unaffected).
            self._say("the media relay restarted; reconnecting media")
            await self._stop_media()
            await self._publish()
        elif kind == "room":
            self._say("the host locked the room" if message.get("locked") else "the room is open")
        elif kind == "ended":
            self.ended = str(message.get("reason", "ended"))
            self._say(f"the meeting has ended ({self.ended})")
        elif kind == "kicked":
            self.ended = "kicked"
            self._say("the host removed you from the meeting")
        elif kind == "notice":
            # Something the host should know (e.g. someone presented a used link); the
            # meeting goes on.
            self._say(f"notice: {message.get('message', message.get('code'))}")
        elif kind == "warning":
            self._say(f"warning: {message.get('message', message.get('code'))}")
            if message.get("code") == "relay_unavailable" and self._options.enabled:
                self._retry_publish()
        elif kind == "error":
            code = str(message.get("code", "error"))
            text = str(message.get("message", "refused"))
            if self.welcome is not None and code in ("bad_resume", "room_ended"):
                self.ended = text
                self._say(text)
                return
            if self.welcome is not None and code == "resume_too_soon":
                # The token is still good; the reconnect loop waits and tries again.
                self._say(text)
                return
            raise Refused(code, text)
        elif kind != "pong":
            raise ProtocolError(f"Unexpected message from the server: {kind!r}.")

    async def _on_welcome(self, message: dict[str, Any]) -> None:
        room = message["room"]
        first = self.welcome is None
        self._welcomes += 1
        self._resume = Secret(message["resume_token"])
        self.welcome = Welcome(
            participant_id=message["participant_id"],
            sender_index=int(message["sender_index"]),
            name=message["name"],
            role=message["role"],
            room_id=room["id"],
            topic=room["topic"],
        )
        if first:
            self._say(
                f'joined "{room["topic"]}" as {message["name"]} ({message["role"]}); '
                f"participant {message['participant_id']}"
            )
        else:
            self._say("rejoined")
        self.admitted = bool(message.get("admitted", True))
        if self.admitted:
            await self._start_meeting()
            await self._on_roster(message["roster"])

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
            self._say("no media relay is available; staying in the meeting without media")
            return
        delay = min(2.0 * self._publish_attempts, 10.0)

        async def later() -> None:
            await asyncio.sleep(delay)
            await self._stop_media()
            await self._publish()

        self._retry = asyncio.ensure_future(later())

    async def _publish(self) -> None:
        if self._options.enabled and self.keyring is not None:
            o = self._options
            self.media = MediaSession(
                self.keyring,
                video=o.video,
                audio=o.audio,
                record_dir=o.record_dir,
                ice=o.ice,
                roster=lambda: self._roster,
            )
            await self.send("publish", offer=await self.media.offer())

    async def _on_roster(self, roster: list[dict[str, Any]]) -> None:
        changed = [e["participant_id"] for e in roster] != [
            e["participant_id"] for e in self._roster
        ]
        self._roster = roster
        if changed:
            self._say(f"roster: {describe_roster(roster)}")
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
        line = _code_line(self.keyring.view)
        if line != self._code:
            code = self.keyring.view.code
            if code is not None and code != self._last_code and self._last_code is not None:
                # Someone came or went, or their keys changed: the earlier comparison no
                # longer vouches for this roster.
                self._say("the security code changed: compare it with the others again")
            if code is not None:
                self._last_code = code
            self._code = line
            self._say(line)

    async def _stop_media(self) -> None:
        if self.media is not None:
            media, self.media = self.media, None
            await media.close()
