"""The `/meet` grammar, shared by every adapter."""

from __future__ import annotations

import pytest

from bot.commands.grammar import (
    CreateRoom,
    EndRoom,
    Help,
    InviteMore,
    JoinRoom,
    ListRooms,
    LockRoom,
    Mention,
    ReissueLink,
    UnlockRoom,
    parse,
    parse_mention,
)
from bot.errors import CommandError


def p(text: str) -> object:
    return parse(text)


def test_create_with_mentions_topic_and_options() -> None:
    assert p("@ana @ben Weekly sync lobby ttl=2h") == CreateRoom(
        invitees=(Mention("ana", "ana"), Mention("ben", "ben")),
        topic="Weekly sync",
        lobby=True,
        ttl=7200,
    )


def test_every_platform_mention_spelling() -> None:
    cmd = p("<@U123> <@U456|bea> <@!789> <@42> @cy Plan")
    assert isinstance(cmd, CreateRoom)
    assert cmd.invitees == (
        Mention("U123", None),
        Mention("U456", "bea"),
        Mention("789", None),
        Mention("42", None),
        Mention("cy", "cy"),
    )
    assert cmd.topic == "Plan"


def test_topic_only_and_quoted_topic() -> None:
    assert p('"Board review" @ana') == CreateRoom(
        (Mention("ana", "ana"),), "Board review", False, None
    )
    assert p("Just me") == CreateRoom((), "Just me", False, None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("help", Help()),
        ("HELP", Help()),
        ("list", ListRooms()),
        ("lock r00m_-id", LockRoom("r00m_-id")),
        ("unlock abc", UnlockRoom("abc")),
        ("end abc", EndRoom("abc")),
        ("invite abc @ana <@U1>", InviteMore("abc", (Mention("ana", "ana"), Mention("U1", None)))),
        ("reissue abc @ana", ReissueLink("abc", Mention("ana", "ana"))),
        ("Reissue abc <@U1|ana>", ReissueLink("abc", Mention("U1", "ana"))),
        ("reissue abc <@!42>", ReissueLink("abc", Mention("42", None))),
    ],
)
def test_subcommands(text: str, expected: object) -> None:
    assert p(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Say whom to meet"),
        ("   ", "Say whom to meet"),
        ("lock", "Which room"),
        ("end a b", "takes one room id"),
        ("end ../etc", "not a room id"),
        ("list now", "takes no arguments"),
        ("invite", "invite ROOM"),
        ("invite abc", "Say whom to invite"),
        ("invite abc @ana topic", "Unexpected 'topic'"),
        ("reissue", "reissue ROOM @user"),
        ("reissue abc", "reissue ROOM @user"),
        ("reissue @ana", "not a room id"),
        ("reissue abc @ana @ben", "one person"),
        ("reissue abc ana", "Unexpected 'ana'"),
        ("reisue abc", "Did you mean `/meet reissue`"),
        ("@ana @ana Sync", "more than once"),
        ("<@U1> <@U1|ann> Sync", "more than once"),
        ("@ Sync", "not a mention"),
        ("<@> Sync", "not a mention"),
        ("@ana ttl=soon", "Bad ttl"),
        ("@ana ttl=1h ttl=2h", "only once"),
    ],
)
def test_bad_commands_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        p(text)


def test_how_many_may_be_invited_is_not_the_grammars_to_say() -> None:
    # The cap is the service's policy (tests/test_invitee_checks.py); the grammar reads all.
    mentions = " ".join(f"@u{i}" for i in range(200))
    created = p(mentions)
    assert isinstance(created, CreateRoom) and len(created.invitees) == 200
    invited = p(f"invite room {mentions}")
    assert isinstance(invited, InviteMore) and len(invited.invitees) == 200


def test_unbalanced_quote_does_not_crash() -> None:
    cmd = p("@ana Bob's sync")
    assert isinstance(cmd, CreateRoom)
    assert cmd.topic == "Bob's sync"


def test_join_and_announce() -> None:
    assert p("join abc") == JoinRoom("abc")
    cmd = p("@ana Sync announce")
    assert isinstance(cmd, CreateRoom) and cmd.announce and cmd.topic == "Sync"
    with pytest.raises(CommandError, match="Which room"):
        p("join")


def test_a_lone_unknown_word_is_an_unknown_command() -> None:
    with pytest.raises(CommandError, match="Unknown command 'frobnicate'"):
        p("frobnicate")
    assert p('"Standup"') == CreateRoom((), "Standup", False, None)
    assert p("Weekly sync") == CreateRoom((), "Weekly sync", False, None)


def test_a_quoted_first_word_is_a_topic_not_a_subcommand() -> None:
    assert p('"list"') == CreateRoom((), "list", False, None)
    assert p("'help' @ana") == CreateRoom((Mention("ana", "ana"),), "help", False, None)
    assert p("list") == ListRooms()


def test_a_typo_of_a_subcommand_is_refused_with_a_suggestion() -> None:
    with pytest.raises(CommandError, match="Did you mean `/meet lock`"):
        p("lokc abc123")
    with pytest.raises(CommandError, match="Did you mean `/meet invite`"):
        p("invte abc123")
    # Topics that merely start like a command word still create rooms.
    assert p("Endgame review") == CreateRoom((), "Endgame review", False, None)
    assert p("lokc @ana") == CreateRoom((Mention("ana", "ana"),), "lokc", False, None)


@pytest.mark.parametrize("token", ["@ana\n", "<@U123>\n", "@ana@ben", "x@ana", "<@U1>>"])
def test_a_mention_is_the_whole_token(token: str) -> None:
    assert parse_mention(token) is None


def test_mentions_in_each_platforms_form() -> None:
    assert parse_mention("@ana") == Mention("ana", "ana")
    assert parse_mention("<@U123|ana>") == Mention("U123", "ana")
    assert parse_mention("<@!42>") == Mention("42", None)
