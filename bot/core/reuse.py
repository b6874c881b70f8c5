"""A spent invite that comes back: audit it and tell the room's host.

A link is used once; when it is presented again (or its invitee asks for a new one in chat),
either the invitee forgot they joined or someone else joined under their name. Only the
invitee can tell which, and only the host can act, so the host hears of it.
"""

from __future__ import annotations

import logging

from bot.clock import Clock
from bot.core.events import EventBus, LinkReused
from bot.core.models import UserRef
from bot.core.throttle import Throttle
from bot.store.base import Store

log = logging.getLogger(__name__)


class ReuseReporter:
    def __init__(self, store: Store, events: EventBus, clock: Clock, interval: float) -> None:
        self._store = store
        self._events = events
        self._clock = clock
        # Whoever holds the link could otherwise flood the host's DMs (and the audit log).
        self._throttle = Throttle(clock, 1, interval)

    async def report(self, invite_id: str, actor: str, *, asked_in_chat: bool) -> None:
        invite = await self._store.get_invite(invite_id)
        if invite is None or invite.redeemed_at is None:
            return
        if self._throttle.take(invite.id) > 0:
            return
        room = await self._store.get_room(invite.room_id)
        participants = await self._store.participants_for_room(invite.room_id)
        holder = next((p for p in participants if p.invite_id == invite.id), None)
        if room is None or holder is None:
            return
        now = self._clock.now()
        await self._store.record_link_reuse(room.id, invite.id, holder.id, actor, now)
        log.info("spent invite %s of room %s presented again", invite.id, room.id)
        await self._events.publish(
            LinkReused(
                room_id=room.id,
                topic=room.topic,
                host=UserRef(room.platform, room.workspace, room.host_user_id, room.host_name),
                invitee_user_id=invite.user_id,
                invitee_name=invite.display_name,
                participant_id=holder.id,
                used_at=invite.redeemed_at,
                asked_in_chat=asked_in_chat,
            )
        )
