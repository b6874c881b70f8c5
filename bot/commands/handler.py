"""Run a parsed `/meet` command against the service and say what happened.

Adapters call ``CommandHandler.handle`` and then deliver what it returns: a reply for the
caller and the invitations to send by direct message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from bot.clock import Clock
from bot.commands import grammar, notices, render
from bot.core.models import IssuedInvite, Room, UserRef
from bot.core.service import MeetingService
from bot.errors import CommandError, ConclaveError

log = logging.getLogger(__name__)

Resolver = Callable[[grammar.Mention], Awaitable[UserRef]]


@dataclass(frozen=True)
class Invitation:
    """One direct message to send: whom to, and the invite (with its secret link)."""

    to: UserRef
    invite: IssuedInvite
    room: Room

    def text(self) -> str:
        return render.invitation(self.invite, self.room, self.invite.link.reveal())


@dataclass(frozen=True)
class Outcome:
    """What a command produced. ``reply`` never holds a secret; ``own_link``, when set, is the
    caller's own invitation, to be shown only to the caller (never in a channel or a log)."""

    reply: str
    invitations: tuple[Invitation, ...] = ()
    ok: bool = True
    announcement: str | None = None
    own_link: Invitation | None = None

    def private_text(self) -> str:
        """The whole caller-only reply, including the caller's own link if there is one."""
        if self.own_link is None:
            return self.reply
        inv = self.own_link
        return render.own_link(inv.invite, inv.room, inv.invite.link.reveal())


class CommandHandler:
    def __init__(self, service: MeetingService, clock: Clock) -> None:
        self._service = service
        self._clock = clock

    def notify_hosts(self, platform: str, notify: notices.Notify) -> None:
        """Tell hosts on ``platform``, through ``notify``, when a spent link of theirs is used."""
        notices.subscribe(self._service.events, platform, notify)

    def parse(self, text: str) -> grammar.Command:
        return grammar.parse(text)

    async def handle(
        self, actor: UserRef, text: str, resolve: Resolver, bot_user_id: str | None = None
    ) -> Outcome:
        try:
            command = self.parse(text)
            if bot_user_id is not None and any(
                m.user_id == bot_user_id for m in getattr(command, "invitees", ())
            ):
                raise CommandError("I can't be invited to a meeting; mention people instead.")
            return await self._run(actor, command, resolve)
        except ConclaveError as err:
            return Outcome(reply=render.error(err), ok=False)
        except Exception:
            log.exception("command failed")
            return Outcome(reply=render.INTERNAL_ERROR, ok=False)

    async def _run(self, actor: UserRef, command: grammar.Command, resolve: Resolver) -> Outcome:
        svc = self._service
        match command:
            case grammar.Help():
                return Outcome(reply=render.HELP)
            case grammar.ListRooms():
                return Outcome(reply=render.room_list(await svc.rooms_of(actor)))
            case grammar.LockRoom(room_id):
                return Outcome(reply=render.state_changed(await svc.lock(actor, room_id)))
            case grammar.UnlockRoom(room_id):
                return Outcome(reply=render.state_changed(await svc.unlock(actor, room_id)))
            case grammar.EndRoom(room_id):
                return Outcome(reply=render.state_changed(await svc.end(actor, room_id)))
            case grammar.JoinRoom(room_id):
                fresh = await svc.reissue(actor, room_id)
                room = await svc.get_room(room_id)
                assert room is not None
                mine = Invitation(actor, fresh, room)
                return Outcome(reply="Your new link is ready.", own_link=mine)
            case grammar.ReissueLink(room_id, mention):
                # The invite names the person: no platform look-up, and no one is reached
                # who was not invited.
                done = await svc.reissue_for(actor, room_id, mention.user_id)
                room = await svc.get_room(room_id)
                assert room is not None
                return Outcome(
                    reply=render.reissued(room, done),
                    invitations=(Invitation(done.invitee, done.invite, room),),
                )
            case grammar.InviteMore(room_id, mentions):
                users = await self._resolve(mentions, resolve)
                issued = await svc.invite(actor, room_id, users)
                room = await svc.get_room(room_id)
                assert room is not None
                return Outcome(
                    reply=render.invited(room, issued),
                    invitations=tuple(
                        Invitation(u, i, room) for u, i in zip(users, issued, strict=True)
                    ),
                )
            case grammar.CreateRoom(mentions, topic, lobby, ttl, announce):
                users = await self._resolve(mentions, resolve)
                made = await svc.create_room(actor, users, topic, lobby, ttl)
                invitations = [
                    Invitation(u, i, made.room) for u, i in zip(users, made.invites, strict=True)
                ]
                invitations.append(Invitation(actor, made.host_invite, made.room))
                return Outcome(
                    reply=render.created(made.room, made.invites, self._clock.now()),
                    invitations=tuple(invitations),
                    announcement=render.announcement(made.room) if announce else None,
                )
        raise AssertionError(f"unhandled command {command!r}")  # pragma: no cover

    async def _resolve(
        self, mentions: Sequence[grammar.Mention], resolve: Resolver
    ) -> list[UserRef]:
        # Platforms look names up over HTTP, one request a name: refuse too many people
        # before asking, then resolve everyone at once.
        self._service.policy.check_invitee_count(len(mentions))
        return list(await asyncio.gather(*(resolve(m) for m in mentions)))
