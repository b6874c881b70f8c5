"""The records the core deals in. Plain frozen data; behaviour lives in the service."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

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
