"""Discord's slash-command options become the shared grammar's text, and parse as meant."""

from __future__ import annotations

from adapters.discord import options
from bot.commands import grammar


def parse(text: str) -> grammar.Command:
    return grammar.parse(text)


def test_create_keeps_topic_words_together_and_options_apart() -> None:
    text = options.create("<@1> <@!2>", "Plan the lobby launch", True, "2h", True)
    command = parse(text)
    assert command == grammar.CreateRoom(
        invitees=(grammar.Mention("1", None), grammar.Mention("2", None)),
        topic="Plan the lobby launch",
        lobby=True,
        ttl=7200,
        announce=True,
    )


def test_a_bare_word_among_invitees_stays_an_invitee() -> None:
    command = parse(options.create("ana, <@2>", "Sync", False, "", False))
    assert isinstance(command, grammar.CreateRoom)
    assert [m.user_id for m in command.invitees] == ["ana", "2"]  # refused when resolved
    assert command.topic == "Sync"


def test_room_ids_with_spaces_stay_one_word_and_are_refused() -> None:
    assert parse(options.on_room("end", "abc")) == grammar.EndRoom("abc")
    assert options.on_room("lock", "two words") == "lock 'two words'"
    assert parse(options.invite("abc", "<@3>")) == grammar.InviteMore(
        "abc", (grammar.Mention("3", None),)
    )


def test_a_one_word_topic_that_is_a_keyword_stays_the_topic() -> None:
    for word in ("list", "help", "Standup", "it's"):
        command = parse(options.create("", word, False, "", False))
        assert command == grammar.CreateRoom((), word, False, None), word
