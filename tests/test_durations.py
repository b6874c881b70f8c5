from __future__ import annotations

import pytest

from bot.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("45m", 2700), ("2h", 7200), ("1d", 86400), ("1h30m", 5400)],
)
def test_parse(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "2x", "1h1h", "-5m", "1.5h", "2 h"])
def test_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_format_round_trips() -> None:
    for seconds in (1, 59, 61, 3600, 5400, 86400 + 61):
        assert parse_duration(format_duration(seconds)) == seconds
