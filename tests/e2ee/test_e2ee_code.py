from __future__ import annotations

import re

import pytest

from bot.e2ee.code import security_code
from bot.e2ee.errors import RosterError
from bot.e2ee.identity import PublicKeys


def _keys(x: int, ed: int) -> PublicKeys:
    return PublicKeys(bytes([x]) * 32, bytes([ed]) * 32)


ANA = ("p_ana", _keys(1, 11))
BEN = ("p_ben", _keys(2, 12))
CY = ("p_cy", _keys(3, 13))


def test_format() -> None:
    assert re.fullmatch(r"\d{5}( \d{5}){5}", security_code([ANA, BEN]))


def test_same_roster_same_code_in_any_order() -> None:
    assert security_code([ANA, BEN, CY]) == security_code([CY, ANA, BEN])


def test_changes_with_membership_and_either_key() -> None:
    codes = {
        security_code([ANA, BEN]),
        security_code([ANA, BEN, CY]),
        security_code([ANA, CY]),
        security_code([ANA, ("p_bem", BEN[1])]),
        # The X25519 key alone: the one sender keys are encrypted to (issue 9, finding 1).
        security_code([ANA, ("p_ben", _keys(9, 12))]),
        security_code([ANA, ("p_ben", _keys(2, 19))]),
        # The two keys swapped is another roster too.
        security_code([ANA, ("p_ben", _keys(12, 2))]),
    }
    assert len(codes) == 7


@pytest.mark.parametrize(
    "roster",
    [[ANA, ANA], [("p_é", _keys(1, 1))], [("", _keys(1, 1))], [("p" * 256, _keys(1, 1))]],
)
def test_invalid_rosters(roster: list[tuple[str, PublicKeys]]) -> None:
    with pytest.raises(RosterError):
        security_code(roster)


def test_keys_of_the_wrong_length_cannot_enter_a_code() -> None:
    with pytest.raises(RosterError):
        PublicKeys(bytes(32), bytes(31))
