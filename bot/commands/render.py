"""Words for people: the replies every adapter shows, in text that reads well on any platform."""

from __future__ import annotations

from collections.abc import Sequence

from bot.core.events import LinkReused
from bot.core.models import IssuedInvite, Reissued, Role, Room, RoomState, RoomSummary
from bot.durations import format_duration
from bot.errors import ConclaveError, utc_minute

HELP = """\
Conclave starts end-to-end-encrypted video meetings. Commands:
  /meet @ana @ben Weekly sync   start a meeting and send each person a one-time link by DM
      add `lobby` to admit guests yourself, `ttl=2h` to set how long the room lives,
      `announce` to tell the channel (the announcement never contains a link)
  /meet invite ROOM @user ...   invite more people to a room you host
  /meet lock ROOM               let nobody new in (unlock with /meet unlock ROOM)
  /meet end ROOM                end the meeting and revoke every link
  /meet join ROOM               a fresh link for yourself, if your DM did not arrive
  /meet reissue ROOM @user      if someone else used @user's link: remove them from the
      meeting and send @user a new link (host only)
  /meet list                    the rooms you host
Each link works once, for the person it was sent to; keep it to yourself."""


def names(invites: Sequence[IssuedInvite]) -> str:
    return ", ".join(i.invite.display_name for i in invites)


def created(room: Room, invites: Sequence[IssuedInvite], now: float) -> str:
    lobby = "on (you admit guests)" if room.lobby else "off"
    people = f"{names(invites)} and you" if invites else "you (invite others with /meet invite)"
    return (
        f'Meeting "{room.topic}" is ready: room `{room.id}`, open for '
        f"{format_duration(room.expires_at - now)} (until {utc_minute(room.expires_at)}), "
        f"lobby {lobby}.\n"
        f"One-time links go by direct message to {people}.\n"
        f"Host controls: /meet invite {room.id} @user · /meet lock {room.id} · /meet end {room.id}"
    )


def invited(room: Room, invites: Sequence[IssuedInvite]) -> str:
    return f'Invited {names(invites)} to "{room.topic}" (`{room.id}`); links go by direct message.'


def state_changed(room: Room) -> str:
    if room.state is RoomState.ENDED:
        return f'Ended "{room.topic}" (`{room.id}`): everyone is out and every link is revoked.'
    if room.state is RoomState.LOCKED:
        return f'Locked "{room.topic}" (`{room.id}`): nobody new can join until you unlock it.'
    return f'Unlocked "{room.topic}" (`{room.id}`): invited people can join again.'


def reissued(room: Room, done: Reissued) -> str:
    name = done.invitee.display_name
    removed = (
        f" Removed participant {done.kicked}, who had joined with the old link."
        if done.kicked is not None
        else ""
    )
    return (
        f'New link for {name} in "{room.topic}" (`{room.id}`): '
        f"their old link no longer works.{removed}"
    )


def link_reused(event: LinkReused) -> str:
    """The host's direct message when a spent link comes back (no secret in it)."""
    return f'Meeting "{event.topic}" (`{event.room_id}`): {event.message}'


def room_list(rooms: Sequence[RoomSummary]) -> str:
    if not rooms:
        return "You host no open meetings. Start one with /meet @someone Topic."
    lines = ["Meetings you host:"]
    for s in rooms:
        lobby = ", lobby" if s.room.lobby else ""
        lines.append(
            f'  `{s.room.id}` "{s.room.topic}": {s.room.state.value}{lobby}, '
            f"{s.joined} joined of {s.invited} invited, until {utc_minute(s.room.expires_at)}"
        )
    return "\n".join(lines)


def invitation_headline(invite: IssuedInvite, host_name: str, topic: str) -> str:
    """Who invites whom to what; names and topic as the caller formats them for its platform."""
    who = (
        "You are the host of" if invite.invite.role is Role.HOST else f"{host_name} invites you to"
    )
    return f"{who} the end-to-end-encrypted meeting {topic}."


def link_terms(invite: IssuedInvite) -> str:
    return (
        f"This link is yours alone, works once and expires {utc_minute(invite.invite.expires_at)}."
    )


def invitation(invite: IssuedInvite, room: Room, link: str) -> str:
    """The text of the DM that carries a link (the link is passed in, revealed, by the sender)."""
    headline = invitation_headline(invite, room.host_name, f'"{room.topic}"')
    return f"{headline}\nJoin securely: {link}\n{link_terms(invite)}"


def announcement(room: Room) -> str:
    """For the channel: who started what, and where invitees find their link. No secret."""
    return (
        f'{room.host_name} started the end-to-end-encrypted meeting "{room.topic}". '
        "Invitees: your personal link is in your direct messages "
        f"(or type /meet join {room.id})."
    )


def own_link(invite: IssuedInvite, room: Room, link: str) -> str:
    return (
        f'Your personal link for "{room.topic}" (visible only to you): {link}\n'
        f"It works once and expires {utc_minute(invite.invite.expires_at)}. "
        "Any earlier link of yours for this meeting no longer works."
    )


def delivery_report(room_id: str, sent: Sequence[str], failed: Sequence[tuple[str, str]]) -> str:
    """What the caller is told after the DMs went out (or did not)."""
    lines = []
    if sent:
        lines.append(f"Sent a private link to {', '.join(sent)}.")
    if failed:
        lines.append("Could not send a link to:")
        lines.extend(f"  {name}: {why}" for name, why in failed)
        lines.append(f"They can get their link with /meet join {room_id}")
    return "\n".join(lines)


def error(err: ConclaveError) -> str:
    return str(err)


INTERNAL_ERROR = "Sorry, something went wrong on our side; the problem has been logged."
