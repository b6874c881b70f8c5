"""Builds the deterministic vectors of docs/PROTOCOL.md from fixed inputs.

Run ``python tests/e2ee/e2ee_vectors.py`` to rewrite tests/vectors/protocol_vectors.json; the
tests recompute everything and compare, so the code, the JSON and the document cannot drift.

HPKE's single-shot API draws its ephemeral key at random, so the key-transport vector is sealed
here with an RFC 9180 reference implementation and a fixed ephemeral key; the tests check that
``cryptography``'s HPKE (what production uses) opens it, which also cross-checks the reference.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bot.e2ee.announce import announce, statement  # noqa: E402
from bot.e2ee.code import security_code, security_code_input  # noqa: E402
from bot.e2ee.identity import MeetingKeys, PublicKeys  # noqa: E402
from bot.e2ee.kdf import derive_key_salt, hkdf_expand, hkdf_extract, ratchet  # noqa: E402
from bot.e2ee.kid import KeyId  # noqa: E402
from bot.e2ee.media import Codec, protect  # noqa: E402
from bot.e2ee.secretkey import SecretKey  # noqa: E402
from bot.e2ee.sframe import SFrameContext  # noqa: E402
from bot.e2ee.suites import CipherSuite, suite_params  # noqa: E402
from bot.e2ee.transport import Binding, assemble_message, message_to_text  # noqa: E402

VECTORS_PATH = ROOT / "tests" / "vectors" / "protocol_vectors.json"
SUITE = CipherSuite.AES_128_GCM_SHA256_128
ROOM_ID = "Yd3kQ9vX2mTq8LrPzW4sNa"


def _fixed(label: str, n: int = 32) -> bytes:
    """Fixed, documented key bytes: SHA-256 of a label, cut to n bytes."""
    return hashlib.sha256(label.encode()).digest()[:n]


# --- RFC 9180 base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM -------------------

KEM_ID, KDF_ID, AEAD_ID = 0x0020, 0x0001, 0x0001
KEM_SUITE_ID = b"KEM" + KEM_ID.to_bytes(2, "big")
HPKE_SUITE_ID = (
    b"HPKE" + KEM_ID.to_bytes(2, "big") + KDF_ID.to_bytes(2, "big") + AEAD_ID.to_bytes(2, "big")
)


def _labeled_extract(suite_id: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return hkdf_extract("sha256", salt, b"HPKE-v1" + suite_id + label + ikm)


def _labeled_expand(suite_id: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    labeled = length.to_bytes(2, "big") + b"HPKE-v1" + suite_id + label + info
    return hkdf_expand("sha256", prk, labeled, length)


def _raw(public: X25519PublicKey) -> bytes:
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def hpke_seal_reference(
    recipient_public: bytes, ephemeral: bytes, info: bytes, plaintext: bytes
) -> dict[str, bytes]:
    """SetupBaseS + Seal (aad empty, sequence 0) with a given ephemeral private key."""
    sk_e = X25519PrivateKey.from_private_bytes(ephemeral)
    enc = _raw(sk_e.public_key())
    dh = sk_e.exchange(X25519PublicKey.from_public_bytes(recipient_public))
    eae_prk = _labeled_extract(KEM_SUITE_ID, b"", b"eae_prk", dh)
    shared_secret = _labeled_expand(
        KEM_SUITE_ID, eae_prk, b"shared_secret", enc + recipient_public, 32
    )
    psk_id_hash = _labeled_extract(HPKE_SUITE_ID, b"", b"psk_id_hash", b"")
    info_hash = _labeled_extract(HPKE_SUITE_ID, b"", b"info_hash", info)
    context = b"\x00" + psk_id_hash + info_hash
    secret = _labeled_extract(HPKE_SUITE_ID, shared_secret, b"secret", b"")
    key = _labeled_expand(HPKE_SUITE_ID, secret, b"key", context, 16)
    base_nonce = _labeled_expand(HPKE_SUITE_ID, secret, b"base_nonce", context, 12)
    ct = AESGCM(key).encrypt(base_nonce, plaintext, b"")
    return {
        "enc": enc,
        "shared_secret": shared_secret,
        "key": key,
        "base_nonce": base_nonce,
        "ct": ct,
    }


# --- the vectors -----------------------------------------------------------------------------


def _kid_layout() -> list[dict[str, Any]]:
    cases = [(1, 0, 0), (3, 0, 0), (3, 0, 1), (3, 2, 1), (65535, 16777215, 16777215)]
    return [
        {
            "sender_index": i,
            "generation": g,
            "ratchet_step": r,
            "kid": f"0x{KeyId(i, g, r).kid:016x}",
        }
        for i, g, r in cases
    ]


def _frames() -> dict[str, Any]:
    base_key = _fixed("conclave vector: sender key")
    key_id = KeyId(sender_index=3, generation=2, ratchet_step=1)
    params = suite_params(SUITE)
    sframe_key, sframe_salt = derive_key_salt(params, key_id.kid, base_key)
    context = SFrameContext(SUITE)
    context.add_send_key(key_id.kid, SecretKey(base_key))
    inputs = [
        ("vp8 key frame", Codec.VP8, "5042009d012a8002e001" + b"key frame payload".hex()),
        ("vp8 delta frame", Codec.VP8, "310a00" + b"delta frame payload".hex()),
        ("opus frame", Codec.OPUS, "fcff" + b"opus payload".hex()),
    ]
    frames = []
    for ctr, (name, codec, frame_hex) in enumerate(inputs):
        frame = bytes.fromhex(frame_hex)
        protected = protect(codec, frame, lambda md, pt: context.encrypt(key_id.kid, md, pt))
        frames.append(
            {
                "name": name,
                "codec": codec.value,
                "ctr": ctr,
                "frame": frame_hex,
                "nonce": (int.from_bytes(sframe_salt, "big") ^ ctr).to_bytes(12, "big").hex(),
                "protected": protected.hex(),
            }
        )
    return {
        "cipher_suite": f"0x{SUITE:04x}",
        "sender_index": key_id.sender_index,
        "generation": key_id.generation,
        "ratchet_step": key_id.ratchet_step,
        "kid": f"0x{key_id.kid:016x}",
        "base_key": base_key.hex(),
        "sframe_key": sframe_key.hex(),
        "sframe_salt": sframe_salt.hex(),
        "frames": frames,
    }


def _ratchet() -> dict[str, Any]:
    params = suite_params(SUITE)
    steps = [_fixed("conclave vector: ratchet start")]
    for _ in range(2):
        steps.append(ratchet(params, steps[-1]))
    return {"cipher_suite": f"0x{SUITE:04x}", "steps": [s.hex() for s in steps]}


def _key_transport() -> dict[str, Any]:
    sender = _sender()
    recipient = MeetingKeys.from_private_bytes(
        _fixed("conclave vector: recipient x25519"), _fixed("conclave vector: recipient ed25519")
    )
    ephemeral = _fixed("conclave vector: hpke ephemeral")
    base_key = _fixed("conclave vector: sender key")
    binding = Binding(
        room_id=ROOM_ID,
        sender_id="p_ana7Qx2",
        recipient_id="p_ben4Kd9",
        recipient_key=recipient.public().x25519,
        suite=SUITE,
        key_id=KeyId(sender_index=3, generation=2, ratchet_step=1),
    )
    sealed = hpke_seal_reference(
        recipient.public().x25519, ephemeral, binding.hpke_info(), base_key
    )
    message = assemble_message(binding, sealed["enc"] + sealed["ct"], sender)
    signed_end = len(message) - 64
    return {
        "room_id": binding.room_id,
        "sender_id": binding.sender_id,
        "recipient_id": binding.recipient_id,
        "cipher_suite": f"0x{SUITE:04x}",
        "sender_index": binding.key_id.sender_index,
        "generation": binding.key_id.generation,
        "ratchet_step": binding.key_id.ratchet_step,
        "base_key": base_key.hex(),
        "sender_x25519_private": _fixed("conclave vector: sender x25519").hex(),
        "sender_ed25519_private": _fixed("conclave vector: sender ed25519").hex(),
        "sender_x25519_public": sender.public().x25519.hex(),
        "sender_ed25519_public": sender.public().ed25519.hex(),
        "recipient_x25519_private": _fixed("conclave vector: recipient x25519").hex(),
        "recipient_ed25519_private": _fixed("conclave vector: recipient ed25519").hex(),
        "recipient_x25519_public": recipient.public().x25519.hex(),
        "recipient_ed25519_public": recipient.public().ed25519.hex(),
        "ephemeral_x25519_private": ephemeral.hex(),
        "binding": binding.encode().hex(),
        "hpke_info": binding.hpke_info().hex(),
        "hpke_enc": sealed["enc"].hex(),
        "hpke_shared_secret": sealed["shared_secret"].hex(),
        "hpke_key": sealed["key"].hex(),
        "hpke_base_nonce": sealed["base_nonce"].hex(),
        "hpke_ct": sealed["ct"].hex(),
        "signature": message[signed_end:].hex(),
        "message": message.hex(),
        "message_text": message_to_text(message),
    }


def _sender() -> MeetingKeys:
    return MeetingKeys.from_private_bytes(
        _fixed("conclave vector: sender x25519"), _fixed("conclave vector: sender ed25519")
    )


def _key_announcement() -> dict[str, Any]:
    sender = _sender()
    participant_id, sender_index = "p_ana7Qx2", 3
    signed = statement(ROOM_ID, participant_id, sender_index, sender.public())
    announced = announce(sender, ROOM_ID, participant_id, sender_index)
    return {
        "room_id": ROOM_ID,
        "participant_id": participant_id,
        "sender_index": sender_index,
        "x25519_private": _fixed("conclave vector: sender x25519").hex(),
        "ed25519_private": _fixed("conclave vector: sender ed25519").hex(),
        "x25519_public": sender.public().x25519.hex(),
        "ed25519_public": sender.public().ed25519.hex(),
        "statement": signed.hex(),
        "signature": announced.signature.hex(),
        "json": announced.to_json(),
    }


def _security_code() -> dict[str, Any]:
    roster = [
        (
            pid,
            PublicKeys(
                _fixed(f"conclave vector: {who} x25519 public"),
                _fixed(f"conclave vector: {who} ed25519 public"),
            ),
        )
        for pid, who in (("p_ben4Kd9", "ben"), ("p_ana7Qx2", "ana"), ("p_cy1Lm0z", "cy"))
    ]
    data = security_code_input(roster)
    return {
        "roster": [
            {
                "participant_id": p,
                "x25519_public": k.x25519.hex(),
                "ed25519_public": k.ed25519.hex(),
            }
            for p, k in roster
        ],
        "input": data.hex(),
        "sha256": hashlib.sha256(data).hexdigest(),
        "code": security_code(roster),
    }


def compute_vectors() -> dict[str, Any]:
    return {
        "about": (
            "Conclave E2EE protocol vectors (protocol version 2), specified in docs/PROTOCOL.md "
            "and generated by tests/e2ee/e2ee_vectors.py. Byte strings are hex; fixed keys are "
            "SHA-256 of a label."
        ),
        "kid_layout": _kid_layout(),
        "sframe_profile": _frames(),
        "ratchet": _ratchet(),
        "key_announcement": _key_announcement(),
        "key_transport": _key_transport(),
        "security_code": _security_code(),
    }


def load_vectors() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(VECTORS_PATH.read_text())
    return data


if __name__ == "__main__":
    VECTORS_PATH.write_text(json.dumps(compute_vectors(), indent=1) + "\n")
    print(f"wrote {VECTORS_PATH}")
