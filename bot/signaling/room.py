"""The hub's live view of one room: who is connected, who waits in the lobby."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bot.core.models import Participant, Role
from bot.errors import BadResumeToken, ConclaveError, RoomEnded
from bot.ratelimit import TokenBucket
from bot.signaling.messages import to_client
from bot.signaling.outbox import Outbox


@dataclass(eq=False)
class Arrival:
    """A hello being admitted. It hears of a kick or the end of the meeting that happens while
    the service is still checking it, so that a resume in flight cannot install a connection
    for a participant who is already gone."""

    room_id: str | None = None
    participant_id: str | None = None
    # Why it must be turned away after all; None while nothing happened.
    gone: ConclaveError | None = None
    # Rooms that ended while this hello's room was not known yet (a resume being checked).
    ended_meanwhile: set[str] = field(default_factory=set)

    def place(self, room_id: str, participant_id: str | None) -> None:
        self.room_id = room_id
        self.participant_id = participant_id
        if room_id in self.ended_meanwhile:
            self.gone = RoomEnded(room_id)

    def room_ended(self, room_id: str) -> None:
        if self.room_id is None:
            self.ended_meanwhile.add(room_id)
        elif self.room_id == room_id:
            self.gone = RoomEnded(room_id)

    def participant_kicked(self, participant_id: str) -> None:
        if self.participant_id == participant_id:
            self.gone = BadResumeToken()


@dataclass(eq=False)
class Connection:
    ws: web.WebSocketResponse
    outbox: Outbox
    participant: Participant
    bucket: TokenBucket
    keys: dict[str, str] | None = None
    announced: bool = False  # keys announced on this connection (a resume restores ``keys``)
    admitted: bool = False
    published: bool = False
    # Set once the client holds the relay's answer: relay offers must not overtake it.
    answered: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def id(self) -> str:
        return self.participant.id

    @property
    def is_host(self) -> bool:
        return self.participant.role is Role.HOST

    async def send(self, text: str) -> None:
        """Queue ``text`` for this participant; returns at once, whatever its socket's state."""
        self.outbox.put(text)

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
    # Each participant's latest key announcement, kept across its resumes: peers hold on to a
    # participant's keys until it leaves the roster, so a resume must show the same ones.
    keys: dict[str, dict[str, str]] = field(default_factory=dict)

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

    def broadcast(self, text: str) -> None:
        """To everyone admitted; nobody waiting in the lobby hears the room."""
        for conn in self.admitted():
            conn.outbox.put(text)

    def broadcast_roster(self) -> None:
        self.broadcast(to_client("roster", roster=self.roster()))

    def tell_hosts(self, text: str) -> None:
        for host in self.hosts():
            host.outbox.put(text)

    def announce_lobby(self) -> None:
        """Who waits, to the hosts: sent whenever it changes."""
        waiting = [
            {"participant_id": c.id, "name": c.participant.display_name} for c in self.waiting()
        ]
        self.tell_hosts(to_client("lobby_waiting", waiting=waiting))


def member(rooms: Mapping[str, LiveRoom], room_id: str, participant_id: str) -> Connection | None:
    live = rooms.get(room_id)
    return None if live is None else live.members.get(participant_id)
