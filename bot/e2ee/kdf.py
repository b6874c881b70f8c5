"""HKDF (RFC 5869) and the SFrame key schedule: derive_key_salt (RFC 9605 section 4.4.2) and the
sender-key ratchet (section 5.1). Only HMAC is needed, which WebCrypto also offers."""

from __future__ import annotations

import hmac
from typing import Final

from bot.e2ee.suites import SuiteParams

KEY_LABEL: Final = b"SFrame 1.0 Secret key "
SALT_LABEL: Final = b"SFrame 1.0 Secret salt "
RATCHET_LABEL: Final = b"SFrame 1.0 Ratchet"


def hkdf_extract(hash_name: str, salt: bytes, ikm: bytes) -> bytes:
    return hmac.digest(salt, ikm, hash_name)


def hkdf_expand(hash_name: str, prk: bytes, info: bytes, length: int) -> bytes:
    out = b""
    block = b""
    counter = 1
    while len(out) < length:
        block = hmac.digest(prk, block + info + bytes((counter,)), hash_name)
        out += block
        counter += 1
    return out[:length]


def key_label(params: SuiteParams, kid: int) -> bytes:
    # KID as a fixed 8-byte integer here, not the compact header form.
    return KEY_LABEL + kid.to_bytes(8, "big") + int(params.suite).to_bytes(2, "big")


def salt_label(params: SuiteParams, kid: int) -> bytes:
    return SALT_LABEL + kid.to_bytes(8, "big") + int(params.suite).to_bytes(2, "big")


def derive_key_salt(params: SuiteParams, kid: int, base_key: bytes) -> tuple[bytes, bytes]:
    secret = hkdf_extract(params.hash_name, b"", base_key)
    key = hkdf_expand(params.hash_name, secret, key_label(params, kid), params.nk)
    salt = hkdf_expand(params.hash_name, secret, salt_label(params, kid), params.nn)
    return key, salt


def ratchet(params: SuiteParams, base_key: bytes) -> bytes:
    """base_key[i+1] from base_key[i]; one-way, so a holder of step i+1 cannot go back."""
    secret = hkdf_extract(params.hash_name, b"", base_key)
    return hkdf_expand(params.hash_name, secret, RATCHET_LABEL, params.nh)
