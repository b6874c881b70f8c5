"""docs/PROTOCOL.md's vectors: recomputed from their fixed inputs, checked against the code, and
required to appear verbatim in the document, so code, JSON and document cannot drift apart."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from bot.e2ee.announce import KeyAnnouncement
from bot.e2ee.code import security_code
from bot.e2ee.identity import MeetingKeys, PublicKeys, RosterEntry
from bot.e2ee.kid import KeyId
from bot.e2ee.media import Codec, unprotect
from bot.e2ee.secretkey import SecretKey
from bot.e2ee.senderkeys import SenderKey
from bot.e2ee.sframe import SFrameContext
from bot.e2ee.suites import CipherSuite
from bot.e2ee.transport import HPKE, KeyReceiver, message_from_text
from tests.e2ee.e2ee_vectors import ROOT, compute_vectors, hpke_seal_reference, load_vectors

VECTORS = load_vectors()
PROTOCOL = (ROOT / "docs" / "PROTOCOL.md").read_text()


def _leaves(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [leaf for key, v in value.items() if key != "about" for leaf in _leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaves(v)]
    return [str(value)] if isinstance(value, str) else []


def test_the_json_matches_the_code() -> None:
    assert compute_vectors() == VECTORS


def test_every_vector_value_is_in_the_document() -> None:
    missing = [leaf for leaf in _leaves(VECTORS) if leaf not in PROTOCOL]
    assert not missing


def test_the_document_covers_frames_keys_code_and_signaling() -> None:
    for heading in (
        "## 1. Frames",
        "### 3.1 KID layout",
        "## 4. Key transport",
        "### 4.2 Key announcement",
        "## 5. Security code",
        "## 6. Signaling",
    ):
        assert heading in PROTOCOL


def test_the_document_speaks_protocol_version_2() -> None:
    assert "protocol version 2" in PROTOCOL.split("## 1.")[0]
    assert '"CKT" 0x02' in PROTOCOL and '"CKT" 0x01' not in PROTOCOL


def test_frames_decrypt_with_the_documented_key() -> None:
    v = VECTORS["sframe_profile"]
    kid = KeyId(v["sender_index"], v["generation"], v["ratchet_step"]).kid
    assert f"0x{kid:016x}" == v["kid"]
    receiver = SFrameContext(int(v["cipher_suite"], 16))
    receiver.add_receive_key(kid, SecretKey(bytes.fromhex(v["base_key"])))
    for frame in v["frames"]:
        codec = Codec(frame["codec"])
        opened = unprotect(codec, bytes.fromhex(frame["protected"]), receiver.decrypt)
        assert opened.hex() == frame["frame"]


def test_the_key_transport_message_opens_with_production_hpke() -> None:
    v = VECTORS["key_transport"]
    recipient = MeetingKeys.from_private_bytes(
        bytes.fromhex(v["recipient_x25519_private"]), bytes.fromhex(v["recipient_ed25519_private"])
    )
    sender_public = MeetingKeys.from_private_bytes(
        bytes.fromhex(v["sender_x25519_private"]), bytes.fromhex(v["sender_ed25519_private"])
    ).public()
    receiver = KeyReceiver(room_id=v["room_id"], participant_id=v["recipient_id"], keys=recipient)
    roster = {v["sender_id"]: RosterEntry(v["sender_id"], v["sender_index"], sender_public)}
    key = receiver.open(message_from_text(v["message_text"]), roster)
    assert key == SenderKey(
        KeyId(v["sender_index"], v["generation"], v["ratchet_step"]),
        CipherSuite(int(v["cipher_suite"], 16)),
        SecretKey(bytes.fromhex(v["base_key"])),
    )


def test_the_hpke_reference_agrees_with_cryptography_on_random_keys() -> None:
    for _ in range(5):
        recipient = X25519PrivateKey.generate()
        public = recipient.public_key().public_bytes_raw()
        info, plaintext = os.urandom(40), os.urandom(32)
        sealed = hpke_seal_reference(public, os.urandom(32), info, plaintext)
        assert HPKE.decrypt(sealed["enc"] + sealed["ct"], recipient, info) == plaintext
        assert isinstance(X25519PublicKey.from_public_bytes(sealed["enc"]), X25519PublicKey)


def test_the_security_code_vector() -> None:
    v = VECTORS["security_code"]
    roster = [
        (
            e["participant_id"],
            PublicKeys(bytes.fromhex(e["x25519_public"]), bytes.fromhex(e["ed25519_public"])),
        )
        for e in v["roster"]
    ]
    assert security_code(roster) == v["code"]


def test_the_key_announcement_vector_verifies_and_only_for_its_participant() -> None:
    v = VECTORS["key_announcement"]
    announced = KeyAnnouncement.from_json(v["json"])
    assert announced.keys == PublicKeys(
        bytes.fromhex(v["x25519_public"]), bytes.fromhex(v["ed25519_public"])
    )
    assert announced.signature.hex() == v["signature"]
    assert announced.verifies(v["room_id"], v["participant_id"], v["sender_index"])
    assert not announced.verifies(v["room_id"], "p_ben4Kd9", v["sender_index"])
    # The signed bytes are exactly the documented statement.
    Ed25519PublicKey.from_public_bytes(announced.keys.ed25519).verify(
        announced.signature, bytes.fromhex(v["statement"])
    )


def test_vectors_path_is_inside_the_repo() -> None:
    assert Path(ROOT / "tests" / "vectors" / "protocol_vectors.json").is_file()
