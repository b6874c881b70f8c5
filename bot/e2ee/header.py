"""The SFrame header of RFC 9605 section 4.3: a config byte, then KID and CTR as compact integers.

Config byte ``X KKK Y CCC``: a value below 8 sits in its 3 bits with the flag clear; otherwise
the flag is set, the 3 bits hold (length - 1) and the value follows in that many big-endian bytes
(KID first), using the minimum length. Decoding rejects non-minimal encodings, so a (KID, CTR)
pair has exactly one header.
"""

from __future__ import annotations

from typing import Final

from bot.e2ee.errors import SFrameError

MAX_U64: Final = (1 << 64) - 1


def _field(value: int) -> tuple[int, bytes]:
    """The 4 config bits and trailing bytes for one value."""
    if value < 8:
        return value, b""
    n = (value.bit_length() + 7) >> 3
    return 0x8 | (n - 1), value.to_bytes(n, "big")


def encode_header(kid: int, ctr: int) -> bytes:
    if not 0 <= kid <= MAX_U64:
        raise SFrameError(f"KID {kid} is outside 0..2^64-1")
    if not 0 <= ctr <= MAX_U64:
        raise SFrameError(f"CTR {ctr} is outside 0..2^64-1")
    kbits, kbytes = _field(kid)
    cbits, cbytes = _field(ctr)
    return bytes(((kbits << 4) | cbits,)) + kbytes + cbytes


def decode_header(frame: bytes) -> tuple[int, int, int]:
    """Return ``(kid, ctr, header_length)`` from the start of ``frame``."""
    if not frame:
        raise SFrameError("empty frame")
    config = frame[0]
    pos = 1
    kid = (config >> 4) & 0x7
    if config & 0x80:
        n = kid + 1
        end = pos + n
        if len(frame) < end:
            raise SFrameError("truncated KID")
        kid = int.from_bytes(frame[pos:end], "big")
        if kid < 8 or frame[pos] == 0:
            raise SFrameError("KID not minimally encoded")
        pos = end
    ctr = config & 0x7
    if config & 0x08:
        n = ctr + 1
        end = pos + n
        if len(frame) < end:
            raise SFrameError("truncated CTR")
        ctr = int.from_bytes(frame[pos:end], "big")
        if ctr < 8 or frame[pos] == 0:
            raise SFrameError("CTR not minimally encoded")
        pos = end
    return kid, ctr, pos
