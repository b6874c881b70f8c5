"""A room's seats: its connections, and the hellos still being admitted to it.

A hello holds a seat from before its invite is spent (a full room refuses it with the invite
unspent) until its connection is in the room and counted there, so that hellos arriving
together cannot overfill a room.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator, Mapping

from bot.errors import ConclaveError
from bot.signaling.room import LiveRoom


class RoomFull(ConclaveError):
    code = "room_full"

    def __init__(self, cap: int) -> None:
        super().__init__(f"This meeting is full ({cap} people).")


class Seats:
    def __init__(self, rooms: Mapping[str, LiveRoom], cap: int) -> None:
        self._rooms = rooms  # the hub's, read to count who is connected
        self._cap = cap
        self._arriving: Counter[str] = Counter()

    @contextlib.contextmanager
    def hold(self, room_id: str, participant_id: str | None = None) -> Iterator[None]:
        """A seat in ``room_id`` for the block, or RoomFull. A resumed ``participant_id``
        takes over its own connection's seat rather than a second one.

        Nothing here awaits, so the count and the hold cannot be interleaved with another's."""
        live = self._rooms.get(room_id)
        others = 0 if live is None else sum(1 for pid in live.members if pid != participant_id)
        if others + self._arriving[room_id] >= self._cap:
            raise RoomFull(self._cap)
        self._arriving[room_id] += 1
        try:
            yield
        finally:
            self._arriving[room_id] -= 1
            if not self._arriving[room_id]:
                del self._arriving[room_id]
