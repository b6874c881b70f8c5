"""Key transport: one sender key to one recipient, HPKE-encrypted and Ed25519-signed.

HPKE is RFC 9180 base mode with DHKEM(X25519, HKDF-SHA256), HKDF-SHA256 and AES-128-GCM, built
only from X25519, HKDF and AES-GCM so a browser can do the same with WebCrypto. The message
layout (big-endian; ``docs/PROTOCOL.md`` has it with vectors):

    magic        4   "CKT" 0x02
    room_id      1+n length-prefixed ASCII
    sender_id    1+n length-prefixed ASCII
    recipient_id 1+n length-prefixed ASCII
    recipient_key 32 the recipient's X25519 public key the sender encrypted to
    suite        2   SFrame cipher suite of the key
    sender_index 2
    generation   4
    ratchet_step 4
    enc          32  HPKE encapsulated key
    ct_len       2
    ct           ct_len  HPKE ciphertext of the base key (with its 16-byte tag)
    signature    64  Ed25519 over SIGNATURE_LABEL || every byte above

HPKE info is INFO_LABEL || the fields from room_id to ratchet_step, so a ciphertext cannot be
moved to another room, sender, recipient, recipient key or key id; the HPKE AAD is empty (the
single-shot API of ``cryptography`` has none, and info already binds everything). The signature
proves the message comes from the holder of the sender's roster key, which HPKE alone cannot,
and that the sender encrypted to ``recipient_key``: a recipient that finds another key there
knows the sender was shown a key that is not its own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite

from bot.e2ee.encoding import b64url_decode, b64url_encode
from bot.e2ee.errors import KeyExhausted, KeyTransportError
from bot.e2ee.identity import PUBLIC_KEY_SIZE, MeetingKeys, PublicKeys, RosterEntry
from bot.e2ee.kid import KeyId
from bot.e2ee.secretkey import SecretKey
from bot.e2ee.senderkeys import SenderKey
from bot.e2ee.suites import CipherSuite, suite_params

MAGIC: Final = b"CKT\x02"
INFO_LABEL: Final = b"Conclave key transport v2"
SIGNATURE_LABEL: Final = b"Conclave key transport signature v2"
HPKE: Final = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_128_GCM)
ENC_SIZE: Final = 32
SIGNATURE_SIZE: Final = 64
MAX_MESSAGE_SIZE: Final = 2048


@dataclass(frozen=True, slots=True)
class Binding:
    """What a key message is about; encoded, it is both the HPKE info tail and signed."""

    room_id: str
    sender_id: str
    recipient_id: str
    recipient_key: bytes  # the X25519 public key the base key is encrypted to
    suite: CipherSuite
    key_id: KeyId

    def encode(self) -> bytes:
        out = bytearray()
        for text in (self.room_id, self.sender_id, self.recipient_id):
            raw = text.encode("ascii")
            if not 0 < len(raw) < 256:
                raise ValueError("ids are 1-255 ASCII characters")
            out += bytes((len(raw),)) + raw
        if len(self.recipient_key) != PUBLIC_KEY_SIZE:
            raise ValueError("the recipient key is 32 bytes")
        out += self.recipient_key
        out += int(self.suite).to_bytes(2, "big")
        out += self.key_id.sender_index.to_bytes(2, "big")
        out += self.key_id.generation.to_bytes(4, "big")
        out += self.key_id.ratchet_step.to_bytes(4, "big")
        return bytes(out)

    def hpke_info(self) -> bytes:
        return INFO_LABEL + self.encode()


def seal_sender_key(
    key: SenderKey,
    *,
    room_id: str,
    sender_id: str,
    sender_keys: MeetingKeys,
    recipient_id: str,
    recipient: PublicKeys,
) -> bytes:
    binding = Binding(room_id, sender_id, recipient_id, recipient.x25519, key.suite, key.id)
    hpke_ciphertext = HPKE.encrypt(
        key.base_key.reveal(),
        X25519PublicKey.from_public_bytes(recipient.x25519),
        binding.hpke_info(),
    )
    return assemble_message(binding, hpke_ciphertext, sender_keys)


def assemble_message(binding: Binding, hpke_ciphertext: bytes, sender_keys: MeetingKeys) -> bytes:
    """Lay out and sign a message around ``enc || ct`` from HPKE's single-shot seal."""
    enc, ct = hpke_ciphertext[:ENC_SIZE], hpke_ciphertext[ENC_SIZE:]
    body = MAGIC + binding.encode() + enc + len(ct).to_bytes(2, "big") + ct
    return body + sender_keys.sign(SIGNATURE_LABEL + body)


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    binding: Binding
    hpke_ciphertext: bytes  # enc || ct, as HPKE's single-shot open takes it
    signed: bytes  # everything before the signature
    signature: bytes


