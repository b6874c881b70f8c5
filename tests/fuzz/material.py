"""Fixed keys and ids the fuzz targets and their seeds share, taken from the protocol's own
test vectors (tests/vectors), so a seed built from them is a message the real code accepts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Final

from bot.e2ee.identity import MeetingKeys, PublicKeys, RosterEntry
from bot.e2ee.kid import KeyId
from bot.e2ee.secretkey import SecretKey
from bot.e2ee.senderkeys import SenderKey
from bot.e2ee.suites import CipherSuite

VECTORS_DIR: Final = Path(__file__).resolve().parents[1] / "vectors"
# Seconds since the epoch that the time-bound targets (Slack, relay tickets) take as now.
NOW: Final = 1_800_000_000
SLACK_SIGNING_SECRET: Final = "fuzz-signing-secret"
RELAY_SECRET: Final = "fuzz-relay-secret"
WORKER_ID: Final = "worker-1"
# The nonce of the worker ticket the core ticket seeds answer.
WORKER_NONCE: Final = "00112233445566778899aabbccddeeff"


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS_DIR / name).read_text(encoding="utf-8"))
    return data


@cache
def protocol() -> dict[str, Any]:
    return _load("protocol_vectors.json")


@cache
def rfc9605() -> dict[str, Any]:
    return _load("rfc9605_appendix_c.json")


def h(value: str) -> bytes:
    return bytes.fromhex(value)


@dataclass(frozen=True)
class FrameKey:
    """A cipher suite, KID and base key under which some vector frame decrypts."""

    suite: int
    kid: int
    base_key: bytes


@cache
def frame_keys() -> tuple[FrameKey, ...]:
    """RFC 9605 Appendix C's five SFrame keys, then the protocol profile's."""
    keys = [
        FrameKey(int(v["cipher_suite"], 16), int(v["kid"], 16), h(v["base_key"]))
        for v in rfc9605()["sframe"]
    ]
    profile = protocol()["sframe_profile"]
    keys.append(FrameKey(int(profile["cipher_suite"], 16), int(profile["kid"], 16), profile_key()))
    return tuple(keys)


def profile_key() -> bytes:
    return h(protocol()["sframe_profile"]["base_key"])


@cache
def profile_sender_key() -> SenderKey:
    """The media-profile vector's sender key: sender 3, generation 2, ratchet step 1."""
    p = protocol()["sframe_profile"]
    key_id = KeyId(p["sender_index"], p["generation"], p["ratchet_step"])
    return SenderKey(key_id, CipherSuite(int(p["cipher_suite"], 16)), SecretKey(profile_key()))


@dataclass(frozen=True)
class Transport:
    """Both ends of the key-transport vector."""

    room_id: str
    sender_id: str
    recipient_id: str
    sender: MeetingKeys
    recipient: MeetingKeys
    message: bytes

    @property
    def roster(self) -> dict[str, RosterEntry]:
        v = protocol()["key_transport"]
        return {
            self.sender_id: RosterEntry(self.sender_id, v["sender_index"], self.sender.public())
        }


@cache
def transport() -> Transport:
    v = protocol()["key_transport"]
    return Transport(
        room_id=v["room_id"],
        sender_id=v["sender_id"],
        recipient_id=v["recipient_id"],
        sender=MeetingKeys.from_private_bytes(
            h(v["sender_x25519_private"]), h(v["sender_ed25519_private"])
        ),
        recipient=MeetingKeys.from_private_bytes(
            h(v["recipient_x25519_private"]), h(v["recipient_ed25519_private"])
        ),
        message=h(v["message"]),
    )


# The roster target's client: the key-transport recipient, with this sender index.
OWN_INDEX: Final = 5


def own_public() -> PublicKeys:
    return transport().recipient.public()
