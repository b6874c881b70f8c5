from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.e2ee.errors import KeyExhausted
from bot.e2ee.kid import MAX_GENERATION, MAX_RATCHET_STEP, MAX_SENDER_INDEX, KeyId


def test_layout() -> None:
    assert KeyId(1, 0, 0).kid == 1
    assert KeyId(3, 0, 1).kid == 0x1_0003
    assert KeyId(3, 2, 1).kid == 0x0000_0200_0001_0003
    assert KeyId(MAX_SENDER_INDEX, MAX_GENERATION, MAX_RATCHET_STEP).kid == (1 << 64) - 1


@given(
    st.integers(1, MAX_SENDER_INDEX),
    st.integers(0, MAX_GENERATION),
    st.integers(0, MAX_RATCHET_STEP),
)
def test_round_trip(index: int, generation: int, step: int) -> None:
    key_id = KeyId(index, generation, step)
    assert KeyId.parse(key_id.kid) == key_id


def test_limits_raise_instead_of_wrapping() -> None:
    with pytest.raises(KeyExhausted):
        KeyId(MAX_SENDER_INDEX + 1, 0, 0)
    with pytest.raises(KeyExhausted):
        KeyId(0, 0, 0)
    with pytest.raises(KeyExhausted):
        KeyId(1, 0, MAX_RATCHET_STEP).next_step()
    with pytest.raises(KeyExhausted):
        KeyId(1, MAX_GENERATION, 5).next_generation()
    assert KeyId(1, 4, 9).next_generation() == KeyId(1, 5, 0)


def test_parse_rejects_kids_outside_the_layout() -> None:
    assert KeyId.parse(0) is None
    assert KeyId.parse(1 << 16) is None  # sender index 0
    assert KeyId.parse(1 << 64) is None
