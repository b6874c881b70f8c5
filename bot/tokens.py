"""Random identifiers and one-time secrets, and the hashes that are all we store of them."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from bot.secret import Secret

ROOM_ID_BYTES = 16  # 128 bits: unguessable, 22 URL-safe characters
INVITE_ID_BYTES = 9  # not secret, only needs to be unique: 12 characters
PARTICIPANT_ID_BYTES = 9
SECRET_BYTES = 32  # 256 bits from the OS CSPRNG


def new_room_id() -> str:
    return secrets.token_urlsafe(ROOM_ID_BYTES)


def new_invite_id() -> str:
    return "i" + secrets.token_urlsafe(INVITE_ID_BYTES)


def new_participant_id() -> str:
    return "p" + secrets.token_urlsafe(PARTICIPANT_ID_BYTES)


def new_secret() -> Secret:
    return Secret(secrets.token_urlsafe(SECRET_BYTES))


def hash_secret(secret: Secret) -> bytes:
    # The secrets carry 256 bits of entropy, so a fast hash is enough: nobody can guess a
    # preimage, and a stolen database reveals nothing that redeems an invite.
    return hashlib.sha256(secret.reveal().encode("ascii")).digest()


def secret_matches(secret: Secret, stored_hash: bytes) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)
