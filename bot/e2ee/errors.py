"""Errors raised by the end-to-end encryption package.

Receive paths raise exactly one type per layer (``SFrameError`` for frames,
``KeyTransportError`` for key messages) so callers can drop bad input with one ``except``.
"""

from __future__ import annotations

from bot.errors import ConclaveError


class E2EEError(ConclaveError):
    code = "e2ee_error"


class SFrameError(E2EEError):
    """A frame that cannot be encrypted or must not be decrypted; no plaintext escapes."""

    code = "sframe_error"

    def __init__(self, reason: str) -> None:
        super().__init__(f"An encrypted media frame was rejected: {reason}.")
        self.reason = reason


class CounterExhausted(SFrameError):
    code = "counter_exhausted"

    def __init__(self, kid: int) -> None:
        super().__init__(f"the frame counter of key {kid} is used up; a new key is needed")
        self.kid = kid


class KeyExhausted(E2EEError):
    """A key generation, ratchet step or sender index would leave the range the KID can carry."""

    code = "key_exhausted"

    def __init__(self, what: str, limit: int) -> None:
        super().__init__(
            f"The meeting's {what} reached its limit of {limit}; start a new meeting to continue."
        )
        self.what = what
        self.limit = limit


class KeyConflict(E2EEError):
    code = "key_conflict"

    def __init__(self, kid: int, why: str) -> None:
        super().__init__(f"Key {kid} cannot be installed: {why}.")
        self.kid = kid


class StaleSenderKey(E2EEError):
    code = "stale_sender_key"

    def __init__(self, sender_index: int) -> None:
        super().__init__(f"A sender key for sender {sender_index} is older than the one held.")
        self.sender_index = sender_index


class MediaFrameError(E2EEError):
    """An outgoing encoded frame too short to hold its codec's clear prefix; it is dropped."""

    code = "bad_media_frame"

    def __init__(self, codec: str, size: int, prefix: int) -> None:
        super().__init__(
            f"A {codec} frame of {size} bytes is shorter than its {prefix}-byte clear prefix "
            "and was not sent."
        )
        self.codec = codec
        self.size = size
        self.prefix = prefix


class KeyTransportError(E2EEError):
    """A key-transport message that must not be accepted (forged, misaddressed, stale, replayed)."""

    code = "key_transport"

    def __init__(self, reason: str) -> None:
        super().__init__(f"A media key message was rejected: {reason}.")
        self.reason = reason


class RosterError(E2EEError):
    code = "bad_roster"

    def __init__(self, reason: str) -> None:
        super().__init__(f"The meeting roster is not valid: {reason}.")
        self.reason = reason


class KeysTampered(E2EEError):
    """The roster shows keys that can only come from a lying server; the client must leave."""

    code = "keys_tampered"

    def __init__(self, detail: str) -> None:
        super().__init__(f"The server is tampering with the meeting's keys: {detail}. Leaving.")
        self.detail = detail
