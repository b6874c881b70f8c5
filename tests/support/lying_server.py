"""A lying signaling server: a websocket proxy in front of the real hub that rewrites the rosters
each client is shown, and tries to open every key message it routes with key pairs of its own.

It is what a compromised server can do at the key level (docs/THREAT_MODEL.md): show anyone any
roster, sign announcements with Ed25519 keys of its own making, and read whatever sender key a
client seals to one of its X25519 keys. It cannot sign with a participant's Ed25519 key.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from cryptography.exceptions import InvalidTag

from bot.e2ee.announce import announce
from bot.e2ee.errors import KeyTransportError
from bot.e2ee.identity import MeetingKeys
from bot.e2ee.transport import HPKE, message_from_text, parse_message
from tests.support.fakes import start_local_app

Roster = list[dict[str, Any]]
# (the participant the roster is shown to, the roster the hub sent) -> the roster shown
Rewrite = Callable[[str, Roster], Roster]
ROSTER_TYPES = frozenset({"welcome", "roster", "admitted"})


async def _pump(
    source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    transform: Callable[[dict[str, Any]], dict[str, Any]],
) -> None:
    async for msg in source:
        if msg.type != aiohttp.WSMsgType.TEXT:
            break
        with contextlib.suppress(ConnectionError):
            await sink.send_str(json.dumps(transform(json.loads(msg.data))))
    await sink.close()


@dataclass(frozen=True)
class Routed:
    """A key message as the server routes it: from whom, to whom, the opaque payload."""

    sender: str
    to: str
    payload: str


@dataclass
class LyingServer:
    upstream: str  # the real hub's websocket URL
    port: int = 0
    rewrite: Rewrite | None = None
    fakes: dict[str, MeetingKeys] = field(default_factory=dict)  # by the id they impersonate
    routed: list[Routed] = field(default_factory=list)
    opened: list[tuple[Routed, bytes]] = field(default_factory=list)  # and the base key
    names: dict[str, str] = field(default_factory=dict)  # participant id -> name, from rosters
    clients: dict[str, web.WebSocketResponse] = field(default_factory=dict)  # by participant id
    hub_rosters: dict[str, Roster] = field(default_factory=dict)  # the hub's last, by viewer
    _open_connections: int = 0
    _idle: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def forged(self, entry: dict[str, Any], room_id: str) -> dict[str, Any]:
        """``entry`` with a key pair of the server's own, announced and signed by the server
        for that participant's id and index: a statement that verifies, over keys it holds."""
        pid = str(entry["participant_id"])
        fake = self.fakes.setdefault(pid, MeetingKeys.generate())
        keys = announce(fake, room_id, pid, int(entry["sender_index"])).to_json()
        return {**entry, "keys": keys}

    def try_to_open(self, routed: Routed) -> None:
        """What the attacker does with every key message: try each X25519 key it holds."""
        try:
            parsed = parse_message(message_from_text(routed.payload))
        except KeyTransportError:
            return
        for fake in self.fakes.values():
            with contextlib.suppress(InvalidTag, ValueError):
                base_key = HPKE.decrypt(
                    parsed.hpke_ciphertext, fake.x25519, parsed.binding.hpke_info()
                )
                self.opened.append((routed, base_key))
                return

    async def send(self, participant_id: str, message: dict[str, Any]) -> None:
        """Send one client a message of the server's own making."""
        await self.clients[participant_id].send_str(json.dumps(message))

    async def reshow(self, participant_id: str) -> None:
        """Send one client its last roster again, as ``rewrite`` now has it; no need to wait
        for the hub to change the roster."""
        roster = self.hub_rosters[participant_id]
        if self.rewrite is not None:
            roster = self.rewrite(participant_id, roster)
        await self.send(participant_id, {"type": "roster", "roster": roster})

    async def drop(self, participant_id: str) -> None:
        """Cut one client's connection, as a network failure would."""
        await self.clients[participant_id].close()

    async def drained(self, timeout: float = 10.0) -> None:
        """Every proxied connection has closed: everything the clients sent was seen."""
        await asyncio.wait_for(self._idle.wait(), timeout)

    # --- the proxy ---------------------------------------------------------------------------

    def _to_client(
        self, viewer: list[str], message: dict[str, Any], client: web.WebSocketResponse
    ) -> dict[str, Any]:
        if message.get("type") == "welcome":
            viewer.append(str(message["participant_id"]))
            self.clients[viewer[0]] = client
        if message.get("type") in ROSTER_TYPES:
            self.names |= {e["participant_id"]: e["name"] for e in message["roster"]}
            if viewer:
                self.hub_rosters[viewer[0]] = message["roster"]
            if self.rewrite is not None and viewer:
                message["roster"] = self.rewrite(viewer[0], message["roster"])
        return message

    def _to_server(self, viewer: list[str], message: dict[str, Any]) -> dict[str, Any]:
        if message.get("type") == "key" and viewer:
            routed = Routed(viewer[0], str(message["to"]), str(message["payload"]))
            self.routed.append(routed)
            self.try_to_open(routed)
        return message

    async def handle(self, request: web.Request, http: aiohttp.ClientSession) -> web.StreamResponse:
        self._open_connections += 1
        self._idle.clear()
        downstream = web.WebSocketResponse(max_msg_size=0)
        try:
            await downstream.prepare(request)
            async with http.ws_connect(self.upstream, max_msg_size=0) as upstream:
                viewer: list[str] = []  # filled in by the welcome
                await asyncio.gather(
                    _pump(upstream, downstream, lambda m: self._to_client(viewer, m, downstream)),
                    _pump(downstream, upstream, lambda m: self._to_server(viewer, m)),
                )
        finally:
            self._open_connections -= 1
            if not self._open_connections:
                self._idle.set()
        return downstream


@asynccontextmanager
async def lying_server(upstream_ws_url: str) -> AsyncIterator[LyingServer]:
    liar = LyingServer(upstream_ws_url)
    liar._idle.set()
    http = aiohttp.ClientSession()
    app = web.Application()

    async def handle(request: web.Request) -> web.StreamResponse:
        return await liar.handle(request, http)

    app.router.add_get("/ws", handle)
    runner, liar.port = await start_local_app(app)
    try:
        yield liar
    finally:
        with contextlib.suppress(Exception):
            await runner.cleanup()
        await http.close()
