"""RFC 9605 SFrame: ``header || AEAD(sframe_key, nonce, header || metadata, plaintext)``.

``encrypt``/``decrypt`` are the one-shot forms of the RFC (Appendix C is checked against them).
``SFrameContext`` is the form for real use: derived keys and AEAD objects cached per KID, a send
counter per key that never repeats, and an anti-replay window per receive key. Each KID is either
a send or a receive key, never both (RFC 9605 section 4.4.1), and a send KID is never reinstalled,
because its counter would restart and reuse nonces.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from cryptography.exceptions import InvalidTag

from bot.e2ee.aead import Aead, make_aead
from bot.e2ee.errors import CounterExhausted, KeyConflict, SFrameError
from bot.e2ee.header import MAX_U64, decode_header, encode_header
from bot.e2ee.kdf import derive_key_salt
from bot.e2ee.secretkey import SecretKey
from bot.e2ee.suites import DEFAULT_SUITE, SuiteParams, suite_params

__all__ = ["SFrameContext", "decrypt", "encrypt"]

_AUTH_FAILED: Final = "authentication failed"

# Receivers accept a counter once, and out of order as long as it is within this many counters
# of the highest one accepted; anything older is rejected (RFC 9605 section 9.3 leaves
# anti-replay to the application).
DEFAULT_WINDOW: Final = 1024


def _layout(config: int) -> tuple[int, int, int, int, int, int]:
    """How to read a header from its config byte, so the hot path does one table lookup.

    Returns ``(header_len, value_mask, kid_shift, ctr_mask, kid_inline, ctr_inline)``: with ``v``
    the header read as one big-endian integer and masked with ``value_mask`` (dropping the config
    byte), ``kid = kid_inline | v >> kid_shift`` and ``ctr = ctr_inline | v & ctr_mask``.
    """
    k, c = (config >> 4) & 0x7, config & 0x7
    klen = k + 1 if config & 0x80 else 0
    clen = c + 1 if config & 0x08 else 0
    return (
        1 + klen + clen,
        (1 << 8 * (klen + clen)) - 1,
        8 * clen,
        (1 << 8 * clen) - 1,
        0 if klen else k,
        0 if clen else c,
    )


_LAYOUTS: Final = tuple(_layout(config) for config in range(256))


def _nonce(salt: int, ctr: int, nn: int) -> bytes:
    return (salt ^ ctr).to_bytes(nn, "big")


def encrypt(
    suite: int, base_key: bytes, kid: int, ctr: int, metadata: bytes, plaintext: bytes
) -> bytes:
    """One SFrame ciphertext (header || ciphertext || tag) for an explicit KID and CTR."""
    params = suite_params(suite)
    header = encode_header(kid, ctr)
    key, salt = derive_key_salt(params, kid, base_key)
    nonce = _nonce(int.from_bytes(salt, "big"), ctr, params.nn)
    return header + make_aead(params, key).encrypt(nonce, plaintext, header + metadata)


def decrypt(suite: int, base_key: bytes, frame: bytes, metadata: bytes) -> bytes:
    """The plaintext of ``frame`` under ``base_key`` (bound to the KID in its header)."""
    params = suite_params(suite)
    kid, ctr, hlen = decode_header(frame)
    if len(frame) - hlen < params.nt:
        raise SFrameError("truncated ciphertext")
    key, salt = derive_key_salt(params, kid, base_key)
    nonce = _nonce(int.from_bytes(salt, "big"), ctr, params.nn)
    try:
        return make_aead(params, key).decrypt(nonce, frame[hlen:], frame[:hlen] + metadata)
    except (InvalidTag, ValueError):
        raise SFrameError(_AUTH_FAILED) from None


class _SendKey:
    __slots__ = ("aead", "long_prefixes", "next_ctr", "salt", "short_headers")

    def __init__(self, params: SuiteParams, kid: int, base_key: bytes) -> None:
        key, salt = derive_key_salt(params, kid, base_key)
        self.aead: Aead = make_aead(params, key)
        self.salt = int.from_bytes(salt, "big")
        self.next_ctr = 0
        # Only the CTR part of a header changes between frames of one key, so the rest is built
        # once: whole headers for CTR 0-7, and config byte + KID for each CTR length 1-8.
        self.short_headers = tuple(encode_header(kid, ctr) for ctr in range(8))
        self.long_prefixes = (
            b"",
            *(encode_header(kid, (1 << 8 * (n - 1)) | 8)[:-n] for n in range(1, 9)),
        )


# A receive key is a plain tuple ``(aead.decrypt, salt, ring)`` because unpacking a tuple is the
# cheapest way to fetch several values per frame. ``ring`` is the replay window: slot
# ``ctr % window`` holds the counter last accepted there, and the final element holds the highest
# counter accepted. Within the window two counters never share a slot, so "slot holds ctr" means
# "seen", and nothing has to shift as the window advances.
_ReceiveKey = tuple[Callable[[bytes, bytes, bytes], bytes], int, list[int]]


def _receive_key(params: SuiteParams, kid: int, base_key: bytes, window: int) -> _ReceiveKey:
    key, salt = derive_key_salt(params, kid, base_key)
    return make_aead(params, key).decrypt, int.from_bytes(salt, "big"), [-1] * (window + 1)


class SFrameContext:
    """Keys of one cipher suite, by KID, each marked for sending or for receiving."""

    __slots__ = ("_nn", "_params", "_receive", "_retired", "_send", "_window")

    def __init__(self, suite: int = DEFAULT_SUITE, *, replay_window: int = DEFAULT_WINDOW) -> None:
        if replay_window < DEFAULT_WINDOW:
            raise ValueError(f"the replay window must span at least {DEFAULT_WINDOW} counters")
        self._params = suite_params(suite)
        self._nn = self._params.nn
        self._window = replay_window
        self._send: dict[int, _SendKey] = {}
        self._receive: dict[int, _ReceiveKey] = {}
        self._retired: set[int] = set()

    def __repr__(self) -> str:
        return (
            f"SFrameContext(suite={self._params.suite.name}, send={sorted(self._send)}, "
            f"receive={sorted(self._receive)})"
        )

    @property
    def params(self) -> SuiteParams:
        return self._params

    def add_send_key(self, kid: int, base_key: SecretKey) -> None:
        self._check_new(kid)
        self._send[kid] = _SendKey(self._params, kid, base_key.reveal())

    def add_receive_key(self, kid: int, base_key: SecretKey) -> None:
        self._check_new(kid)
        self._receive[kid] = _receive_key(self._params, kid, base_key.reveal(), self._window)

    def _check_new(self, kid: int) -> None:
        if not 0 <= kid <= MAX_U64:
            raise KeyConflict(kid, "a KID is a 64-bit unsigned integer")
        if kid in self._send or kid in self._receive:
            raise KeyConflict(kid, "the KID is already in use")
        if kid in self._retired:
            raise KeyConflict(kid, "the KID was used for sending before")

    def remove_key(self, kid: int) -> None:
        """Forget a key. A removed send KID can never be added again."""
        if self._send.pop(kid, None) is not None:
            self._retired.add(kid)
        self._receive.pop(kid, None)

    def has_send_key(self, kid: int) -> bool:
        return kid in self._send

    def has_receive_key(self, kid: int) -> bool:
        return kid in self._receive

    def receive_kids(self) -> frozenset[int]:
        return frozenset(self._receive)

    def encrypt(self, kid: int, metadata: bytes, plaintext: bytes) -> bytes:
        key = self._send.get(kid)
        if key is None:
            raise SFrameError(f"no send key for KID {kid}")
        ctr = key.next_ctr
        if ctr > MAX_U64:
            raise CounterExhausted(kid)
        key.next_ctr = ctr + 1
        if ctr < 8:
            header = key.short_headers[ctr]
        else:
            n = (ctr.bit_length() + 7) >> 3
            header = key.long_prefixes[n] + ctr.to_bytes(n, "big")
        return header + key.aead.encrypt(
            (key.salt ^ ctr).to_bytes(self._nn, "big"), plaintext, header + metadata
        )

    def decrypt(self, frame: bytes, metadata: bytes) -> bytes:
        # This is header.decode_header and the replay window inlined, because it runs per frame and
        # Python overhead rivals AES-GCM on a 1,200-byte frame. It skips decode_header's checks
        # for truncation and minimal encoding on purpose: the header is the start of the AAD,
        # so a truncated or re-encoded header cannot authenticate and ends in SFrameError below.
        try:
            hlen, value_mask, kid_shift, ctr_mask, kid, ctr = _LAYOUTS[frame[0]]
        except IndexError:
            raise SFrameError("empty frame") from None
        header = frame[:hlen]
        if hlen > 1:
            value = int.from_bytes(header, "big") & value_mask
            kid |= value >> kid_shift
            ctr |= value & ctr_mask
        key = self._receive.get(kid)
        if key is None:
            raise SFrameError(f"no receive key for KID {kid}")
        open_, salt, slots = key
        window = self._window
        top = slots[window]
        slot = ctr % window
        if ctr <= top and (top - ctr >= window or slots[slot] == ctr):
            raise SFrameError("replayed or too old counter")
        try:
            plaintext = open_(
                (salt ^ ctr).to_bytes(self._nn, "big"), frame[hlen:], header + metadata
            )
        except (InvalidTag, ValueError):
            raise SFrameError(_AUTH_FAILED) from None
        slots[slot] = ctr
        if ctr > top:
            slots[window] = ctr
        return plaintext

    def decrypt_frame(self, frame: bytes, metadata: bytes) -> tuple[int, bytes]:
        """``(kid, plaintext)``; the KID is authentic once this returns."""
        plaintext = self.decrypt(frame, metadata)
        return decode_header(frame)[0], plaintext
