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


def announced_keys(welcome: Mapping[str, Any], keys: MeetingKeys | None = None) -> dict[str, str]:
    """The fields of a ``keys`` message that the hub accepts from the connection ``welcome``
    was sent on: fresh key pairs (or ``keys``), signed for its room, id and index."""
    return announce(
        keys or MeetingKeys.generate(),
        str(welcome["room"]["id"]),
        str(welcome["participant_id"]),
        int(welcome["sender_index"]),
    ).to_json()
