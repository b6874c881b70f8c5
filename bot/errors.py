"""One root for every error Conclave raises on purpose.

Each error carries a stable machine ``code`` (used on the wire and in tests) and a
sentence for people (``str(err)``), so adapters can show it as it is.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime


def utc_minute(epoch: float) -> str:
    """A moment as people read it in any time zone: ``2027-01-15 14:02 UTC``."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")


class ConclaveError(Exception):
    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class CodedError(ConclaveError):
    """An error whose code is chosen where it is raised (a reason passed on from a peer)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


# --- admission -----------------------------------------------------------------------------


class UnknownRoom(ConclaveError):
    code = "unknown_room"

    def __init__(self, room_id: str) -> None:
        super().__init__(f"There is no meeting room {room_id!r}.")
        self.room_id = room_id


class BadInvite(ConclaveError):
    code = "bad_invite"

    def __init__(self, why: str = "This invite link is not valid.") -> None:
        super().__init__(why)


class InviteAlreadyUsed(ConclaveError):
    code = "already_used"

    def __init__(self, invite_id: str, used_at: float | None = None) -> None:
        # When it was used is what tells the invitee whether it was them: say it.
        when = "" if used_at is None else f" at {utc_minute(used_at)}"
        super().__init__(
            f"This invite link was already used{when}: links work once. "
            "If that was not you, tell the host."
        )
        self.invite_id = invite_id
        self.used_at = used_at


class InviteExpired(ConclaveError):
    code = "expired"

    def __init__(self, invite_id: str) -> None:
        super().__init__("This invite has expired; ask the host for a new one.")
        self.invite_id = invite_id


class InviteRevoked(ConclaveError):
    code = "revoked"

    def __init__(self, invite_id: str) -> None:
        super().__init__("This invite was revoked (the meeting has ended or the host withdrew it).")
        self.invite_id = invite_id


class RoomLocked(ConclaveError):
    code = "room_locked"

    def __init__(self, room_id: str) -> None:
        super().__init__("The host has locked this meeting; nobody new can join right now.")
        self.room_id = room_id


class RoomEnded(ConclaveError):
    code = "room_ended"

    def __init__(self, room_id: str) -> None:
        super().__init__("This meeting has ended.")
        self.room_id = room_id


class BadResumeToken(ConclaveError):
    code = "bad_resume"

    def __init__(self) -> None:
        super().__init__("This rejoin token is not valid (the meeting may have ended).")


class ResumeTooSoon(ConclaveError):
    code = "resume_too_soon"

    def __init__(self, wait: float) -> None:
        super().__init__(f"Rejoining too often; try again in {max(1, math.ceil(wait))} seconds.")
        self.wait = wait


# --- policy and commands ---------------------------------------------------------------------


class NotHost(ConclaveError):
    code = "not_host"

    def __init__(self, room_id: str, action: str) -> None:
        super().__init__(f"Only the host of room {room_id} can {action} it.")
        self.room_id = room_id
        self.action = action


class NotWaiting(ConclaveError):
    code = "not_waiting"

    def __init__(self) -> None:
        super().__init__("Nobody by that id is waiting in the lobby.")


class NotInvited(ConclaveError):
    code = "not_invited"

    def __init__(self, room_id: str) -> None:
        super().__init__(f"You are not invited to room {room_id}; ask its host for an invite.")
        self.room_id = room_id


class CommandError(ConclaveError):
    """A command the user typed could not be understood or is not allowed as written."""

    code = "bad_command"


class TooManyInvitees(CommandError):
    code = "too_many_invitees"

    def __init__(self, count: int, cap: int) -> None:
        super().__init__(f"That is {count} invitees; one command can invite at most {cap}.")
        self.count = count
        self.cap = cap


# --- signaling ------------------------------------------------------------------------------


class ProtocolError(ConclaveError):
    """A websocket message that breaks the signaling protocol."""

    code = "bad_message"


class MessageTooLarge(ProtocolError):
    code = "too_large"

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"Message of {size} bytes is over the {limit}-byte limit.")


class UnknownMessageType(ProtocolError):
    code = "unknown_type"

    def __init__(self, kind: str) -> None:
        super().__init__(f"Unknown message type {kind!r}.")


# --- configuration and storage ----------------------------------------------------------------


class ConfigError(ConclaveError):
    code = "bad_config"

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


class StoreError(ConclaveError):
    code = "store_error"
