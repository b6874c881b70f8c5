"""The records the core deals in: frozen data, and the rules that judge them.

Which admission error applies, and in which order, and which token a resume may use, are
decided here, so that a store only loads records and writes conditionally (saying whether
its write won), and every store gives the same answers.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Final

from bot.errors import (
    BadInvite,
    InviteAlreadyUsed,
    InviteExpired,
    InviteRevoked,
    RoomEnded,
    RoomLocked,
)
from bot.secret import Secret


class RoomState(StrEnum):
    OPEN = "open"
    LOCKED = "locked"
    ENDED = "ended"


class InviteState(StrEnum):
    ISSUED = "issued"
    REDEEMED = "redeemed"
    REVOKED = "revoked"
    EXPIRED = "expired"


class Role(StrEnum):
    HOST = "host"
    GUEST = "guest"


class ParticipantState(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"


class EndReason(StrEnum):
    """Why a room ended; the value is what participants are told (the ``ended`` message)."""

    BY_HOST = "ended by host"
    EXPIRED = "expired"

    @property
    def invite_outcome(self) -> InviteState:
        """What becomes of the room's outstanding invites: one that simply ran out of time
        says so; every other is revoked."""
        return InviteState.EXPIRED if self is EndReason.EXPIRED else InviteState.REVOKED


# Invites a reissue may replace: those never used. The host's remedy for a stolen link may
# replace a used one too (and removes whoever used it).
UNUSED: Final = frozenset({InviteState.ISSUED, InviteState.EXPIRED})
REPLACEABLE_BY_HOST: Final = UNUSED | {InviteState.REDEEMED}


@dataclass(frozen=True)
class UserRef:
    """A chat user, as the platform identifies them within one workspace or guild."""

    platform: str
    workspace: str
    user_id: str
    display_name: str

    def same_user(self, platform: str, workspace: str, user_id: str) -> bool:
        return (self.platform, self.workspace, self.user_id) == (platform, workspace, user_id)


@dataclass(frozen=True)
class Room:
    id: str
    topic: str
    platform: str
    workspace: str
    host_user_id: str
    host_name: str
    state: RoomState
    lobby: bool
    created_at: float
    expires_at: float
    ended_at: float | None = None

    def is_over(self, now: float) -> bool:
        """Ended, or past its expiry even if the sweeper has not been round yet."""
        return self.state is RoomState.ENDED or now >= self.expires_at

    def is_hosted_by(self, user: UserRef) -> bool:
        return user.same_user(self.platform, self.workspace, self.host_user_id)

    def check_joinable(self, now: float) -> None:
        """Raise RoomEnded or RoomLocked if nobody new may join at ``now``."""
        if self.is_over(now):
            raise RoomEnded(self.id)
        if self.state is RoomState.LOCKED:
            raise RoomLocked(self.id)


@dataclass(frozen=True)
class Invite:
    id: str
    room_id: str
    user_id: str
    display_name: str
    role: Role
    state: InviteState
    created_at: float
    expires_at: float
    redeemed_at: float | None = None
    secret_hash: bytes = field(default=b"", repr=False)

    def check_redeemable(self, room: Room, secret_hash: bytes, now: float) -> None:
        """Raise the admission error that applies to redeeming this invite, with a secret
        hashing to ``secret_hash``, for a seat in ``room`` at ``now``.

        The order is what people are told: a forgery learns nothing about the invite's state,
        and the invitee hears about their own link before they hear about the room.
        """
        # Hash compared in constant time; an invite for another room is as bad as a forgery.
        if not hmac.compare_digest(self.secret_hash, secret_hash) or self.room_id != room.id:
            raise BadInvite()
        if self.state is InviteState.REDEEMED:
            raise InviteAlreadyUsed(self.id, self.redeemed_at)
        if self.state is InviteState.REVOKED:
            raise InviteRevoked(self.id)
        if self.state is InviteState.EXPIRED or now >= self.expires_at:
            raise InviteExpired(self.id)
        room.check_joinable(now)

    def seat(
        self, participant_id: str, sender_index: int, resume_hash: bytes, now: float
    ) -> Participant:
        """The session this invite opens when it is redeemed at ``now``: its invitee, with
        the invite's name and role."""
        invitee = (self.user_id, self.display_name, self.role)
        active = ParticipantState.ACTIVE
        return Participant(
            participant_id, self.room_id, self.id, *invitee, sender_index, active, now, resume_hash
        )


@dataclass(frozen=True)
class IssuedInvite:
    """An invite at the one moment its secret exists in clear: on the way to its invitee."""

    invite: Invite
    link: Secret  # the whole link carries the secret in its fragment


@dataclass(frozen=True)
class Participant:
    id: str
    room_id: str
    invite_id: str
    user_id: str
    display_name: str
    role: Role
    sender_index: int
    state: ParticipantState
    joined_at: float
    resume_hash: bytes = field(default=b"", repr=False)
    # The token the last resume was made with, kept until the token it handed out is used: that
    # welcome may never have reached the device, which then still holds only this one.
    prev_resume_hash: bytes | None = field(default=None, repr=False)
    # When the host let this guest out of the lobby; kept with the session, not only by the
    # hub, so that a guest let in stays let in across a restart of the core.
    admitted_at: float | None = None

    def admitted_to(self, room: Room) -> bool:
        """Whether this session is in the meeting rather than waiting in ``room``'s lobby:
        the host always is, a guest once the host let it in (or at once without a lobby)."""
        return not room.lobby or self.role is Role.HOST or self.admitted_at is not None

    def holds_resume(self, presented_hash: bytes) -> bool:
        """Whether ``presented_hash`` is this session's current resume token or the one
        before it (compared in constant time)."""
        hashes = (self.resume_hash, self.prev_resume_hash)
        return any(h is not None and hmac.compare_digest(presented_hash, h) for h in hashes)

    def rotated(self, presented_hash: bytes, new_hash: bytes) -> Participant | None:
        """This session after a resume made with ``presented_hash`` that hands out
        ``new_hash``; None if the session is not active or the token is not one it holds.

        A resume with the current token kills the one before it. A resume with the previous
        token (the welcome that carried the current one was lost) keeps the previous one and
        replaces the current one, which nobody can have used.
        """
        if self.state is not ParticipantState.ACTIVE or not self.holds_resume(presented_hash):
            return None
        current = hmac.compare_digest(presented_hash, self.resume_hash)
        previous = self.resume_hash if current else self.prev_resume_hash
        return replace(self, resume_hash=new_hash, prev_resume_hash=previous)


@dataclass(frozen=True)
class Admission:
    """A participant let into a room, and the token that lets the same device rejoin."""

    room: Room
    participant: Participant
    resume_token: Secret


@dataclass(frozen=True)
class CreatedRoom:
    room: Room
    host_invite: IssuedInvite
    invites: tuple[IssuedInvite, ...]


@dataclass(frozen=True)
class RoomSummary:
    room: Room
    invited: int
    joined: int


@dataclass(frozen=True)
class AuditEvent:
    at: float
    room_id: str | None
    actor: str
    event: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Reissued:
    """A fresh invite that replaced someone's old one, and whoever held the old one's seat."""

    invite: IssuedInvite
    invitee: UserRef
    kicked: str | None  # the participant removed because it had joined with the old invite
