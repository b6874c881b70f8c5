"""The five SFrame cipher suites of RFC 9605 (section 4.5, table 1; numbers from section 8.1)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from bot.e2ee.errors import SFrameError


class CipherSuite(IntEnum):
    AES_128_CTR_HMAC_SHA256_80 = 0x0001
    AES_128_CTR_HMAC_SHA256_64 = 0x0002
    AES_128_CTR_HMAC_SHA256_32 = 0x0003
    AES_128_GCM_SHA256_128 = 0x0004
    AES_256_GCM_SHA512_128 = 0x0005


DEFAULT_SUITE: Final = CipherSuite.AES_128_GCM_SHA256_128


@dataclass(frozen=True, slots=True)
class SuiteParams:
    suite: CipherSuite
    hash_name: str  # hashlib name, used by HKDF and (CTR suites) HMAC
    nh: int  # hash output size
    nka: int  # AES key size inside the CTR+HMAC compound key; 0 for GCM
    nk: int  # AEAD key size
    nn: int  # nonce size
    nt: int  # tag size

    @property
    def is_ctr_hmac(self) -> bool:
        return self.nka != 0


_PARAMS: Final[dict[int, SuiteParams]] = {
    p.suite: p
    for p in (
        SuiteParams(CipherSuite.AES_128_CTR_HMAC_SHA256_80, "sha256", 32, 16, 48, 12, 10),
        SuiteParams(CipherSuite.AES_128_CTR_HMAC_SHA256_64, "sha256", 32, 16, 48, 12, 8),
        SuiteParams(CipherSuite.AES_128_CTR_HMAC_SHA256_32, "sha256", 32, 16, 48, 12, 4),
        SuiteParams(CipherSuite.AES_128_GCM_SHA256_128, "sha256", 32, 0, 16, 12, 16),
        SuiteParams(CipherSuite.AES_256_GCM_SHA512_128, "sha512", 64, 0, 32, 12, 16),
    )
}


def suite_params(suite: int) -> SuiteParams:
    try:
        return _PARAMS[suite]
    except KeyError:
        raise SFrameError(f"cipher suite {suite:#06x} is not supported") from None
