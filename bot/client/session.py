"""A participant's signaling session: redeem the invite, follow the roster, rejoin on a drop."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from bot.core.links import JoinLink
from bot.errors import ConclaveError, ProtocolError
from bot.secret import Secret
from bot.signaling.envelope import MAX_MESSAGE_BYTES, encode

RESUME_ATTEMPTS = 5


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
    name: str
    role: str
    room_id: str
    topic: str
    roster: list[dict[str, Any]]


def describe_roster(roster: list[dict[str, Any]]) -> str:
    return ", ".join(f"{m['name']} ({m['role']})" for m in roster) or "(nobody)"


class ClientSession:
    """Holds one connection at a time; reconnects with the resume token if it drops."""

    def __init__(self, link: JoinLink, say: Callable[[str], None]) -> None:
        self._link = link
        self._say = say
        self._resume: Secret | None = None
        self.welcome: Welcome | None = None
        self.ended: str | None = None

    async def run(self, duration: float | None) -> None:
        async with aiohttp.ClientSession() as http:
            try:
                await asyncio.wait_for(self._run(http), timeout=duration)
            except TimeoutError:
                return

    async def _run(self, http: aiohttp.ClientSession) -> None:
        attempts = 0
        while True:
            hello: dict[str, str]
            if self._resume is None:
                hello = {
                    "room": self._link.room_id,
                    "invite": self._link.credential.reveal(),
                }
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
            attempts += 1
            if attempts > RESUME_ATTEMPTS:
                raise Unreachable("Lost the connection to the meeting server and could not rejoin.")
            self._say("connection lost; rejoining…")
            await asyncio.sleep(min(0.5 * 2**attempts, 5.0))

    async def _connect(self, http: aiohttp.ClientSession, hello: dict[str, str]) -> None:
        async with http.ws_connect(
            self._link.websocket_url, max_msg_size=4 * MAX_MESSAGE_BYTES, heartbeat=30.0
        ) as ws:
            await ws.send_str(encode("hello", **hello))
            try:
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        break
                    try:
                        message = json.loads(msg.data)
                        self._on_message(message)
                    except (ValueError, KeyError, TypeError) as exc:
                        raise ProtocolError(
                            f"The server sent a malformed message ({exc})."
                        ) from None
                    if self.ended is not None:
                        return
            finally:
                if self.ended is None and not ws.closed:
                    with contextlib.suppress(Exception):
                        await ws.send_str(encode("bye"))

    def _on_message(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "welcome":
            room = message["room"]
            first = self.welcome is None
            self._resume = Secret(message["resume_token"])
            self.welcome = Welcome(
                participant_id=message["participant_id"],
                name=message["name"],
                role=message["role"],
                room_id=room["id"],
                topic=room["topic"],
                roster=message["roster"],
            )
            if first:
                self._say(
                    f'joined "{room["topic"]}" as {message["name"]} ({message["role"]}); '
                    f"participant {message['participant_id']}"
                )
            else:
                self._say("rejoined")
        elif kind == "roster":
            self._say(f"roster: {describe_roster(message['roster'])}")
        elif kind == "room":
            self._say("the host locked the room" if message.get("locked") else "the room is open")
        elif kind == "ended":
            self.ended = str(message.get("reason", "ended"))
            self._say(f"the meeting has ended ({self.ended})")
        elif kind == "error":
            code = str(message.get("code", "error"))
            text = str(message.get("message", "refused"))
            if self.welcome is not None and code in ("bad_resume", "room_ended"):
                self.ended = text
                self._say(text)
                return
            raise Refused(code, text)
        elif kind != "pong":
            raise ProtocolError(f"Unexpected message from the server: {kind!r}.")
