"""A lying server as one meeting page sees it: the page's websocket to the real hub passes
through the test (Playwright's websocket routing), which can rewrite what the hub sends the
page (rosters, the relay's offers) and send messages of its own, and which tries to open every
key message the page sends with the key pairs it forged (tests/support/lying_server.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from playwright.async_api import BrowserContext, WebSocketRoute

from tests.support.lying_server import ROSTER_TYPES, LyingServer, Roster, Routed


@dataclass
class LyingSignal:
    room_id: str
    rewrite_roster: Callable[[Roster], Roster] | None = None
    rewrite_sdp: Callable[[str], str] | None = None
    # Forges announcements and tries forged keys on key messages; never listens itself.
    liar: LyingServer = field(default_factory=lambda: LyingServer(upstream=""))
    shown: list[dict[str, Any]] = field(default_factory=list)  # what the page got, as it got it
    sent: list[dict[str, Any]] = field(default_factory=list)  # what the page sent
    participant_id: str | None = None
    hub_roster: Roster = field(default_factory=list)  # the last roster the hub sent, unchanged
    _route: WebSocketRoute | None = None

    def forged(self, entry: dict[str, Any]) -> dict[str, Any]:
        """``entry`` with keys of the server's own, announced and signed by the server."""
        return self.liar.forged(entry, self.room_id)

    async def prepare(self, context: BrowserContext) -> None:
        async def through(route: WebSocketRoute) -> None:
            self._route = route
            server = route.connect_to_server()
            route.on_message(lambda text: self._from_page(server, text))
            server.on_message(lambda text: self.send(self._to_page(json.loads(text))))

        await context.route_web_socket("**/ws", through)

    def send(self, message: dict[str, Any]) -> None:
        """Give the page a message, as the server would."""
        assert self._route is not None, "the page has no connection"
        self.shown.append(message)
        self._route.send(json.dumps(message))

    def _to_page(self, message: dict[str, Any]) -> dict[str, Any]:
        kind = message.get("type")
        if kind == "welcome":
            self.participant_id = str(message["participant_id"])
        if kind in ROSTER_TYPES:
            self.hub_roster = message["roster"]
            if self.rewrite_roster is not None:
                message["roster"] = self.rewrite_roster(message["roster"])
        if kind == "offer" and self.rewrite_sdp is not None:
            message["offer"]["sdp"] = self.rewrite_sdp(message["offer"]["sdp"])
        return message

    def _from_page(self, server: WebSocketRoute, text: str | bytes) -> None:
        message = json.loads(text)
        self.sent.append(message)
        if message.get("type") == "key" and self.participant_id is not None:
            self.liar.try_to_open(Routed(self.participant_id, message["to"], message["payload"]))
        server.send(text)
