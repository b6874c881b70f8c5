"""The admission rule on its own: which error a redemption gets, in which order, and which
token a resume may use. Plain records, no store: this is what every store relies on."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bot.core.models import (
    EndReason,
    Invite,
    InviteState,
    Participant,
    ParticipantState,
    Role,
    Room,
    RoomState,
)
from bot.errors import (
    BadInvite,
    ConclaveError,
    InviteAlreadyUsed,
    InviteExpired,
    InviteRevoked,
    RoomEnded,
    RoomLocked,
)

NOW = 1_800_000_000.0
SECRET = b"s" * 32
FORGED = b"f" * 32

ROOM = Room("room", "Sync", "console", "local", "hana", "Hana", RoomState.OPEN, False, 0, NOW + 600)
INVITE = Invite(
    "inv", "room", "ana", "Ana", Role.GUEST, InviteState.ISSUED, 0, NOW + 60, None, SECRET
)
USED = replace(INVITE, state=InviteState.REDEEMED, redeemed_at=NOW - 30)
ENDED = replace(ROOM, state=RoomState.ENDED, ended_at=NOW - 1)


@pytest.mark.parametrize(
    ("invite", "room", "secret", "refused"),
    [
        # A forgery learns nothing, whatever the state of the invite or the room.
        (USED, ENDED, FORGED, BadInvite),
        (replace(INVITE, room_id="other"), ROOM, SECRET, BadInvite),
        # The invitee hears about their own link before they hear about the room.
        (USED, ENDED, SECRET, InviteAlreadyUsed),
        (replace(INVITE, state=InviteState.REVOKED), ENDED, SECRET, InviteRevoked),
        (replace(INVITE, state=InviteState.EXPIRED), ENDED, SECRET, InviteExpired),
        (
            replace(INVITE, expires_at=NOW),
            replace(ROOM, state=RoomState.LOCKED),
            SECRET,
            InviteExpired,
        ),
        (INVITE, ENDED, SECRET, RoomEnded),
        (INVITE, replace(ROOM, expires_at=NOW), SECRET, RoomEnded),  # over, not yet swept
        (INVITE, replace(ROOM, expires_at=NOW, state=RoomState.LOCKED), SECRET, RoomEnded),
        (INVITE, replace(ROOM, state=RoomState.LOCKED), SECRET, RoomLocked),
    ],
)
def test_the_error_that_applies_first(
    invite: Invite, room: Room, secret: bytes, refused: type[ConclaveError]
) -> None:
    with pytest.raises(ConclaveError) as raised:
        invite.check_redeemable(room, secret, NOW)
    assert type(raised.value) is refused


def test_a_used_invite_says_when() -> None:
    with pytest.raises(InviteAlreadyUsed, match="already used at 2027-01-15 07:59 UTC"):
        USED.check_redeemable(ROOM, SECRET, NOW)


def test_an_issued_invite_in_an_open_room_is_redeemable_until_its_expiry() -> None:
    INVITE.check_redeemable(ROOM, SECRET, INVITE.expires_at - 1)
    with pytest.raises(InviteExpired):
        INVITE.check_redeemable(ROOM, SECRET, INVITE.expires_at)


def test_the_seat_an_invite_opens() -> None:
    seated = INVITE.seat("pana", 3, b"r" * 32, NOW)
    assert (seated.room_id, seated.invite_id, seated.user_id, seated.role) == (
        "room",
        "inv",
        "ana",
        Role.GUEST,
    )
    assert (seated.sender_index, seated.state, seated.joined_at) == (
        3,
        ParticipantState.ACTIVE,
        NOW,
    )
    assert seated.resume_hash == b"r" * 32 and seated.prev_resume_hash is None


def session(current: bytes, previous: bytes | None = None) -> Participant:
    return replace(INVITE.seat("pana", 1, current, NOW), prev_resume_hash=previous)


def test_a_resume_with_the_current_token_kills_the_one_before() -> None:
    after = session(b"2" * 32, b"1" * 32).rotated(b"2" * 32, b"3" * 32)
    assert after is not None
    assert (after.resume_hash, after.prev_resume_hash) == (b"3" * 32, b"2" * 32)


def test_a_resume_with_the_previous_token_keeps_it_and_replaces_the_current() -> None:
    after = session(b"2" * 32, b"1" * 32).rotated(b"1" * 32, b"3" * 32)
    assert after is not None
    assert (after.resume_hash, after.prev_resume_hash) == (b"3" * 32, b"1" * 32)


@pytest.mark.parametrize(
    "before",
    [
        session(b"2" * 32, b"1" * 32),
        session(b"2" * 32),
        replace(session(b"9" * 32, b"1" * 32), state=ParticipantState.REVOKED),
    ],
)
def test_any_other_token_or_a_removed_session_gets_nothing(before: Participant) -> None:
    presented = b"1" * 32 if before.state is ParticipantState.REVOKED else b"9" * 32
    assert before.rotated(presented, b"3" * 32) is None


def test_an_ended_room_closes_its_invites_by_why_it_ended() -> None:
    assert EndReason.EXPIRED.invite_outcome is InviteState.EXPIRED
    assert EndReason.BY_HOST.invite_outcome is InviteState.REVOKED
    # The reason is what participants are told, word for word.
    assert [r.value for r in EndReason] == ["ended by host", "expired"]
