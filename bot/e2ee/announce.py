"""The key announcement: one statement, signed by a participant's Ed25519 key, that binds its
X25519 key to the room, its participant id and its sender index.

    statement = LABEL
                || len(room_id) (1) || room_id (ASCII)
                || len(participant_id) (1) || participant_id (ASCII)
                || sender_index (2, big-endian)
                || x25519_public (32) || ed25519_public (32)
    signature = Ed25519-Sign(ed25519_private, statement)

The server relays it and cannot forge it: an X25519 key that the roster's Ed25519 key did not
sign for that room, id and index is never used, so swapping one gets the server nothing it can
open, and swapping the Ed25519 key as well changes the security code. The index is signed too
so that the server cannot show one participant's frames (whose KIDs carry the index) as
another's without changing the code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from bot.e2ee.encoding import b64url_decode, b64url_encode
from bot.e2ee.errors import RosterError
from bot.e2ee.identity import MeetingKeys, PublicKeys
from bot.e2ee.kid import MAX_SENDER_INDEX

LABEL: Final = b"Conclave key announcement v2\x00"
SIGNATURE_SIZE: Final = 64


def _length_prefixed(text: str, what: str) -> bytes:
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        raise RosterError(f"{what} is not ASCII") from None
    if not 0 < len(raw) < 256:
        raise RosterError(f"{what} is not 1-255 characters")
    return bytes((len(raw),)) + raw


def statement(room_id: str, participant_id: str, sender_index: int, keys: PublicKeys) -> bytes:
    """The signed bytes; RosterError if an id or the index cannot be encoded."""
    if not 0 < sender_index <= MAX_SENDER_INDEX:
        raise RosterError("a sender index is 1-65535")
    return (
        LABEL
        + _length_prefixed(room_id, "the room id")
        + _length_prefixed(participant_id, "a participant id")
        + sender_index.to_bytes(2, "big")
        + keys.x25519
        + keys.ed25519
    )


@dataclass(frozen=True, slots=True)
class KeyAnnouncement:
    """Public keys with their signature, as announced in a ``keys`` message and in the roster."""

    keys: PublicKeys
    signature: bytes

    def to_json(self) -> dict[str, str]:
        return {**self.keys.to_json(), "signature": b64url_encode(self.signature)}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> KeyAnnouncement:
        keys = PublicKeys.from_json(data)
        signature = data.get("signature")
        if not isinstance(signature, str):
            raise RosterError("the key announcement has no signature")
        try:
            raw = b64url_decode(signature)
        except ValueError:
            raise RosterError("the signature must be base64url") from None
        if len(raw) != SIGNATURE_SIZE:
            raise RosterError("the signature is not 64 bytes")
        return cls(keys, raw)

    def verifies(self, room_id: str, participant_id: str, sender_index: int) -> bool:
        """Whether the announced Ed25519 key signed these keys for this room, id and index."""
        try:
            signed = statement(room_id, participant_id, sender_index, self.keys)
            Ed25519PublicKey.from_public_bytes(self.keys.ed25519).verify(self.signature, signed)
        except (InvalidSignature, RosterError, ValueError):
            return False
        return True


def announce(
    keys: MeetingKeys, room_id: str, participant_id: str, sender_index: int
) -> KeyAnnouncement:
    public = keys.public()
    return KeyAnnouncement(
        public, keys.sign(statement(room_id, participant_id, sender_index, public))
    )
