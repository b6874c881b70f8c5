"""The security code: 30 digits that every client who saw the same roster shows identically.

    input  = LABEL || for each participant, sorted by the id's bytes:
                 len(id) (1 byte) || id (ASCII) || x25519_public (32) || ed25519_public (32)
    digest = SHA-256(input)
    group i (0..5) = int(digest[5i : 5i+5], big-endian) mod 100000, as 5 digits with zeros

rendered as the six groups separated by spaces. Both keys are covered: the X25519 key is the
one sender keys are encrypted to, so a server that shows anyone a different key of either kind
for someone (or an extra participant) changes the code on that client only, which people
notice when they read their codes to each other. 2^40 mod 10^5 leaves a bias below 10^-7 per
group.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Final

from bot.e2ee.errors import RosterError
from bot.e2ee.identity import PublicKeys

LABEL: Final = b"Conclave security code v2\x00"
GROUPS: Final = 6
GROUP_DIGITS: Final = 5


def security_code_input(roster: Iterable[tuple[str, PublicKeys]]) -> bytes:
    entries: dict[bytes, PublicKeys] = {}
    for participant_id, keys in roster:
        try:
            raw_id = participant_id.encode("ascii")
        except UnicodeEncodeError:
            raise RosterError("participant ids are ASCII") from None
        if not 0 < len(raw_id) < 256:
            raise RosterError("participant ids are 1-255 characters")
        if raw_id in entries:
            raise RosterError(f"participant {participant_id!r} appears twice")
        entries[raw_id] = keys
    out = bytearray(LABEL)
    for raw_id in sorted(entries):
        keys = entries[raw_id]
        out += bytes((len(raw_id),)) + raw_id + keys.x25519 + keys.ed25519
    return bytes(out)


def security_code(roster: Iterable[tuple[str, PublicKeys]]) -> str:
    digest = hashlib.sha256(security_code_input(roster)).digest()
    groups = (
        int.from_bytes(digest[5 * i : 5 * i + 5], "big") % 10**GROUP_DIGITS for i in range(GROUPS)
    )
    return " ".join(f"{g:0{GROUP_DIGITS}d}" for g in groups)
