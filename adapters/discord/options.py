"""Discord's structured slash-command options, written as the shared ``/meet`` grammar's text.

Free text is shell-quoted, so a topic or room id with spaces stays one word and can never be
read as an option. A bare word in ``invitees`` is made a mention (``@ana``) so that it is refused
by name when it is resolved, instead of silently joining the topic.
"""

from __future__ import annotations

import shlex

from bot.commands.grammar import parse_mention


def mentions(invitees: str) -> str:
    words = invitees.replace(",", " ").split()
    return " ".join(w if parse_mention(w) is not None else "@" + w.lstrip("@") for w in words)


def create(invitees: str, topic: str, lobby: bool, ttl: str, announce: bool) -> str:
    words = [mentions(invitees)]
    if lobby:
        words.append("lobby")
    if announce:
        words.append("announce")
    if ttl.strip():
        words.append("ttl=" + shlex.quote(ttl.strip()))
    if topic.strip():
        words.append(quoted(topic.strip()))
    return " ".join(w for w in words if w)


def quoted(text: str) -> str:
    """Always quoted, unlike shlex.quote: a quoted word is a topic, never a subcommand."""
    return "'" + text.replace("'", "'\"'\"'") + "'"


def invite(room: str, invitees: str) -> str:
    return on_room_for("invite", room, invitees)


def on_room_for(verb: str, room: str, people: str) -> str:
    return f"{on_room(verb, room)} {mentions(people)}"


def on_room(verb: str, room: str) -> str:
    return f"{verb} {shlex.quote(room.strip())}"
