"""The AEADs behind the suites: AES-GCM as is, and RFC 9605 section 4.5.1's AES-CTR + HMAC
(encrypt-then-MAC, tag truncated to Nt) for the short-tag suites.

Both expose ``encrypt(nonce, plaintext, aad)`` and ``decrypt(nonce, ciphertext, aad)`` and raise
``InvalidTag`` on any authentication failure, like ``cryptography``'s ``AESGCM``.
"""

from __future__ import annotations

import hmac
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bot.e2ee.suites import SuiteParams

_ZERO_COUNTER = b"\x00\x00\x00\x00"


class Aead(Protocol):
    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes: ...

    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes: ...


class AesCtrHmac:
    __slots__ = ("_auth_key", "_enc_key", "_hash", "_nt")

    def __init__(self, params: SuiteParams, key: bytes) -> None:
        if len(key) != params.nk:
            raise ValueError("wrong AES-CTR-HMAC key length")
        self._enc_key = key[: params.nka]
        self._auth_key = key[params.nka :]
        self._hash = params.hash_name
        self._nt = params.nt

    def _tag(self, nonce: bytes, aad: bytes, ct: bytes) -> bytes:
        lengths = (
            len(aad).to_bytes(8, "big") + len(ct).to_bytes(8, "big") + self._nt.to_bytes(8, "big")
        )
        mac = hmac.new(self._auth_key, lengths + nonce, self._hash)
        mac.update(aad)
        mac.update(ct)
        return mac.digest()[: self._nt]

    def _ctr(self, nonce: bytes, data: bytes) -> bytes:
        ctx = Cipher(algorithms.AES(self._enc_key), modes.CTR(nonce + _ZERO_COUNTER)).encryptor()
        return ctx.update(data) + ctx.finalize()

    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes:
        aad = associated_data or b""
        ct = self._ctr(nonce, data)
        return ct + self._tag(nonce, aad, ct)

    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes:
        if len(data) < self._nt:
            raise InvalidTag
        aad = associated_data or b""
        split = len(data) - self._nt
        ct = bytes(data[:split])
        if not hmac.compare_digest(self._tag(nonce, aad, ct), bytes(data[split:])):
            raise InvalidTag
        return self._ctr(nonce, ct)


def make_aead(params: SuiteParams, key: bytes) -> Aead:
    if params.is_ctr_hmac:
        return AesCtrHmac(params, key)
    return AESGCM(key)
