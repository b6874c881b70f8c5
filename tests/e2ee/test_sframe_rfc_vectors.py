"""Every test vector of RFC 9605 Appendix C, kept as data in tests/vectors/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bot.e2ee import sframe
from bot.e2ee.aead import AesCtrHmac
from bot.e2ee.header import decode_header, encode_header
from bot.e2ee.kdf import derive_key_salt, hkdf_extract, key_label, salt_label
from bot.e2ee.secretkey import SecretKey
from bot.e2ee.sframe import SFrameContext
from bot.e2ee.suites import suite_params

VECTORS = json.loads(
    (Path(__file__).parents[1] / "vectors" / "rfc9605_appendix_c.json").read_text()
)


def _h(value: str) -> bytes:
    return bytes.fromhex(value)


def test_the_appendix_is_complete() -> None:
    assert len(VECTORS["header"]) == 17 * 17
    assert {v["cipher_suite"] for v in VECTORS["aes_ctr_hmac"]} == {"0x0001", "0x0002", "0x0003"}
    assert [v["cipher_suite"] for v in VECTORS["sframe"]] == [f"0x000{i}" for i in range(1, 6)]


@pytest.mark.parametrize("v", VECTORS["header"], ids=lambda v: f"{v['kid']}-{v['ctr']}")
def test_header_vectors(v: dict[str, str]) -> None:
    kid, ctr, header = int(v["kid"], 16), int(v["ctr"], 16), _h(v["header"])
    assert encode_header(kid, ctr) == header
    assert decode_header(header) == (kid, ctr, len(header))
    assert decode_header(header + b"trailing ciphertext") == (kid, ctr, len(header))


@pytest.mark.parametrize("v", VECTORS["aes_ctr_hmac"], ids=lambda v: v["cipher_suite"])
def test_aes_ctr_hmac_vectors(v: dict[str, str]) -> None:
    params = suite_params(int(v["cipher_suite"], 16))
    key = _h(v["key"])
    assert key[: params.nka] == _h(v["enc_key"])
    assert key[params.nka :] == _h(v["auth_key"])
    aead = AesCtrHmac(params, key)
    assert aead.encrypt(_h(v["nonce"]), _h(v["pt"]), _h(v["aad"])) == _h(v["ct"])
    assert aead.decrypt(_h(v["nonce"]), _h(v["ct"]), _h(v["aad"])) == _h(v["pt"])


@pytest.mark.parametrize("v", VECTORS["sframe"], ids=lambda v: v["cipher_suite"])
def test_sframe_vectors(v: dict[str, str]) -> None:
    suite, kid, ctr = int(v["cipher_suite"], 16), int(v["kid"], 16), int(v["ctr"], 16)
    params = suite_params(suite)
    base_key, metadata, pt, ct = _h(v["base_key"]), _h(v["metadata"]), _h(v["pt"]), _h(v["ct"])

    assert key_label(params, kid) == _h(v["sframe_key_label"])
    assert salt_label(params, kid) == _h(v["sframe_salt_label"])
    assert hkdf_extract(params.hash_name, b"", base_key) == _h(v["sframe_secret"])
    key, salt = derive_key_salt(params, kid, base_key)
    assert key == _h(v["sframe_key"])
    assert salt == _h(v["sframe_salt"])
    assert (int.from_bytes(salt, "big") ^ ctr).to_bytes(12, "big") == _h(v["nonce"])
    assert encode_header(kid, ctr) + metadata == _h(v["aad"])

    assert sframe.encrypt(suite, base_key, kid, ctr, metadata, pt) == ct
    assert sframe.decrypt(suite, base_key, ct, metadata) == pt

    receiver = SFrameContext(suite)
    receiver.add_receive_key(kid, SecretKey(base_key))
    assert receiver.decrypt_frame(ct, metadata) == (kid, pt)


@pytest.mark.parametrize("v", VECTORS["sframe"], ids=lambda v: v["cipher_suite"])
def test_context_reaches_the_vector_counter(v: dict[str, Any]) -> None:
    suite, kid, ctr = int(v["cipher_suite"], 16), int(v["kid"], 16), int(v["ctr"], 16)
    sender = SFrameContext(suite)
    sender.add_send_key(kid, SecretKey(_h(v["base_key"])))
    for _ in range(ctr):
        sender.encrypt(kid, b"", b"")
    assert sender.encrypt(kid, _h(v["metadata"]), _h(v["pt"])) == _h(v["ct"])
