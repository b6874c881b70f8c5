"""Why the relay turns down a control request: each code is sent to the core in the ``result``
(docs/PROTOCOL.md, section 7); ``offers.MediaRefused`` is the one the client hears as is."""

from __future__ import annotations

from bot.errors import ConclaveError


class RelayError(ConclaveError):
    code = "relay_error"


class AlreadyJoined(RelayError):
    code = "already_joined"

    def __init__(self, room: str, participant: str) -> None:
        super().__init__(f"Participant {participant} is already in room {room} on this relay.")


class NotJoined(RelayError):
    code = "not_joined"

    def __init__(self, room: str, participant: str) -> None:
        super().__init__(f"Participant {participant} is not in room {room} on this relay.")


class BadSessionDescription(RelayError):
    code = "bad_sdp"


class StaleNegotiation(RelayError):
    code = "stale_negotiation"

    def __init__(self, negotiation: int) -> None:
        super().__init__(
            f"Negotiation {negotiation} is not awaiting an answer (it timed out or was replaced)."
        )
