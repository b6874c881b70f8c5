"""Conclave's SFrame KID layout: sender index, key generation and ratchet step in one 64-bit KID.

    bit 63            40 39            16 15             0
       +----------------+----------------+----------------+
       |   generation   |  ratchet step  |  sender index  |
       |    (24 bits)   |    (24 bits)   |    (16 bits)   |
       +----------------+----------------+----------------+

    KID = generation << 40 | ratchet_step << 16 | sender_index

This is RFC 9605 section 5.1's (generation, ratchet step) KID with the sender index added below,
so a receiver learns from the authenticated header alone which participant's key to use, without
trusting the relay's stream mapping. Unlike section 5.1 the whole ratchet step is carried, not
its low R bits, so a receiver never has to guess how far a sender ratcheted. The sender index is
lowest so the first key of a meeting (generation 0, step 0) has a 1-2 byte KID.

Limits: sender index 1..65535 (0 is never assigned), ratchet step and generation 0..16777215.
Nothing wraps: going past a limit raises KeyExhausted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from bot.e2ee.errors import KeyExhausted

INDEX_BITS: Final = 16
STEP_BITS: Final = 24
GENERATION_BITS: Final = 24

MAX_SENDER_INDEX: Final = (1 << INDEX_BITS) - 1
MAX_RATCHET_STEP: Final = (1 << STEP_BITS) - 1
MAX_GENERATION: Final = (1 << GENERATION_BITS) - 1

_STEP_SHIFT: Final = INDEX_BITS
_GENERATION_SHIFT: Final = INDEX_BITS + STEP_BITS


@dataclass(frozen=True, slots=True, order=True)
class KeyId:
    # Field order gives the ordering used to tell newer keys of one sender from older ones.
    sender_index: int
    generation: int
    ratchet_step: int

    def __post_init__(self) -> None:
        if not 1 <= self.sender_index <= MAX_SENDER_INDEX:
            raise KeyExhausted("sender index", MAX_SENDER_INDEX)
        if not 0 <= self.generation <= MAX_GENERATION:
            raise KeyExhausted("key generation", MAX_GENERATION)
        if not 0 <= self.ratchet_step <= MAX_RATCHET_STEP:
            raise KeyExhausted("ratchet step", MAX_RATCHET_STEP)

    @property
    def kid(self) -> int:
        return (
            self.generation << _GENERATION_SHIFT
            | self.ratchet_step << _STEP_SHIFT
            | self.sender_index
        )

    @classmethod
    def parse(cls, kid: int) -> KeyId | None:
        """The fields of ``kid``, or None if it is not a KID of this layout (e.g. index 0)."""
        index = kid & MAX_SENDER_INDEX
        if not 0 <= kid < 1 << 64 or index == 0:
            return None
        return cls(
            sender_index=index,
            generation=kid >> _GENERATION_SHIFT,
            ratchet_step=(kid >> _STEP_SHIFT) & MAX_RATCHET_STEP,
        )

    def next_step(self) -> KeyId:
        return KeyId(self.sender_index, self.generation, self.ratchet_step + 1)

    def next_generation(self) -> KeyId:
        return KeyId(self.sender_index, self.generation + 1, 0)
