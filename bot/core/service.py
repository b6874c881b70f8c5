"""``MeetingService``: the one API every adapter and the signaling hub call."""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import replace

from bot.clock import Clock
from bot.core.admission import rotate_resume, spend_invite
from bot.core.events import EventBus, MeetingEnded, ParticipantKicked, RoomLockChanged
from bot.core.links import make_link, split_credential, split_resume_token
from bot.core.models import (
    REPLACEABLE_BY_HOST,
    UNUSED,
    Admission,
    CreatedRoom,
    EndReason,
    Invite,
    InviteState,
    IssuedInvite,
    ParticipantState,
    Reissued,
    Role,
    Room,
    RoomState,
    RoomSummary,
    UserRef,
)
from bot.core.policy import MeetingPolicy
from bot.core.reuse import ReuseReporter
from bot.core.throttle import Throttle
from bot.errors import (
    BadResumeToken,
    CommandError,
    InviteAlreadyUsed,
    InviteRevoked,
    NotHost,
    NotInvited,
    NotWaiting,
    ResumeTooSoon,
    RoomEnded,
    UnknownRoom,
    utc_minute,
)
from bot.secret import Secret
from bot.store.base import Store, SweepResult
from bot.tokens import (
    hash_secret,
    new_invite_id,
    new_participant_id,
    new_room_id,
    new_secret,
)

log = logging.getLogger(__name__)


def _actor(user: UserRef) -> str:
    return f"{user.platform}:{user.workspace}:{user.user_id}"


