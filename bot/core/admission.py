"""Spending an invite and rotating a resume token: load, let the rule decide, write only if
what it decided on still holds; on a lost race, decide again on what won.

The rules are ``Invite.check_redeemable`` and ``Participant.rotated``; the store only loads
and writes conditionally, so any store gives the same answers in the same order.
"""

from __future__ import annotations

from bot.core.models import Participant, Room
from bot.errors import BadInvite, BadResumeToken, UnknownRoom
from bot.store.base import Store, until_won


async def spend_invite(
    store: Store,
    room_id: str,
    invite_id: str,
    secret_hash: bytes,
    participant_id: str,
    resume_hash: bytes,
    now: float,
) -> tuple[Room, Participant]:
    """The room and the session an invite opens, or the admission error that applies."""

    async def attempt() -> tuple[Room, Participant] | None:
        room, invite = await store.room_and_invite(room_id, invite_id)
        if room is None:
            raise UnknownRoom(room_id)
        if invite is None:
            raise BadInvite()
        invite.check_redeemable(room, secret_hash, now)
        seated = await store.redeem_invite(room, invite, participant_id, resume_hash, now)
        # A loss is explained by the next attempt: the rule then sees what won.
        return None if seated is None else (room, seated)

    return await until_won(attempt)


async def rotate_resume(
    store: Store, participant_id: str, presented: bytes, new_hash: bytes
) -> Participant:
    """The session rotated to ``new_hash`` by a resume made with the ``presented`` token,
    decided on the session as it is when the rotation is written."""

    async def attempt() -> Participant | None:
        found = await store.find_session(participant_id)
        after = None if found is None else found[1].rotated(presented, new_hash)
        if found is None or after is None:
            # A kick, or a resume with the newer token, got there first.
            raise BadResumeToken()
        return after if await store.replace_resume(found[1], after) else None

    return await until_won(attempt)
