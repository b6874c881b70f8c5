"""Per-meeting key pairs of one client: X25519 to receive sender keys, Ed25519 to sign them.

Made fresh for each meeting, so nothing links a person's meetings, and raw 32-byte public keys,
which is what WebCrypto's "raw" export format gives for both algorithms.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import NoReturn

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bot.e2ee.encoding import b64url_decode, b64url_encode
from bot.e2ee.errors import RosterError
from bot.secret import REDACTED

PUBLIC_KEY_SIZE = 32


@dataclass(frozen=True, slots=True)
class PublicKeys:
    x25519: bytes
    ed25519: bytes

    def __post_init__(self) -> None:
        if len(self.x25519) != PUBLIC_KEY_SIZE or len(self.ed25519) != PUBLIC_KEY_SIZE:
            raise RosterError("public keys are 32 bytes each")

    def to_json(self) -> dict[str, str]:
        return {"x25519": b64url_encode(self.x25519), "ed25519": b64url_encode(self.ed25519)}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> PublicKeys:
        x, ed = data.get("x25519"), data.get("ed25519")
        if not isinstance(x, str) or not isinstance(ed, str):
            raise RosterError("public keys must be base64url strings")
        try:
            return cls(b64url_decode(x), b64url_decode(ed))
        except ValueError:
            raise RosterError("public keys must be base64url strings") from None


@dataclass(frozen=True, slots=True)
class RosterEntry:
    """A participant as the roster shows it: the server assigns the id and the sender index."""

    participant_id: str
    sender_index: int
    keys: PublicKeys


class MeetingKeys:
    """A client's private key pairs for one meeting."""

    __slots__ = ("_ed25519", "_x25519")

    def __init__(self, x25519: X25519PrivateKey, ed25519: Ed25519PrivateKey) -> None:
        self._x25519 = x25519
        self._ed25519 = ed25519

    @classmethod
    def generate(cls) -> MeetingKeys:
        return cls(X25519PrivateKey.generate(), Ed25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, x25519: bytes, ed25519: bytes) -> MeetingKeys:
        """Fixed keys, for test vectors."""
        return cls(
            X25519PrivateKey.from_private_bytes(x25519),
            Ed25519PrivateKey.from_private_bytes(ed25519),
        )

    @property
    def x25519(self) -> X25519PrivateKey:
        return self._x25519

    def public(self) -> PublicKeys:
        return PublicKeys(
            self._x25519.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw),
            self._ed25519.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw),
        )

    def sign(self, data: bytes) -> bytes:
        return self._ed25519.sign(data)

    def __repr__(self) -> str:
        return f"MeetingKeys('{REDACTED}')"

    def __reduce__(self) -> NoReturn:
        raise TypeError("private keys are not picklable")
