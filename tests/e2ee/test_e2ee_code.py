from __future__ import annotations

import re

import pytest

from bot.e2ee.code import security_code
from bot.e2ee.errors import RosterError

ANA = ("p_ana", bytes([1]) * 32)
BEN = ("p_ben", bytes([2]) * 32)
CY = ("p_cy", bytes([3]) * 32)


def test_format() -> None:
    assert re.fullmatch(r"\d{5}( \d{5}){5}", security_code([ANA, BEN]))


def test_same_roster_same_code_in_any_order() -> None:
    assert security_code([ANA, BEN, CY]) == security_code([CY, ANA, BEN])


def test_changes_with_membership_and_keys() -> None:
    codes = {
        security_code([ANA, BEN]),
        security_code([ANA, BEN, CY]),
        security_code([ANA, CY]),
        security_code([ANA, ("p_ben", bytes([9]) * 32)]),
        security_code([ANA, ("p_bem", BEN[1])]),
    }
    assert len(codes) == 5


@pytest.mark.parametrize(
    "roster",
    [[ANA, ANA], [("p_é", bytes(32))], [("", bytes(32))], [("p", bytes(31))]],
)
def test_invalid_rosters(roster: list[tuple[str, bytes]]) -> None:
    with pytest.raises(RosterError):
        security_code(roster)
