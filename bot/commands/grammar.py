"""Parse the text after ``/meet`` into a command.

    /meet [@user ...] [topic words] [lobby] [announce] [ttl=<duration>]   create a room
    /meet invite <room> @user ...      invite more people
    /meet lock|unlock|end <room>       host controls
    /meet join <room>                  a fresh link for yourself (when your DM did not arrive)
    /meet reissue <room> @user         remove whoever used @user's link; DM @user a new one
    /meet list                         rooms you host
    /meet help                         usage

``lobby``, ``announce`` and ``ttl=`` are options wherever they stand; every other word that is
not a mention is the topic.

Mentions are recognised in every platform's spelling: ``@ana`` (console), ``<@U123>`` and
``<@U123|ana>`` (Slack), ``<@123>`` and ``<@!123>`` (Discord).
"""

from __future__ import annotations

import difflib
import re
import shlex
from dataclasses import dataclass

from bot.core.links import is_id
from bot.durations import parse_duration
from bot.errors import CommandError

SUBCOMMANDS = ("invite", "lock", "unlock", "end", "join", "reissue", "list", "help")
_MENTION = re.compile(r"<@!?([A-Za-z0-9._-]{1,64})(?:\|([^>]{1,80}))?>|@([A-Za-z0-9._-]{1,64})")


@dataclass(frozen=True)
class Mention:
    user_id: str
    label: str | None  # the name as typed or as the platform spelled it, if it did


@dataclass(frozen=True)
class CreateRoom:
    invitees: tuple[Mention, ...]
    topic: str
    lobby: bool
    ttl: int | None
    announce: bool = False


@dataclass(frozen=True)
class InviteMore:
    room_id: str
    invitees: tuple[Mention, ...]


@dataclass(frozen=True)
class LockRoom:
    room_id: str


@dataclass(frozen=True)
class UnlockRoom:
    room_id: str


@dataclass(frozen=True)
class EndRoom:
    room_id: str


@dataclass(frozen=True)
class JoinRoom:
    room_id: str


@dataclass(frozen=True)
class ReissueLink:
    room_id: str
    invitee: Mention


@dataclass(frozen=True)
class ListRooms:
    pass


@dataclass(frozen=True)
class Help:
    pass


Command = (
    CreateRoom
    | InviteMore
    | LockRoom
    | UnlockRoom
    | EndRoom
    | JoinRoom
    | ReissueLink
    | ListRooms
    | Help
)


def parse_mention(token: str) -> Mention | None:
    match = _MENTION.fullmatch(token)
    if match is None:
        return None
    if match.group(3) is not None:
        return Mention(user_id=match.group(3), label=match.group(3))
    return Mention(user_id=match.group(1), label=match.group(2))


def _tokens(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError:
        # An unbalanced quote in a topic is not worth an error: fall back to plain words.
        return text.split()


def _mentions(tokens: list[str], *, allow_other: bool) -> tuple[tuple[Mention, ...], list[str]]:
    """The mentions among ``tokens``, each once, and the other words (if ``allow_other``).

    How many people one command may invite is the service's policy, not the grammar's.
    """
    mentions: list[Mention] = []
    other: list[str] = []
    for token in tokens:
        mention = parse_mention(token)
        if mention is not None:
            if any(m.user_id == mention.user_id for m in mentions):
                raise CommandError(f"{token} is mentioned more than once.")
            mentions.append(mention)
        elif token.startswith(("@", "<@")):
            raise CommandError(f"{token!r} is not a mention I understand; mention people as @name.")
        elif allow_other:
            other.append(token)
        else:
            raise CommandError(f"Unexpected {token!r}: list only the people to invite, as @name.")
    return tuple(mentions), other


def _room_arg(verb: str, args: list[str]) -> str:
    if not args:
        raise CommandError(f"Which room? Use `/meet {verb} ROOM` (see `/meet list`).")
    if len(args) > 1:
        raise CommandError(f"`/meet {verb}` takes one room id, not {len(args)} words.")
    if not is_id(args[0]):
        raise CommandError(f"{args[0]!r} is not a room id (see `/meet list`).")
    return args[0]


def parse(text: str) -> Command:
    """Parse ``text`` (what follows ``/meet``); CommandError says what was wrong."""
    tokens = _tokens(text)
    if not tokens:
        raise CommandError("Say whom to meet, e.g. `/meet @ana @ben Weekly sync`, or `/meet help`.")
    if text.lstrip()[:1] in ("'", '"'):
        return _create(tokens)  # a quoted first word is a topic, never a verb
    verb, args = tokens[0].lower(), tokens[1:]
    if verb == "help":
        return Help()
    if verb == "list":
        if args:
            raise CommandError("`/meet list` takes no arguments.")
        return ListRooms()
    if verb == "join":
        return JoinRoom(_room_arg(verb, args))
    if verb in ("lock", "unlock", "end"):
        room_id = _room_arg(verb, args)
        if verb == "lock":
            return LockRoom(room_id)
        return UnlockRoom(room_id) if verb == "unlock" else EndRoom(room_id)
    if verb == "invite":
        if not args:
            raise CommandError("Use `/meet invite ROOM @user ...`.")
        room_id = _room_arg("invite", args[:1])
        invitees, _ = _mentions(args[1:], allow_other=False)
        if not invitees:
            raise CommandError("Say whom to invite: `/meet invite ROOM @user ...`.")
        return InviteMore(room_id, invitees)
    if verb == "reissue":
        usage = "Use `/meet reissue ROOM @user` (one person)."
        if not args:
            raise CommandError(usage)
        room_id = _room_arg("reissue", args[:1])
        people, _ = _mentions(args[1:], allow_other=False)
        if len(people) != 1:
            raise CommandError(usage)
        return ReissueLink(room_id, people[0])
    _refuse_unknown_verb(tokens)
    return _create(tokens)


def _refuse_unknown_verb(tokens: list[str]) -> None:
    """Without anyone mentioned, a lone word, or a first word one typo away from a subcommand
    (`/meet lokc ROOM`), is far more likely a mistyped command than a meeting topic."""
    first = tokens[0]
    if _is_option(first) or any(parse_mention(t) is not None for t in tokens):
        return
    near = difflib.get_close_matches(first.lower(), SUBCOMMANDS, n=1, cutoff=0.75)
    if len(tokens) > 1 and not near:
        return
    hint = f" Did you mean `/meet {near[0]}`?" if near else ""
    raise CommandError(
        f"Unknown command {first!r}.{hint} Mention people to meet (`/meet @ana Topic`), "
        'quote a topic that starts like a command (`/meet "Standup"`), or see `/meet help`.'
    )


def _is_option(token: str) -> bool:
    lowered = token.lower()
    return lowered in ("lobby", "announce") or lowered.startswith("ttl=")


def _create(tokens: list[str]) -> CreateRoom:
    lobby = False
    announce = False
    ttl: int | None = None
    rest: list[str] = []
    for token in tokens:
        lowered = token.lower()
        if lowered == "lobby":
            lobby = True
        elif lowered == "announce":
            announce = True
        elif lowered.startswith("ttl="):
            if ttl is not None:
                raise CommandError("Give ttl= only once.")
            try:
                ttl = parse_duration(token[4:])
            except ValueError as exc:
                raise CommandError(f"Bad ttl: {exc}.") from exc
        else:
            rest.append(token)
    invitees, topic_words = _mentions(rest, allow_other=True)
    return CreateRoom(
        invitees=invitees, topic=" ".join(topic_words), lobby=lobby, ttl=ttl, announce=announce
    )
