"""Join links as people paste them: what parses, and what is refused with which reason."""

from __future__ import annotations

import pytest

from bot.core.links import parse_link
from bot.errors import BadInvite

KEY = "iabcdefghijk." + "a" * 43


def test_a_link_with_its_room_and_key_parses() -> None:
    link = parse_link(f"  <https://meet.example.com/base/j/Room_1#{KEY}>  ")
    assert (link.base_url, link.room_id, link.invite_id) == (
        "https://meet.example.com/base",
        "Room_1",
        "iabcdefghijk",
    )
    assert link.websocket_url == "wss://meet.example.com/base/ws"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (f"ftp://meet.example.com/j/Room#{KEY}", "not a Conclave join link"),
        (f"javascript://meet.example.com/j/Room#{KEY}", "not a Conclave join link"),
        (f"https:///j/Room#{KEY}", "not a Conclave join link"),
        (f"https://meet.example.com/x/Room#{KEY}", "no meeting room"),
        (f"https://meet.example.com/j/#{KEY}", "no meeting room"),
        (f"https://meet.example.com/j/Ro%20om#{KEY}", "no meeting room"),
        (f"https://meet.example.com/j/{'R' * 65}#{KEY}", "no meeting room"),
        ("https://meet.example.com/j/Room", "missing its invite key"),
    ],
)
def test_a_bad_link_says_what_is_wrong(text: str, reason: str) -> None:
    with pytest.raises(BadInvite, match=reason):
        parse_link(text)
