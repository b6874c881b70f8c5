"""Valid ``keys`` messages for tests that speak the signaling protocol by hand.

Since protocol version 2 the hub accepts public keys only with their key announcement's
signature (docs/PROTOCOL.md section 4.2), made for the connection's room, participant id and
sender index, all of which its ``welcome`` names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.e2ee.announce import announce
from bot.e2ee.identity import MeetingKeys


def announced_keys(
    welcome: Mapping[str, Any],
    keys: MeetingKeys | None = None,
    *,
    room: str = "",
    participant: str = "",
    index: int = 0,
) -> dict[str, str]:
    """The fields of a ``keys`` message that the hub accepts from the connection ``welcome``
    was sent on: fresh key pairs (or ``keys``), signed for its room, id and index (or, to
    show the hub refusing them, for the ``room``, ``participant`` or ``index`` given)."""
    return announce(
        keys or MeetingKeys.generate(),
        room or str(welcome["room"]["id"]),
        participant or str(welcome["participant_id"]),
        index or int(welcome["sender_index"]),
    ).to_json()