def parse_message(message: bytes) -> ParsedMessage:
    """Structure only; nothing here is authentic yet."""
    if len(message) > MAX_MESSAGE_SIZE:
        raise KeyTransportError("message too large")
    if not message.startswith(MAGIC):
        raise KeyTransportError("not a key message of this version")
    pos = len(MAGIC)

    def take(n: int) -> bytes:
        nonlocal pos
        if n < 0 or pos + n > len(message):
            raise KeyTransportError("truncated message")
        chunk = message[pos : pos + n]
        pos += n
        return chunk

    try:
        ids = [take(take(1)[0]).decode("ascii") for _ in range(3)]
        recipient_key = take(PUBLIC_KEY_SIZE)
        suite = CipherSuite(int.from_bytes(take(2), "big"))
        key_id = KeyId(
            sender_index=int.from_bytes(take(2), "big"),
            generation=int.from_bytes(take(4), "big"),
            ratchet_step=int.from_bytes(take(4), "big"),
        )
        binding = Binding(ids[0], ids[1], ids[2], recipient_key, suite, key_id)
    except (UnicodeDecodeError, ValueError, KeyExhausted):
        raise KeyTransportError("malformed header") from None
    enc = take(ENC_SIZE)
    ct = take(int.from_bytes(take(2), "big"))
    signed_end = pos
    signature = take(SIGNATURE_SIZE)
    if pos != len(message):
        raise KeyTransportError("trailing bytes")
    if not all(ids):
        raise KeyTransportError("empty id")
    return ParsedMessage(binding, enc + ct, message[:signed_end], signature)


class KeyReceiver:
    """Opens key messages addressed to one client in one room, rejecting anything else."""

    def __init__(self, *, room_id: str, participant_id: str, keys: MeetingKeys) -> None:
        self._room_id = room_id
        self._participant_id = participant_id
        self._keys = keys
        self._own_key = keys.public().x25519
        self._seen: set[bytes] = set()
        self._held: dict[str, KeyId] = {}

    def open(self, message: bytes, roster: Mapping[str, RosterEntry]) -> SenderKey:
        parsed = parse_message(message)
        binding = parsed.binding
        if binding.room_id != self._room_id:
            raise KeyTransportError("message for another room")
        if binding.recipient_id != self._participant_id:
            raise KeyTransportError("message for another recipient")
        if binding.recipient_key != self._own_key:
            # Signed by the sender, this would mean the server showed the sender another key.
            raise KeyTransportError("encrypted to a key that is not this client's")
        sender = roster.get(binding.sender_id)
        if sender is None:
            raise KeyTransportError("sender not in the roster")
        if sender.sender_index != binding.key_id.sender_index:
            raise KeyTransportError("sender index does not match the roster")
        try:
            Ed25519PublicKey.from_public_bytes(sender.keys.ed25519).verify(
                parsed.signature, SIGNATURE_LABEL + parsed.signed
            )
        except InvalidSignature:
            raise KeyTransportError("bad signature") from None
        digest = hashlib.sha256(parsed.signed).digest()
        if digest in self._seen:
            raise KeyTransportError("replayed message")
        held = self._held.get(binding.sender_id)
        if held is not None and (binding.key_id.generation, binding.key_id.ratchet_step) < (
            held.generation,
            held.ratchet_step,
        ):
            raise KeyTransportError("key older than the one held")
        try:
            base_key = HPKE.decrypt(parsed.hpke_ciphertext, self._keys.x25519, binding.hpke_info())
        except (InvalidTag, ValueError):
            raise KeyTransportError("cannot be decrypted with this client's key") from None
        if len(base_key) != suite_params(binding.suite).nh:
            raise KeyTransportError("base key of the wrong length")
        self._seen.add(digest)
        self._held[binding.sender_id] = binding.key_id
        return SenderKey(binding.key_id, binding.suite, SecretKey(base_key))


def message_to_text(message: bytes) -> str:
    """The JSON-safe form carried in a signaling envelope: unpadded base64url."""
    return b64url_encode(message)


def message_from_text(text: str) -> bytes:
    try:
        return b64url_decode(text)
    except ValueError:
        raise KeyTransportError("not base64url") from None
