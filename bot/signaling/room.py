"""The hub's live view of one room: who is connected, who waits in the lobby."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bot.core.models import Participant, Role
from bot.signaling.ratelimit import TokenBucket


@dataclass(eq=False)
class Connection:
    ws: web.WebSocketResponse
    participant: Participant
    bucket: TokenBucket
    keys: dict[str, str] | None = None
    admitted: bool = False
    published: bool = False
    # Set once the client holds the relay's answer: relay offers must not overtake it.
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def id(self) -> str:
        return self.participant.id

    @property
    def is_host(self) -> bool:
        return self.participant.role is Role.HOST

    async def send(self, text: str) -> None:
        async with self.lock:
            if not self.ws.closed:
                # A peer that vanished mid-send is cleaned up by its own reader.
                with contextlib.suppress(ConnectionError):
                    await self.ws.send_str(text)

    def roster_entry(self) -> dict[str, Any]:
        p = self.participant
        entry: dict[str, Any] = {
            "participant_id": p.id,
            "name": p.display_name,
            "role": p.role.value,
            "sender_index": p.sender_index,
        }
        if self.keys is not None:
            entry["keys"] = self.keys
        return entry


@dataclass
class LiveRoom:
    members: dict[str, Connection] = field(default_factory=dict)
    # Guests the host let in stay let in if their connection drops and resumes.
    admitted_ids: set[str] = field(default_factory=set)

    def admitted(self) -> list[Connection]:
        return sorted(
            (c for c in self.members.values() if c.admitted),
            key=lambda c: c.participant.sender_index,
        )

    def waiting(self) -> list[Connection]:
        return sorted(
            (c for c in self.members.values() if not c.admitted),
            key=lambda c: c.participant.sender_index,
        )

    def roster(self) -> list[dict[str, Any]]:
        return [c.roster_entry() for c in self.admitted()]

    def hosts(self) -> list[Connection]:
        return [c for c in self.admitted() if c.is_host]