class MeetingService:
    def __init__(
        self,
        store: Store,
        policy: MeetingPolicy,
        public_url: str,
        clock: Clock,
        events: EventBus | None = None,
    ) -> None:
        self._store = store
        self._policy = policy
        self._public_url = public_url.rstrip("/")
        self._clock = clock
        self.events = events or EventBus()
        self._resumes = Throttle(clock, policy.resume_limit, policy.resume_window)
        self._reuse = ReuseReporter(store, self.events, clock, policy.reuse_notice_interval)

    @property
    def policy(self) -> MeetingPolicy:
        return self._policy

    # --- hosting -------------------------------------------------------------------------

    async def create_room(
        self,
        host: UserRef,
        invitees: Sequence[UserRef] = (),
        topic: str = "",
        lobby: bool = False,
        ttl: int | None = None,
    ) -> CreatedRoom:
        ttl = self._policy.meeting_ttl(ttl)
        topic = self._policy.meeting_topic(topic)
        self._check_invitees(host, invitees)
        now = self._clock.now()
        room = Room(
            id=new_room_id(),
            topic=topic,
            platform=host.platform,
            workspace=host.workspace,
            host_user_id=host.user_id,
            host_name=host.display_name,
            state=RoomState.OPEN,
            lobby=lobby,
            created_at=now,
            expires_at=now + ttl,
        )
        host_issued = self._issue(room, host, Role.HOST, now)
        guests = [self._issue(room, user, Role.GUEST, now) for user in invitees]
        await self._store.create_room(
            room, [host_issued.invite, *(g.invite for g in guests)], _actor(host)
        )
        log.info("room %s created by %s with %d invitees", room.id, _actor(host), len(guests))
        return CreatedRoom(room=room, host_invite=host_issued, invites=tuple(guests))

    async def invite(
        self, actor: UserRef, room_id: str, invitees: Sequence[UserRef]
    ) -> tuple[IssuedInvite, ...]:
        room = await self._hosted_room(actor, room_id, "invite people to")
        if not invitees:
            raise CommandError("Say whom to invite, e.g. `/meet invite ROOM @ana`.")
        self._check_invitees(actor, invitees)
        existing = {
            inv.user_id
            for inv in await self._store.invites_for_room(room.id)
            if inv.state in (InviteState.ISSUED, InviteState.REDEEMED)
        }
        already = [u.display_name for u in invitees if u.user_id in existing]
        if already:
            raise CommandError(f"Already invited to this meeting: {', '.join(already)}.")
        now = self._clock.now()
        issued = tuple(self._issue(room, user, Role.GUEST, now) for user in invitees)
        if not await self._store.add_invites(
            room.id, [i.invite for i in issued], _actor(actor), now
        ):
            raise RoomEnded(room.id)  # ended since it was loaded
        return issued

    async def reissue(self, actor: UserRef, room_id: str) -> IssuedInvite:
        """A fresh link for an invitee whose first one never reached them (DMs closed).

        Secrets are never stored, so the old link cannot be shown again: it is revoked and a
        new one issued for the same person and role. If the old one was used, the caller
        hears when and the host hears that the caller asked: that is how a theft shows.
        """
        room = await self._store.get_room(room_id)
        if room is None or (room.platform, room.workspace) != (actor.platform, actor.workspace):
            raise UnknownRoom(room_id)
        if room.is_over(self._clock.now()):
            raise RoomEnded(room.id)
        old = await self._current_invite(room, actor.user_id)
        if old is None:
            raise NotInvited(room.id)
        if old.state is InviteState.REDEEMED:
            await self._reuse.report(old.id, _actor(actor), asked_in_chat=True)
            assert old.redeemed_at is not None
            raise CommandError(
                f"Your link for this meeting was already used at {utc_minute(old.redeemed_at)}. "
                "If your connection dropped, your client rejoins by itself. If that was not "
                "you, the host has been told and can send you a new link."
            )
        fresh, _ = await self._replace(room, old, actor)
        return fresh

    async def reissue_for(self, actor: UserRef, room_id: str, invitee_user_id: str) -> Reissued:
        """The host's remedy for a stolen link: whoever joined with the invitee's current
        invite is removed, that invite revoked, and a fresh one issued for the invitee."""
        room = await self._hosted_room(actor, room_id, "reissue links for")
        old = await self._current_invite(room, invitee_user_id)
        if old is None:
            raise CommandError(
                f"@{invitee_user_id} is not invited to room {room.id}; "
                f"use /meet invite {room.id} @{invitee_user_id}."
            )
        fresh, kicked = await self._replace(room, old, actor, spent=True)
        if kicked is not None:
            log.info("participant %s removed from room %s by a reissue", kicked, room.id)
            await self.events.publish(ParticipantKicked(room.id, kicked))
        invitee = UserRef(room.platform, room.workspace, old.user_id, old.display_name)
        return Reissued(invite=fresh, invitee=invitee, kicked=kicked)

    async def lock(self, actor: UserRef, room_id: str) -> Room:
        return await self._set_lock(actor, room_id, locked=True)

    async def unlock(self, actor: UserRef, room_id: str) -> Room:
        return await self._set_lock(actor, room_id, locked=False)

    async def end(self, actor: UserRef, room_id: str) -> Room:
        room = await self._hosted_room(actor, room_id, "end")
        now = self._clock.now()
        await self._store.end_room(room.id, _actor(actor), now, EndReason.BY_HOST)
        await self.events.publish(MeetingEnded(room.id, EndReason.BY_HOST))
        return replace(room, state=RoomState.ENDED, ended_at=now)

    async def rooms_of(self, actor: UserRef) -> list[RoomSummary]:
        return await self._store.rooms_hosted_by(
            actor.platform, actor.workspace, actor.user_id, self._clock.now()
        )

    # --- admission -----------------------------------------------------------------------

    async def redeem(self, room_id: str, credential: str) -> Admission:
        """Spend an invite (``<invite_id>.<secret>``) for a seat in ``room_id``."""
        invite_id, secret = split_credential(credential)
        resume_secret = new_secret()
        try:
            room, participant = await spend_invite(
                self._store,
                room_id,
                invite_id,
                hash_secret(secret),
                new_participant_id(),
                hash_secret(resume_secret),
                self._clock.now(),
            )
        except InviteAlreadyUsed:
            # Only raised once the secret matched: whoever this is holds the real link.
            await self._reuse.report(invite_id, f"link:{invite_id}", asked_in_chat=False)
            raise
        log.info("invite %s redeemed in room %s as %s", invite_id, room_id, participant.id)
        return Admission(
            room=room,
            participant=participant,
            resume_token=Secret(f"{participant.id}.{resume_secret.reveal()}"),
        )

    async def resume(self, token: str) -> Admission:
        """Readmit a participant whose connection dropped, with a new token. The previous one
        still works until the new one is used (its welcome may have been lost), so a token
        copied off a device dies once that device resumes with the token it was last given."""
        participant_id, secret = split_resume_token(token)
        presented = hash_secret(secret)
        found = await self._store.find_session(participant_id)
        if found is None or not found[1].holds_resume(presented):
            raise BadResumeToken()
        room, participant = found
        if room.is_over(self._clock.now()):
            raise RoomEnded(room.id)
        if participant.state is not ParticipantState.ACTIVE:
            raise BadResumeToken()
        # Counted only once the token is proven, so nobody else can spend a participant's
        # allowance (participant ids are in every roster).
        wait = self._resumes.take(participant.id)
        if wait > 0:
            raise ResumeTooSoon(wait)
        fresh = new_secret()
        rotated = await rotate_resume(self._store, participant.id, presented, hash_secret(fresh))
        return Admission(
            room=room,
            participant=rotated,
            resume_token=Secret(f"{participant.id}.{fresh.reveal()}"),
        )

    # --- host controls from inside the meeting ---------------------------------------------

    async def host_of(self, participant_id: str) -> tuple[Room, UserRef]:
        """The room and chat identity of a connected host; NotHost for anyone else."""
        found = await self._store.find_session(participant_id)
        if found is None:
            raise BadResumeToken()
        room, participant = found
        if participant.role is not Role.HOST or participant.state is not ParticipantState.ACTIVE:
            raise NotHost(room.id, "manage")
        if room.is_over(self._clock.now()):
            raise RoomEnded(room.id)
        actor = UserRef(
            room.platform, room.workspace, participant.user_id, participant.display_name
        )
        return room, actor

    async def kick(self, host_participant_id: str, target_participant_id: str) -> None:
        """Remove a participant for good: its session and resume token stop working."""
        room, actor = await self.host_of(host_participant_id)
        if target_participant_id == host_participant_id:
            raise CommandError("The host cannot kick themselves; end the meeting instead.")
        found = await self._store.find_session(target_participant_id)
        if found is None or found[0].id != room.id:
            raise CommandError("There is no such participant in this meeting.")
        if not await self._store.revoke_session(
            target_participant_id, _actor(actor), self._clock.now()
        ):
            raise CommandError("That participant has already been removed.")
        log.info("participant %s kicked from room %s", target_participant_id, room.id)
        await self.events.publish(ParticipantKicked(room.id, target_participant_id))

    async def admit(self, host_id: str, target_id: str, waiting: Collection[str]) -> None:
        """Let a guest out of the lobby (``waiting``: who is in it); on record, as a kick is,
        and kept with its session, so that it resumes into the meeting after a restart."""
        room, actor = await self.host_of(host_id)
        if target_id not in waiting:
            raise NotWaiting()
        # Not written if a kick, or another admit, got there first.
        if not await self._store.admit_participant(
            room.id, target_id, _actor(actor), self._clock.now()
        ):
            raise NotWaiting()
        log.info("participant %s admitted to room %s", target_id, room.id)

    # --- housekeeping --------------------------------------------------------------------

    async def sweep(self) -> SweepResult:
        result = await self._store.sweep(self._clock.now())
        for room_id in result.ended_rooms:
            await self.events.publish(MeetingEnded(room_id, EndReason.EXPIRED))
        if result.ended_rooms or result.expired_invites:
            log.info(
                "sweeper expired %d rooms and %d invites",
                len(result.ended_rooms),
                result.expired_invites,
            )
        return result

    async def get_room(self, room_id: str) -> Room | None:
        return await self._store.get_room(room_id)

    # --- internals -----------------------------------------------------------------------

    def _issue(self, room: Room, user: UserRef, role: Role, now: float) -> IssuedInvite:
        secret = new_secret()
        invite = Invite(
            id=new_invite_id(),
            room_id=room.id,
            user_id=user.user_id,
            display_name=user.display_name,
            role=role,
            state=InviteState.ISSUED,
            created_at=now,
            expires_at=min(now + self._policy.invite_ttl, room.expires_at),
            secret_hash=hash_secret(secret),
        )
        return IssuedInvite(
            invite=invite, link=make_link(self._public_url, room.id, invite.id, secret)
        )

    async def _current_invite(self, room: Room, user_id: str) -> Invite | None:
        """The user's latest invite to the room that is not revoked (reissues revoke the old)."""
        theirs = [
            i
            for i in await self._store.invites_for_room(room.id)
            if i.user_id == user_id and i.state is not InviteState.REVOKED
        ]
        return theirs[-1] if theirs else None

    async def _replace(
        self, room: Room, old: Invite, actor: UserRef, *, spent: bool = False
    ) -> tuple[IssuedInvite, str | None]:
        """A fresh invite for ``old``'s invitee and role in its place; the participant removed
        with it (only when ``spent`` allows replacing a redeemed invite)."""
        now = self._clock.now()
        invitee = UserRef(room.platform, room.workspace, old.user_id, old.display_name)
        fresh = self._issue(room, invitee, old.role, now)
        replaceable = REPLACEABLE_BY_HOST if spent else UNUSED
        done = await self._store.replace_invite(
            old.id, replaceable, fresh.invite, _actor(actor), now
        )
        if done is None:  # it changed since it was loaded
            raise InviteRevoked(old.id) if spent else InviteAlreadyUsed(old.id)
        return fresh, done.kicked

    def _check_invitees(self, host: UserRef, invitees: Sequence[UserRef]) -> None:
        # Someone named twice is the grammar's to refuse: it is a slip in what was typed.
        self._policy.check_invitee_count(len(invitees))
        if any(user.user_id == host.user_id for user in invitees):
            raise CommandError(
                "You don't need to invite yourself: as the host you get your own link."
            )

    async def _hosted_room(self, actor: UserRef, room_id: str, action: str) -> Room:
        room = await self._store.get_room(room_id)
        # A room from another workspace is reported as unknown: ids must not confirm existence.
        if room is None or (room.platform, room.workspace) != (actor.platform, actor.workspace):
            raise UnknownRoom(room_id)
        if not room.is_hosted_by(actor):
            raise NotHost(room.id, action)
        if room.is_over(self._clock.now()):
            raise RoomEnded(room.id)
        return room

    async def _set_lock(self, actor: UserRef, room_id: str, *, locked: bool) -> Room:
        room = await self._hosted_room(actor, room_id, "lock" if locked else "unlock")
        expected, new = (
            (RoomState.OPEN, RoomState.LOCKED) if locked else (RoomState.LOCKED, RoomState.OPEN)
        )
        changed = await self._store.set_room_state(
            room.id, expected, new, _actor(actor), self._clock.now()
        )
        if not changed:
            raise CommandError(f"Room {room.id} is already {'locked' if locked else 'unlocked'}.")
        await self.events.publish(RoomLockChanged(room.id, locked))
        return replace(room, state=new)
