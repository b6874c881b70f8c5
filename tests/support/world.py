"""One test's world: the running server, the HTTP session and exit stack its websockets live in,
and the meeting being played, so that a test reads one line a step::

    await world.room("ana", "ben", lobby=True)
    host = await world.join("hana")
    ana = await world.lobby("ana")
    await world.admit(host, ana)

The helpers of ``meeting.py`` take these same arguments one by one; this holds them once.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import aiohttp

from tests.support.meeting import (
    Meeting,
    Peer,
    assert_unspent,
    audit_events,
    connect,
    join,
    make_meeting,
    refused,
    roster_ids,
)
from tests.support.server import Running, hello_invite, hello_resume, receive_json


def roster_of(n: int) -> Callable[[dict[str, Any]], bool]:
    """Matches a message whose roster has ``n`` entries."""
    return lambda m: len(m["roster"]) == n


@dataclass
class World:
    server: Running
    http: aiohttp.ClientSession
    stack: AsyncExitStack
    _meeting: Meeting | None = None

    @property
    def meeting(self) -> Meeting:
        """The room made last."""
        assert self._meeting is not None, "make a room first: await world.room(...)"
        return self._meeting

    async def room(self, *guests: str, topic: str = "Sync", lobby: bool = False) -> Meeting:
        """A room hosted by hana with one invite per named guest; the world's room from now."""
        self._meeting = await make_meeting(self.server, *guests, topic=topic, lobby=lobby)
        return self._meeting

    async def join(self, who: str, meeting: Meeting | None = None) -> Peer:
        """``who`` redeems their invite (to the world's room unless told otherwise)."""
        return await join(self.server, self.http, self.stack, meeting or self.meeting, who)

    async def join_all(self, *who: str) -> list[Peer]:
        """Each joins in turn, so sender indexes follow the order given."""
        return [await self.join(name) for name in who]

    async def lobby(self, who: str) -> Peer:
        """A guest joins a lobby room: welcomed unadmitted, with an empty roster, then
        ``lobby``."""
        peer = await self.join(who)
        assert peer.welcome["admitted"] is False
        assert peer.welcome["roster"] == []
        assert peer.welcome["room"]["lobby"] is True
        lobby = await receive_json(peer.ws)
        assert lobby["type"] == "lobby", lobby
        return peer

    async def admit(self, host: Peer, guest: Peer) -> dict[str, Any]:
        """The host lets ``guest`` in; the ``admitted`` the guest receives."""
        await host.send("admit", participant=guest.participant_id)
        return await guest.until("admitted")

    async def resume(self, token: str) -> Peer:
        ws = await self.connect()
        await ws.send_str(hello_resume(token))
        welcome = await receive_json(ws)
        assert welcome["type"] == "welcome", welcome
        return Peer(ws, welcome)

    async def connect(self) -> aiohttp.ClientWebSocketResponse:
        return await connect(self.server, self.http, self.stack)

    def hello(self, who: str) -> str:
        """The hello that redeems ``who``'s invite to the world's room."""
        return hello_invite(self.meeting.room_id, self.meeting.cred(who))

    async def refused(self, frame: str, code: str) -> int:
        """A new connection sends ``frame`` and is refused with ``code``; the close code."""
        return await refused(self.server, self.http, self.stack, frame, code)

    async def assert_unspent(self, who: str, meeting: Meeting | None = None) -> None:
        await assert_unspent(self.server, meeting or self.meeting, who)

    async def audit(self, meeting: Meeting | None = None) -> list[str]:
        """The names of the room's audit events, oldest first."""
        return await audit_events(self.server, (meeting or self.meeting).room_id)

    def present(self) -> list[str]:
        """Who the hub has in the world's room's roster."""
        return roster_ids({"roster": self.server.app.hub.roster(self.meeting.room_id)})
