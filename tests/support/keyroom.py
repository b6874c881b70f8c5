"""An in-memory meeting for real ``Keyring`` objects: the hub's roster and key routing, no network.

It does with rosters and key messages what ``bot/signaling/hub.py`` does: the roster lists the
participants present in sender-index order, each with the keys it announced (none until it has,
and the same ones again when it resumes); a key message goes only to the participant it names,
if present. Like the real server it sees every key message, and keeps them all (``sent``) for
tests that play a server or a kicked participant reading them. ``show`` and ``carry`` let a test
lie: they rewrite the roster one participant is shown and the key messages delivered. Time is
one fake clock for everyone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bot.client.keyring import Keyring, Outgoing
from bot.e2ee.media import Codec
from bot.e2ee.senderkeys import DEFAULT_ACTIVATION_DELAY, DEFAULT_GRACE_PERIOD
from tests.support.fakes import FakeClock

Roster = list[dict[str, Any]]
# (the participant it is shown to, the true roster) -> the roster that participant is shown
Rewrite = Callable[[str, Roster], Roster]

# A VP8 key frame: its 10-byte payload header stays in clear, the rest is encrypted.
FRAME = bytes.fromhex("5042009d012a8002e001") + b"picture"


@dataclass(frozen=True)
class Sent:
    """A key message as the server routed it."""

    sender: str
    to: str
    payload: str
    at: float


def truthful(viewer: str, roster: Roster) -> Roster:
    return roster


def intact(message: Sent) -> Sent:
    return message


@dataclass
class Room:
    room_id: str = "room-1"
    activation_delay: float = DEFAULT_ACTIVATION_DELAY
    grace_period: float = DEFAULT_GRACE_PERIOD
    # Build each Keyring with its own defaults, not the two values above (they must be equal).
    keyring_defaults: bool = False
    clock: FakeClock = field(default_factory=FakeClock)
    show: Rewrite = truthful
    carry: Callable[[Sent], Sent] = intact  # what the server delivers for a key message sent
    sent: list[Sent] = field(default_factory=list)
    present: dict[str, Keyring] = field(default_factory=dict)
    announced: set[str] = field(default_factory=set)
    # Hostile clients that ignore every roster from now on, so forget no one's keys.
    deaf: set[str] = field(default_factory=set)
    next_index: int = 1

    # --- people ----------------------------------------------------------------------------

    def newcomer(self, name: str) -> Keyring:
        """A participant admitted to this room (id and index assigned), not yet connected."""
        pid = f"p-{name}"
        if self.keyring_defaults:
            ring = Keyring(self.room_id, pid, self.next_index, clock=self.clock.now)
        else:
            ring = Keyring(
                self.room_id,
                pid,
                self.next_index,
                activation_delay=self.activation_delay,
                grace_period=self.grace_period,
                clock=self.clock.now,
            )
        self.next_index += 1
        return ring

    def join(self, name: str, *, announce: bool = True) -> Keyring:
        ring = self.newcomer(name)
        self.enter(ring, announce=announce)
        return ring

    def meeting(self, *names: str) -> list[Keyring]:
        """Everyone joins one after the other (each join's key is in use at once); then the
        activation delay passes, so that tests start from a quiet room."""
        rings = [self.join(name) for name in names]
        self.settle()
        return rings

    def enter(self, ring: Keyring, *, announce: bool = True) -> None:
        """Connect: the entrant gets the roster (its ``welcome``), then everyone does, as the hub
        sends it; then, if ``announce``, its announcement and the roster that shows it."""
        self.present[ring.participant_id] = ring
        self.roster_to(ring)
        self.broadcast()
        if announce and ring.participant_id not in self.announced:
            self.announce(ring)

    def announce(self, ring: Keyring) -> None:
        self.announced.add(ring.participant_id)
        self.broadcast()

    def leave(self, ring: Keyring) -> None:
        """Leaving, being kicked and losing the connection look the same to the others."""
        del self.present[ring.participant_id]
        self.broadcast()

    def resume(self, ring: Keyring) -> None:
        """Back after a lost connection, as the client does it: same id, index and keys."""
        ring.rejoin()
        self.enter(ring)

    # --- what the server does --------------------------------------------------------------

    def roster(self) -> Roster:
        out = []
        for ring in sorted(self.present.values(), key=lambda r: r.sender_keys.sender_index):
            entry: dict[str, Any] = {
                "participant_id": ring.participant_id,
                "name": ring.participant_id.removeprefix("p-").capitalize(),
                "sender_index": ring.sender_keys.sender_index,
            }
            if ring.participant_id in self.announced:
                entry["keys"] = ring.announcement()
            out.append(entry)
        return out

    def roster_to(self, ring: Keyring) -> None:
        self.route(ring, ring.on_roster(self.show(ring.participant_id, self.roster())))

    def broadcast(self) -> None:
        for ring in list(self.present.values()):
            if ring.participant_id not in self.deaf:
                self.roster_to(ring)

    def route(self, sender: Keyring, messages: list[Outgoing]) -> None:
        for m in messages:
            sent = Sent(sender.participant_id, m.to, m.payload, self.clock.now())
            self.sent.append(sent)
            delivered = self.carry(sent)
            recipient = self.present.get(delivered.to)
            if recipient is not None:
                recipient.on_key(delivered.sender, delivered.payload)

    def sent_by(self, sender: Keyring, *, since: float = float("-inf")) -> list[Sent]:
        return [s for s in self.sent if s.sender == sender.participant_id and s.at >= since]

    # --- time and frames -------------------------------------------------------------------

    def settle(self) -> None:
        """Let the activation delay pass: every pending key is in use from now on."""
        self.clock.advance(self.activation_delay)


def frame(sender: Keyring) -> bytes:
    return sender.protect(Codec.VP8, FRAME)


def reads(reader: Keyring, data: bytes) -> bool:
    return reader.unprotect(Codec.VP8, data) == FRAME
