"""The security code: 30 digits that every client who saw the same roster shows identically.

    input  = LABEL || for each (participant_id, ed25519_public_key), sorted by the id's bytes:
                 len(id) (1 byte) || id (ASCII) || ed25519_public_key (32 bytes)
    digest = SHA-256(input)
    group i (0..5) = int(digest[5i : 5i+5], big-endian) mod 100000, as 5 digits with zeros

rendered as the six groups separated by spaces. A server that shows anyone a different key for
someone (or an extra participant) changes the code on that client only, which people notice
when they read their codes to each other. 2^40 mod 10^5 leaves a bias below 10^-7 per group.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Final

from bot.e2ee.errors import RosterError

LABEL: Final = b"Conclave security code v1\x00"
GROUPS: Final = 6
GROUP_DIGITS: Final = 5


def security_code_input(roster: Iterable[tuple[str, bytes]]) -> bytes:
    entries: dict[bytes, bytes] = {}
    for participant_id, ed25519_public in roster:
        try:
            raw_id = participant_id.encode("ascii")
        except UnicodeEncodeError:
            raise RosterError("participant ids are ASCII") from None
        if not 0 < len(raw_id) < 256:
            raise RosterError("participant ids are 1-255 characters")
        if len(ed25519_public) != 32:
            raise RosterError("Ed25519 public keys are 32 bytes")
        if raw_id in entries:
            raise RosterError(f"participant {participant_id!r} appears twice")
        entries[raw_id] = bytes(ed25519_public)
    out = bytearray(LABEL)
    for raw_id in sorted(entries):
        out += bytes((len(raw_id),)) + raw_id + entries[raw_id]
    return bytes(out)


def security_code(roster: Iterable[tuple[str, bytes]]) -> str:
    digest = hashlib.sha256(security_code_input(roster)).digest()
    groups = (
        int.from_bytes(digest[5 * i : 5 * i + 5], "big") % 10**GROUP_DIGITS for i in range(GROUPS)
    )
    return " ".join(f"{g:0{GROUP_DIGITS}d}" for g in groups)
