"""A fake relay worker: speaks the relay control channel to the real core, and handles no media.

It authenticates with a real ticket from ``bot.relay.tickets``, checks the core's ``welcome``
ticket against its own nonce, reports ready, answers every request the core sends (a ``join``
with a fixed SDP answer), records everything it receives verbatim, and can raise a
renegotiation offer as a real worker does when a new stream arrives.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bot.relay.tickets import HEADER, make_worker_ticket, verify_core_ticket
from bot.secret import Secret

FAKE_ANSWER = {"type": "answer", "sdp": "v=0 fake"}
TIMEOUT = 10.0


@dataclass
class FakeWorker:
    worker_id: str
    ticket: str
    ws: aiohttp.ClientWebSocketResponse
    raw: list[str] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.received if m.get("type") == kind]

    async def wait_for(
        self,
        kind: str,
        match: Callable[[dict[str, Any]], bool] | None = None,
        timeout: float = TIMEOUT,
    ) -> dict[str, Any]:
        """The first recorded message of type ``kind`` (that ``match`` accepts), waiting for it."""

        async def scan() -> dict[str, Any]:
            while True:
                self._arrived.clear()
                for message in self.of_type(kind):
                    if match is None or match(message):
                        return message
                await self._arrived.wait()

        return await asyncio.wait_for(scan(), timeout)

    async def offer(self, room: str, participant: str, negotiation: int, sdp: str) -> None:
        """A relay-initiated renegotiation for one participant."""
        await self.ws.send_str(
            json.dumps(
                {
                    "type": "offer",
                    "room": room,
                    "participant": participant,
                    "negotiation": negotiation,
                    "offer": {"type": "offer", "sdp": sdp},
                }
            )
        )

    async def _serve(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                return
            self.raw.append(msg.data)
            message = json.loads(msg.data)
            self.received.append(message)
            self._arrived.set()
            if "id" in message:
                result: dict[str, Any] = {"type": "result", "id": message["id"], "ok": True}
                if message.get("type") == "join":
                    result["answer"] = FAKE_ANSWER
                await self.ws.send_str(json.dumps(result))


@asynccontextmanager
async def fake_worker(
    base_url: str, secret: Secret, worker_id: str = "fake-1"
) -> AsyncIterator[FakeWorker]:
    """A connected, authenticated, ready fake worker; disconnected on exit."""
    async with aiohttp.ClientSession() as http:
        ticket, nonce = make_worker_ticket(secret, worker_id, time.time())
        async with http.ws_connect(f"{base_url}/relay", headers={HEADER: ticket}) as ws:
            welcome = json.loads((await ws.receive(timeout=TIMEOUT)).data)
            assert welcome["type"] == "welcome"
            # Raises BadTicket unless the core holds the secret and answered this connection.
            verify_core_ticket(secret, welcome["ticket"], worker_id, nonce, time.time())
            await ws.send_str(
                json.dumps({"type": "ready", "worker_id": worker_id, "rooms": 0, "participants": 0})
            )
            worker = FakeWorker(worker_id=worker_id, ticket=ticket, ws=ws)
            task = asyncio.create_task(worker._serve())
            try:
                yield worker
            finally:
                await ws.close()
                with suppress(asyncio.CancelledError):
                    await asyncio.wait_for(task, TIMEOUT)
