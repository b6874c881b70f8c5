"""Meetings driven over real websockets: rooms made through the service, peers that join them.

The helpers follow tests/test_signaling.py; what they add is what a meeting needs after
admission: a lobby, sending any message kind, and collecting everything a peer receives up to a
marker, so that a test can show a message did *not* arrive (the marker was sent after it would
have been, on the same ordered connection).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from bot.core.models import InviteState, IssuedInvite, UserRef
from bot.signaling.hub import WIRE_LIMIT
from tests.support.fakes import user
from tests.support.server import (
    RECEIVE_TIMEOUT,
    Running,
    expect_refused,
    hello_invite,
    receive_json,
    receive_until,
)


def credential(issued: IssuedInvite) -> str:
    """``<invite_id>.<secret>``: the fragment of the link, as a client sends it."""
    return urlsplit(issued.link.reveal()).fragment


@dataclass
class Meeting:
    room_id: str
    host: UserRef
    invites: dict[str, IssuedInvite]  # by user id; the host's under the host's id

    def cred(self, who: str) -> str:
        return credential(self.invites[who])

    def invite_id(self, who: str) -> str:
        return self.invites[who].invite.id


async def make_meeting(
    server: Running, *guests: str, topic: str = "Sync", lobby: bool = False
) -> Meeting:
    """A room hosted by hana (user id ``hana``) with one invite per named guest."""
    host = user("hana")
    made = await server.app.service.create_room(host, [user(g) for g in guests], topic, lobby=lobby)
    invites = {i.invite.user_id: i for i in made.invites}
    invites[host.user_id] = made.host_invite
    return Meeting(room_id=made.room.id, host=host, invites=invites)


async def collect_until(
    ws: aiohttp.ClientWebSocketResponse,
    kind: str,
    match: Callable[[dict[str, Any]], bool] | None = None,
    timeout: float = RECEIVE_TIMEOUT,
) -> list[dict[str, Any]]:
    """Every message received up to and including the first of type ``kind`` (and ``match``)."""
    seen: list[dict[str, Any]] = []
    while True:
        message = await receive_json(ws, timeout)
        assert isinstance(message, dict)
        seen.append(message)
        if message.get("type") == kind and (match is None or match(message)):
            return seen


@dataclass
class Peer:
    ws: aiohttp.ClientWebSocketResponse
    welcome: dict[str, Any]

    @property
    def participant_id(self) -> str:
        value = self.welcome["participant_id"]
        assert isinstance(value, str)
        return value

    @property
    def resume_token(self) -> str:
        value = self.welcome["resume_token"]
        assert isinstance(value, str)
        return value

    async def send(self, kind: str, **fields: Any) -> None:
        await self.ws.send_str(json.dumps({"type": kind, **fields}))

    async def ping(self) -> list[dict[str, Any]]:
        """Ping; everything received before the pong (which shows the connection is alive)."""
        await self.send("ping")
        return (await collect_until(self.ws, "pong"))[:-1]

    async def until(
        self, kind: str, match: Callable[[dict[str, Any]], bool] = lambda m: True
    ) -> dict[str, Any]:
        """Skip messages until one of type ``kind`` that ``match`` accepts."""
        return await receive_until(self.ws, kind, match)

    async def warned(self, code: str) -> dict[str, Any]:
        """The next warning names ``code``; the connection stays open (a ping is answered)."""
        warning = await self.until("warning")
        assert warning["code"] == code, warning
        assert isinstance(warning["message"], str) and warning["message"]
        await self.ping()
        return warning


async def connect(
    server: Running, http: aiohttp.ClientSession, stack: AsyncExitStack
) -> aiohttp.ClientWebSocketResponse:
    return await stack.enter_async_context(http.ws_connect(server.ws_url, max_msg_size=WIRE_LIMIT))


async def refused(
    server: Running,
    http: aiohttp.ClientSession,
    stack: AsyncExitStack,
    frame: str,
    code: str,
) -> int:
    """A new connection sends ``frame`` and is refused with ``code``; the close code."""
    ws = await connect(server, http, stack)
    await ws.send_str(frame)
    _, close_code = await expect_refused(ws, code)
    return close_code


async def join(
    server: Running,
    http: aiohttp.ClientSession,
    stack: AsyncExitStack,
    meeting: Meeting,
    who: str,
) -> Peer:
    ws = await connect(server, http, stack)
    await ws.send_str(hello_invite(meeting.room_id, meeting.cred(who)))
    welcome = await receive_json(ws)
    assert welcome["type"] == "welcome", welcome
    return Peer(ws, welcome)


def roster_ids(message: dict[str, Any]) -> list[str]:
    return [entry["participant_id"] for entry in message["roster"]]


def entry_of(message: dict[str, Any], participant_id: str) -> dict[str, Any]:
    """The roster entry of one participant in a ``roster``/``welcome``/``admitted`` message."""
    (entry,) = [e for e in message["roster"] if e["participant_id"] == participant_id]
    assert isinstance(entry, dict)
    return entry


async def assert_unspent(server: Running, meeting: Meeting, who: str) -> None:
    """The invite is still issued: no session row, no redemption in the audit log."""
    invite_id = meeting.invite_id(who)
    stored = await server.app.store.get_invite(invite_id)
    assert stored is not None
    assert stored.state is InviteState.ISSUED
    assert stored.redeemed_at is None
    participants = await server.app.store.participants_for_room(meeting.room_id)
    assert invite_id not in {p.invite_id for p in participants}
    audit = await server.app.store.audit_log(meeting.room_id)
    assert not [
        e for e in audit if e.event == "invite_redeemed" and e.detail.get("invite") == invite_id
    ]


async def audit_events(server: Running, room_id: str) -> list[str]:
    return [e.event for e in await server.app.store.audit_log(room_id)]
