"""What the audit trail says about each change, written once for every store.

A store appends these in the same transaction as the change they record, so the trail
never tells of a change that did not happen, and never misses one that did.
"""

from __future__ import annotations

from bot.core.models import AuditEvent, EndReason, Invite, InviteState, Room, RoomState

SWEEPER = "sweeper"  # the actor of everything that happens because time ran out


def room_created(room: Room, actor: str) -> AuditEvent:
    return AuditEvent(
        room.created_at,
        room.id,
        actor,
        "room_created",
        {
            "platform": room.platform,
            "workspace": room.workspace,
            "lobby": room.lobby,
            "expires_at": room.expires_at,
        },
    )


def invite_issued(invite: Invite, actor: str, now: float) -> AuditEvent:
    return AuditEvent(
        now,
        invite.room_id,
        actor,
        "invite_issued",
        {
            "invite": invite.id,
            "invitee": invite.user_id,
            "role": invite.role.value,
            "expires_at": invite.expires_at,
        },
    )


def invite_reissued(room_id: str, old_invite_id: str, actor: str, now: float) -> AuditEvent:
    return AuditEvent(
        now, room_id, actor, "invite_revoked", {"invite": old_invite_id, "reason": "reissued"}
    )


def invite_closed(
    room_id: str, invite_id: str, outcome: InviteState, actor: str, now: float
) -> AuditEvent:
    """An outstanding invite that became ``outcome`` (expired or revoked) with its room."""
    return AuditEvent(now, room_id, actor, f"invite_{outcome.value}", {"invite": invite_id})


def invite_redeemed(invite: Invite, participant_id: str, now: float) -> AuditEvent:
    detail = {"invite": invite.id, "participant": participant_id}
    return AuditEvent(now, invite.room_id, invite.user_id, "invite_redeemed", detail)


def room_state_changed(room_id: str, new: RoomState, actor: str, now: float) -> AuditEvent:
    event = {RoomState.LOCKED: "room_locked", RoomState.OPEN: "room_unlocked"}[new]
    return AuditEvent(now, room_id, actor, event)


def room_ended(
    room_id: str, reason: EndReason, sessions_revoked: int, actor: str, now: float
) -> AuditEvent:
    detail = {"reason": reason.value, "sessions_revoked": sessions_revoked}
    return AuditEvent(now, room_id, actor, "room_ended", detail)


def participant_kicked(room_id: str, participant_id: str, actor: str, now: float) -> AuditEvent:
    return AuditEvent(now, room_id, actor, "participant_kicked", {"participant": participant_id})


def participant_admitted(room_id: str, participant_id: str, actor: str, now: float) -> AuditEvent:
    """A guest the host let out of the lobby."""
    return AuditEvent(now, room_id, actor, "participant_admitted", {"participant": participant_id})


def link_reused(
    room_id: str, invite_id: str, participant_id: str, actor: str, now: float
) -> AuditEvent:
    detail = {"invite": invite_id, "participant": participant_id}
    return AuditEvent(now, room_id, actor, "link_reused", detail)
