"""The storage contract the core relies on.

Every method that changes more than one row does so in one transaction; the conditional
updates that decide races (redemption, state changes) live behind this seam so that another
database can implement them with the same guarantees.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from bot.core.models import (
    AuditEvent,
    Invite,
    Participant,
    Room,
    RoomState,
    RoomSummary,
)


@dataclass(frozen=True)
class SweepResult:
    ended_rooms: tuple[str, ...]
    expired_invites: int


class Store(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def create_room(self, room: Room, invites: Sequence[Invite], actor: str) -> None:
        """Insert the room, its invites and their audit events atomically."""

    async def add_invites(
        self, room_id: str, invites: Sequence[Invite], actor: str, now: float
    ) -> None:
        """Add invites to a room that is not ended; raises RoomEnded or UnknownRoom."""

    async def replace_invite(
        self, old_invite_id: str, new: Invite, actor: str, now: float, *, spent: bool = False
    ) -> str | None:
        """Revoke an issued or expired invite and add ``new`` in its place, atomically.

        Raises InviteAlreadyUsed if the old invite was redeemed meanwhile. With ``spent``, a
        redeemed invite is revoked too, and so is the session that redeemed it: the id of
        that participant is returned if it was active (None otherwise). Raises InviteRevoked
        if the old invite was already revoked.
        """

    async def get_room(self, room_id: str) -> Room | None: ...

    async def get_invite(self, invite_id: str) -> Invite | None: ...

    async def invites_for_room(self, room_id: str) -> list[Invite]: ...

    async def participants_for_room(self, room_id: str) -> list[Participant]: ...

    async def rooms_hosted_by(
        self, platform: str, workspace: str, user_id: str, now: float
    ) -> list[RoomSummary]:
        """Rooms this user hosts that have not ended, newest first."""

    async def set_room_state(
        self, room_id: str, expected: RoomState, new: RoomState, actor: str, now: float
    ) -> bool:
        """Move a room from ``expected`` to ``new``; False if it was not in ``expected``."""

    async def end_room(self, room_id: str, actor: str, now: float, reason: str) -> bool:
        """End the room and revoke its issued invites and active sessions; False if ended."""

    async def redeem_invite(
        self,
        room_id: str,
        invite_id: str,
        secret_hash: bytes,
        participant_id: str,
        resume_hash: bytes,
        now: float,
    ) -> tuple[Room, Participant]:
        """Spend an invite and create its session, or raise the admission error that applies.

        Of any number of concurrent callers for one invite, exactly one succeeds.
        """

    async def find_session(self, participant_id: str) -> tuple[Room, Participant] | None: ...

    async def revoke_session(self, participant_id: str, actor: str, now: float) -> bool:
        """Revoke one participant's session (a kick); False if it was not active."""

    async def rotate_resume(
        self, participant_id: str, presented_hash: bytes, new_hash: bytes
    ) -> Participant | None:
        """Give an active session the resume hash ``new_hash``, atomically; the session after.

        If ``presented_hash`` is the current hash, it becomes the previous one. If it is the
        previous hash (the welcome that carried the current one was lost), the previous stays
        and the current is replaced. Otherwise, or if the session is not active, None.
        """

    async def record_link_reuse(
        self, room_id: str, invite_id: str, participant_id: str, actor: str, now: float
    ) -> None:
        """Audit that a spent invite (redeemed by ``participant_id``) was presented again."""

    async def sweep(self, now: float) -> SweepResult:
        """Expire rooms and invites past their expiry."""

    async def audit_log(self, room_id: str | None = None) -> list[AuditEvent]: ...
