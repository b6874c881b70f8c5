"""The storage contract the core relies on.

A store loads records and writes them; it decides nothing. Every method that changes more
than one row does so in one transaction, and writes that race are conditional: they take
effect only if what the caller's decision rested on still holds, and say whether they won.
The rules (which admission error applies, which token a resume may use) live in
``bot.core.models``; ``until_won`` is how the core pairs them with a conditional write.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Final, Protocol, TypeVar

from bot.core.models import (
    AuditEvent,
    EndReason,
    Invite,
    InviteState,
    Participant,
    Room,
    RoomState,
    RoomSummary,
)
from bot.errors import StoreError

T = TypeVar("T")

# A conditional write loses only when another transaction changed the same records between
# the load and the write; each retry loads that change. Losing this many times in a row means
# the records keep changing under the caller.
ATTEMPTS: Final = 10


async def until_won(attempt: Callable[[], Awaitable[T | None]]) -> T:
    """Run ``attempt`` (load, decide, write conditionally) until its write wins.

    ``attempt`` raises when the rules refuse, and returns None when its write lost a race.
    """
    for _ in range(ATTEMPTS):
        result = await attempt()
        if result is not None:
            return result
    raise StoreError("The database is busy; please try again in a moment.")


@dataclass(frozen=True)
class SweepResult:
    ended_rooms: tuple[str, ...]
    expired_invites: int


@dataclass(frozen=True)
class Replaced:
    """An invite replaced by another; whoever had joined with the old one, now removed."""

    kicked: str | None


class Store(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    # --- rooms ---------------------------------------------------------------------------

    async def create_room(self, room: Room, invites: Sequence[Invite], actor: str) -> None:
        """Insert the room, its invites and their audit events atomically."""

    async def get_room(self, room_id: str) -> Room | None: ...

    async def rooms_hosted_by(
        self, platform: str, workspace: str, user_id: str, now: float
    ) -> list[RoomSummary]:
        """Rooms this user hosts that are not over at ``now``, newest first."""

    async def set_room_state(
        self, room_id: str, expected: RoomState, new: RoomState, actor: str, now: float
    ) -> bool:
        """Move a room from ``expected`` to ``new``; False if it was not in ``expected`` or
        is past its expiry at ``now``."""

    async def end_room(self, room_id: str, actor: str, now: float, reason: EndReason) -> bool:
        """End the room, close its issued invites (as ``reason.invite_outcome``) and revoke
        its active sessions; False if it had already ended."""

    # --- invites -------------------------------------------------------------------------

    async def add_invites(
        self, room_id: str, invites: Sequence[Invite], actor: str, now: float
    ) -> bool:
        """Add invites to a room; False (and nothing added) if the room has ended."""

    async def replace_invite(
        self,
        old_invite_id: str,
        replaceable: Collection[InviteState],
        new: Invite,
        actor: str,
        now: float,
    ) -> Replaced | None:
        """Revoke the old invite and add ``new`` in its place, atomically, if the old one is
        in one of the ``replaceable`` states; None if it is not.

        The session that redeemed the old invite, if active, is revoked with it.
        """

    async def get_invite(self, invite_id: str) -> Invite | None: ...

    async def invites_for_room(self, room_id: str) -> list[Invite]:
        """Oldest first."""

    # --- admission and sessions ----------------------------------------------------------

    async def room_and_invite(
        self, room_id: str, invite_id: str
    ) -> tuple[Room | None, Invite | None]:
        """The room and the invite, read together as one consistent snapshot."""

    async def redeem_invite(
        self, room: Room, invite: Invite, participant_id: str, resume_hash: bytes, now: float
    ) -> Participant | None:
        """Spend ``invite`` and seat its participant (``invite.seat``, with the room's next
        sender index), atomically, if neither the invite's state nor the room's has changed
        since they were loaded as ``invite`` and ``room``; the new session if this call won,
        None if it lost.

        Of any number of concurrent callers for one invite, exactly one wins.
        """

    async def participants_for_room(self, room_id: str) -> list[Participant]:
        """In sender index order."""

    async def find_session(self, participant_id: str) -> tuple[Room, Participant] | None: ...

    async def revoke_session(self, participant_id: str, actor: str, now: float) -> bool:
        """Revoke one participant's session (a kick); False if it was not active."""

    async def replace_resume(self, before: Participant, after: Participant) -> bool:
        """Store ``after``'s resume hashes if the session is still active and still holds
        ``before``'s; whether this call won."""

    async def admit_participant(
        self, room_id: str, participant_id: str, actor: str, now: float
    ) -> bool:
        """Mark ``participant_id`` let out of the lobby at ``now`` and audit it, atomically,
        if it is an active session in ``room_id`` not admitted yet; whether it was."""

    # --- audit and housekeeping ----------------------------------------------------------

    async def record_link_reuse(
        self, room_id: str, invite_id: str, participant_id: str, actor: str, now: float
    ) -> None:
        """Audit that a spent invite (redeemed by ``participant_id``) was presented again."""

    async def sweep(self, now: float) -> SweepResult:
        """End rooms past their expiry (EndReason.EXPIRED) and expire invites past theirs."""

    async def audit_log(self, room_id: str | None = None) -> list[AuditEvent]:
        """Oldest first."""

    async def check_writable(self) -> None:
        """Raise ``StoreError`` unless a write could be made now (the health check)."""
