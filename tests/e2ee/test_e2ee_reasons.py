"""Every refusal in bot/e2ee says exactly why, in the sentence that logs and people see.

One case per place that refuses something: the input that reaches it, and the whole sentence
of the error it raises (its type, its wording, and the fields it carries). A refusal that
names the wrong reason sends whoever reads the log after the wrong cause.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from bot.e2ee import sframe
from bot.e2ee.aead import AesCtrHmac
from bot.e2ee.announce import KeyAnnouncement, announce, statement
from bot.e2ee.code import security_code
from bot.e2ee.encoding import b64url_decode, b64url_encode
from bot.e2ee.errors import (
    CounterExhausted,
    KeyConflict,
    KeyExhausted,
    KeysTampered,
    KeyTransportError,
    MediaFrameError,
    RosterError,
    SFrameError,
    StaleSenderKey,
)
from bot.e2ee.header import MAX_U64, decode_header, encode_header
from bot.e2ee.identity import MeetingKeys, PublicKeys, RosterEntry
from bot.e2ee.kid import KeyId
from bot.e2ee.media import Codec, protect, unprotect
from bot.e2ee.roster import KeyBook, ShownEntry
from bot.e2ee.secretkey import SecretKey
from bot.e2ee.senderkeys import SenderKey, SenderKeys, frame_key_id
from bot.e2ee.suites import CipherSuite, suite_params
from bot.e2ee.transport import (
    HPKE,
    MAGIC,
    Binding,
    KeyReceiver,
    assemble_message,
    message_from_text,
    parse_message,
    seal_sender_key,
)

ROOM = "room-1"
ANA, BEN, EVE = MeetingKeys.generate(), MeetingKeys.generate(), MeetingKeys.generate()
BEN_PUBLIC = BEN.public()
ROSTER = {
    "p-ana": RosterEntry("p-ana", 1, ANA.public()),
    "p-ben": RosterEntry("p-ben", 2, BEN.public()),
}
KEY = SenderKeys(1).current_key
GCM = CipherSuite.AES_128_GCM_SHA256_128

Case = tuple[Callable[[], object], type[Exception], str]


def frame_reason(reason: str) -> tuple[type[Exception], str]:
    return SFrameError, f"An encrypted media frame was rejected: {reason}."


def key_reason(reason: str) -> tuple[type[Exception], str]:
    return KeyTransportError, f"A media key message was rejected: {reason}."


def roster_reason(reason: str) -> tuple[type[Exception], str]:
    return RosterError, f"The meeting roster is not valid: {reason}."


def tampered(detail: str) -> tuple[type[Exception], str]:
    return KeysTampered, f"The server is tampering with the meeting's keys: {detail}. Leaving."


# --- key transport ------------------------------------------------------------------------


def seal(
    key: SenderKey = KEY,
    *,
    room: str = ROOM,
    to: str = "p-ben",
    to_keys: PublicKeys = BEN_PUBLIC,
    signer: MeetingKeys = ANA,
) -> bytes:
    return seal_sender_key(
        key, room_id=room, sender_id="p-ana", sender_keys=signer, recipient_id=to, recipient=to_keys
    )


def ben(room: str = ROOM) -> KeyReceiver:
    return KeyReceiver(room_id=room, participant_id="p-ben", keys=BEN)


def opened(
    message: Callable[[], bytes], roster: dict[str, RosterEntry] = ROSTER
) -> Callable[[], object]:
    """Ben opening a message; everything is built when the case runs, not at import."""
    return lambda: ben().open(message(), roster)


def twice() -> object:
    receiver, message = ben(), seal()
    return [receiver.open(message, ROSTER) for _ in range(2)]


def older_after_newer() -> object:
    receiver = ben()
    newer = SenderKey(KeyId(1, 1, 0), GCM, KEY.base_key)
    return [receiver.open(seal(k), ROSTER) for k in (newer, KEY)]


def signed(hpke_ciphertext: bytes) -> bytes:
    """A message Ana really signed, around whatever HPKE ciphertext."""
    return assemble_message(binding(), hpke_ciphertext, ANA)


def binding() -> Binding:
    return Binding(ROOM, "p-ana", "p-ben", BEN.public().x25519, GCM, KEY.id)


def sealed(plain: bytes) -> bytes:
    recipient = X25519PublicKey.from_public_bytes(BEN.public().x25519)
    return HPKE.encrypt(plain, recipient, binding().hpke_info())


def with_empty_id() -> bytes:
    ids = b"\x00" + b"\x01b" + b"\x01c"
    fields = bytes(32) + GCM.to_bytes(2, "big") + (1).to_bytes(2, "big") + bytes(8)
    return MAGIC + ids + fields + bytes(32) + (0).to_bytes(2, "big") + bytes(64)


TRANSPORT: dict[str, Case] = {
    "another room": (opened(lambda: seal(room="room-2")), *key_reason("message for another room")),
    "another recipient": (
        opened(lambda: seal(to="p-eve", to_keys=EVE.public())),
        *key_reason("message for another recipient"),
    ),
    "another key": (
        opened(lambda: seal(to_keys=EVE.public())),
        *key_reason("encrypted to a key that is not this client's"),
    ),
    "unknown sender": (opened(seal, {}), *key_reason("sender not in the roster")),
    "index": (
        opened(seal, {"p-ana": RosterEntry("p-ana", 5, ANA.public())}),
        *key_reason("sender index does not match the roster"),
    ),
    "signature": (opened(lambda: seal(signer=EVE)), *key_reason("bad signature")),
    "replay": (twice, *key_reason("replayed message")),
    "older": (older_after_newer, *key_reason("key older than the one held")),
    "hpke": (
        opened(lambda: signed(bytes(range(80)))),
        *key_reason("cannot be decrypted with this client's key"),
    ),
    "length": (
        opened(lambda: signed(sealed(b"short"))),
        *key_reason("base key of the wrong length"),
    ),
    "too large": (lambda: parse_message(bytes(2049)), *key_reason("message too large")),
    "2048 bytes": (lambda: parse_message(MAGIC + bytes(2044)), *key_reason("malformed header")),
    "version 1": (
        lambda: parse_message(b"CKT\x01" + seal()[4:]),
        *key_reason("not a key message of this version"),
    ),
    "truncated": (lambda: parse_message(MAGIC + b"\x05ab"), *key_reason("truncated message")),
    "trailing": (lambda: parse_message(seal() + b"\x00"), *key_reason("trailing bytes")),
    "empty id": (lambda: parse_message(with_empty_id()), *key_reason("empty id")),
    "text": (lambda: message_from_text("a b"), *key_reason("not base64url")),
    "binding id": (
        lambda: Binding(ROOM, "", "p-ben", bytes(32), GCM, KEY.id).encode(),
        ValueError,
        "ids are 1-255 ASCII characters",
    ),
    "binding key": (
        lambda: Binding(ROOM, "p-ana", "p-ben", bytes(31), GCM, KEY.id).encode(),
        ValueError,
        "the recipient key is 32 bytes",
    ),
}

# --- frames, headers, media ---------------------------------------------------------------


def sender_frame(key_id: KeyId) -> bytes:
    return sframe.encrypt(GCM, bytes(32), key_id.kid, 0, b"", b"frame")


def receiving(*, max_ratchet_gap: int = 256, step: int = 0) -> SenderKeys:
    """Ben, holding Ana's generation 0 key at ``step``."""
    keys = SenderKeys(2, max_ratchet_gap=max_ratchet_gap)
    key = KEY
    for _ in range(step):
        key = key.ratcheted()
    keys.add_peer_key(key, now=0.0)
    return keys


def decrypted(frame: bytes, **receiver: int) -> Callable[[], object]:
    return lambda: receiving(**receiver).decrypt(frame, b"", now=0.0)


def _tag_failure() -> object:
    receiver = sframe.SFrameContext()
    receiver.add_receive_key(0, SecretKey(bytes(32)))
    return receiver.decrypt(b"\x00" + bytes(20), b"")


def short_vp8() -> object:
    return protect(Codec.VP8, bytes(5), lambda md, pt: pt)


def context(*, send: int | None = None, retired: int | None = None) -> sframe.SFrameContext:
    ctx = sframe.SFrameContext()
    for kid in (k for k in (send, retired) if k is not None):
        ctx.add_send_key(kid, SecretKey(bytes(32)))
    if retired is not None:
        ctx.remove_key(retired)
    return ctx


def replayed() -> object:
    sender, receiver = context(send=1), sframe.SFrameContext()
    receiver.add_receive_key(1, SecretKey(bytes(32)))
    frame = sender.encrypt(1, b"", b"x")
    return [receiver.decrypt(frame, b"") for _ in range(2)]


def exhausted() -> object:
    ctx = context(send=1)
    ctx._send[1].next_ctr = MAX_U64 + 1  # reaching it takes 2^64 frames otherwise
    return ctx.encrypt(1, b"", b"")


FRAMES: dict[str, Case] = {
    "window": (
        lambda: sframe.SFrameContext(replay_window=10),
        ValueError,
        "the replay window must span at least 1024 counters",
    ),
    "kid bits": (
        lambda: context(send=MAX_U64 + 1),
        KeyConflict,
        f"Key {MAX_U64 + 1} cannot be installed: a KID is a 64-bit unsigned integer.",
    ),
    "kid taken": (
        lambda: context(send=3).add_receive_key(3, SecretKey(bytes(32))),
        KeyConflict,
        "Key 3 cannot be installed: the KID is already in use.",
    ),
    "kid retired": (
        lambda: context(retired=3).add_send_key(3, SecretKey(bytes(32))),
        KeyConflict,
        "Key 3 cannot be installed: the KID was used for sending before.",
    ),
    "context empty": (lambda: context().decrypt(b"", b""), *frame_reason("empty frame")),
    "no send key": (
        lambda: context().encrypt(5, b"", b""),
        *frame_reason("no send key for KID 5"),
    ),
    "counter": (
        exhausted,
        CounterExhausted,
        "An encrypted media frame was rejected: the frame counter of key 1 is used up; "
        "a new key is needed.",
    ),
    "context replay": (replayed, *frame_reason("replayed or too old counter")),
    "context tag": (
        _tag_failure,
        *frame_reason("authentication failed"),
    ),
    "empty": (lambda: decode_header(b""), *frame_reason("empty frame")),
    "kid cut": (lambda: decode_header(b"\x90\x01"), *frame_reason("truncated KID")),
    "kid long": (lambda: decode_header(b"\x80\x05"), *frame_reason("KID not minimally encoded")),
    "ctr cut": (lambda: decode_header(b"\x09\x01"), *frame_reason("truncated CTR")),
    "ctr long": (lambda: decode_header(b"\x08\x05"), *frame_reason("CTR not minimally encoded")),
    "kid range": (lambda: encode_header(-1, 0), *frame_reason("KID -1 is outside 0..2^64-1")),
    "ctr range": (
        lambda: encode_header(0, 2**64),
        *frame_reason(f"CTR {2**64} is outside 0..2^64-1"),
    ),
    "one-shot cut": (
        lambda: sframe.decrypt(GCM, bytes(32), bytes(16), b""),
        *frame_reason("truncated ciphertext"),
    ),
    "one-shot tag": (
        lambda: sframe.decrypt(GCM, bytes(32), bytes(17), b""),
        *frame_reason("authentication failed"),
    ),
    "suite": (lambda: suite_params(0x99), *frame_reason("cipher suite 0x0099 is not supported")),
    "vp8 prefix": (
        lambda: unprotect(Codec.VP8, bytes(10), lambda f, md: f),
        *frame_reason("vp8 frame shorter than its clear prefix"),
    ),
    "opus prefix": (
        lambda: unprotect(Codec.OPUS, b"", lambda f, md: f),
        *frame_reason("opus frame shorter than its clear prefix"),
    ),
    "short vp8": (
        short_vp8,
        MediaFrameError,
        "A vp8 frame of 5 bytes is shorter than its 10-byte clear prefix and was not sent.",
    ),
    "layout": (
        lambda: frame_key_id(encode_header(1 << 16, 0)),
        *frame_reason("KID outside Conclave's layout"),
    ),
    "no kid": (
        decrypted(sframe.encrypt(GCM, bytes(32), 1 << 16, 0, b"", b"frame")),
        *frame_reason("no key for KID 65536"),
    ),
    "unknown generation": (
        decrypted(sender_frame(KeyId(1, 5, 0))),
        *frame_reason("no key for generation 5 of that sender"),
    ),
    "superseded": (
        decrypted(sender_frame(KeyId(1, 0, 1)), step=2),
        *frame_reason("that key was superseded and deleted"),
    ),
    "too far": (
        decrypted(sender_frame(KeyId(1, 0, 4)), max_ratchet_gap=3),
        *frame_reason("ratchet step too far ahead"),
    ),
    "delays": (
        lambda: SenderKeys(1, activation_delay=-1.0),
        ValueError,
        "need 0 <= activation_delay <= grace_period",
    ),
    "own index": (
        lambda: SenderKeys(1).add_peer_key(KEY, now=0.0),
        KeyConflict,
        f"Key {KEY.kid} cannot be installed: it carries this client's own sender index.",
    ),
    "other suite": (
        lambda: SenderKeys(2, suite=CipherSuite.AES_256_GCM_SHA512_128).add_peer_key(KEY, 0.0),
        KeyConflict,
        f"Key {KEY.kid} cannot be installed: it is for cipher suite AES_128_GCM_SHA256_128.",
    ),
    "stale": (
        lambda: receiving(step=1).add_peer_key(KEY, now=0.0),
        StaleSenderKey,
        "A sender key for sender 1 is older than the one held.",
    ),
    "aead key": (
        lambda: AesCtrHmac(suite_params(CipherSuite.AES_128_CTR_HMAC_SHA256_80), bytes(5)),
        ValueError,
        "wrong AES-CTR-HMAC key length",
    ),
}

# --- ids, keys, rosters, encodings ----------------------------------------------------------

PUBLIC = ANA.public()
GOOD = b64url_encode(bytes(32))


def shown(pid: str, index: int, keys: MeetingKeys | None = None) -> ShownEntry:
    announced = None if keys is None else announce(keys, ROOM, pid, index).to_json()
    return ShownEntry(pid, index, pid, announced)


def viewed(*entries: ShownEntry) -> Callable[[], object]:
    return lambda: KeyBook(ROOM, "p-ana", 1, PUBLIC).view(entries)


ROSTERS: dict[str, Case] = {
    "index zero": (
        lambda: KeyId(0, 0, 0),
        KeyExhausted,
        "The meeting's sender index reached its limit of 65535; start a new meeting to continue.",
    ),
    "generation range": (
        lambda: KeyId(1, 2**24, 0),
        KeyExhausted,
        "The meeting's key generation reached its limit of 16777215; start a new meeting to "
        "continue.",
    ),
    "step range": (
        lambda: KeyId(1, 0, 2**24),
        KeyExhausted,
        "The meeting's ratchet step reached its limit of 16777215; start a new meeting to "
        "continue.",
    ),
    "key size": (lambda: PublicKeys(b"", b""), *roster_reason("public keys are 32 bytes each")),
    "no keys": (
        lambda: PublicKeys.from_json({}),
        *roster_reason("public keys must be base64url strings"),
    ),
    "one key": (
        lambda: PublicKeys.from_json({"x25519": GOOD, "ed25519": 5}),
        *roster_reason("public keys must be base64url strings"),
    ),
    "bad text": (
        lambda: PublicKeys.from_json({"x25519": "a b", "ed25519": GOOD}),
        *roster_reason("public keys must be base64url strings"),
    ),
    "pickle": (lambda: pickle.dumps(ANA), TypeError, "private keys are not picklable"),
    "code ascii": (
        lambda: security_code([("é", PUBLIC)]),
        *roster_reason("participant ids are ASCII"),
    ),
    "code empty": (
        lambda: security_code([("", PUBLIC)]),
        *roster_reason("participant ids are 1-255 characters"),
    ),
    "code twice": (
        lambda: security_code([("a", PUBLIC)] * 2),
        *roster_reason("participant 'a' appears twice"),
    ),
    "room ascii": (
        lambda: statement("é", "p", 1, PUBLIC),
        *roster_reason("the room id is not ASCII"),
    ),
    "pid ascii": (
        lambda: statement("r", "é", 1, PUBLIC),
        *roster_reason("a participant id is not ASCII"),
    ),
    "room empty": (
        lambda: statement("", "p", 1, PUBLIC),
        *roster_reason("the room id is not 1-255 characters"),
    ),
    "pid long": (
        lambda: statement("r", "p" * 256, 1, PUBLIC),
        *roster_reason("a participant id is not 1-255 characters"),
    ),
    "index range": (
        lambda: statement("r", "p", 0, PUBLIC),
        *roster_reason("a sender index is 1-65535"),
    ),
    "unsigned": (
        lambda: KeyAnnouncement.from_json(PUBLIC.to_json()),
        *roster_reason("the key announcement has no signature"),
    ),
    "signature text": (
        lambda: KeyAnnouncement.from_json({**PUBLIC.to_json(), "signature": "a b"}),
        *roster_reason("the signature must be base64url"),
    ),
    "signature size": (
        lambda: KeyAnnouncement.from_json({**PUBLIC.to_json(), "signature": "AAAA"}),
        *roster_reason("the signature is not 64 bytes"),
    ),
    "entry id": (
        lambda: ShownEntry.from_json({"participant_id": 5, "sender_index": 1}),
        *roster_reason("an entry lacks a participant id or a sender index"),
    ),
    "twice": (
        viewed(shown("p-ben", 2), shown("p-ben", 3)),
        *tampered("it showed one participant twice in the roster"),
    ),
    "one index": (
        viewed(shown("p-ben", 2), shown("p-cy", 2)),
        *tampered("it showed two participants with one sender index"),
    ),
    "own entry": (
        viewed(shown("p-ana", 1, EVE)),
        *tampered("it shows this device's own entry with keys that are not its own"),
    ),
    "b64 length": (lambda: b64url_decode("A"), ValueError, "not unpadded base64url"),
    "b64 alphabet": (lambda: b64url_decode("AA+/"), ValueError, "not unpadded base64url"),
    "b64 canonical": (lambda: b64url_decode("AB"), ValueError, "not canonical base64url"),
}

CASES = {**TRANSPORT, **FRAMES, **ROSTERS}
assert len(CASES) == len(TRANSPORT) + len(FRAMES) + len(ROSTERS), "a case name is used twice"


@pytest.mark.parametrize(("call", "kind", "sentence"), CASES.values(), ids=CASES.keys())
def test_each_refusal_says_exactly_why(
    call: Callable[[], object], kind: type[Exception], sentence: str
) -> None:
    with pytest.raises(kind) as info:
        call()
    assert type(info.value) is kind
    assert str(info.value) == sentence


@pytest.mark.parametrize(
    ("kind", "args", "fields"),
    [
        (SFrameError, ("a reason",), {"reason": "a reason", "code": "sframe_error"}),
        (
            CounterExhausted,
            (7,),
            {
                "kid": 7,
                "reason": "the frame counter of key 7 is used up; a new key is needed",
                "code": "counter_exhausted",
            },
        ),
        (KeyExhausted, ("ratchet step", 9), {"what": "ratchet step", "limit": 9}),
        (KeyConflict, (5, "why"), {"kid": 5, "code": "key_conflict"}),
        (StaleSenderKey, (3,), {"sender_index": 3, "code": "stale_sender_key"}),
        (MediaFrameError, ("vp8", 5, 10), {"codec": "vp8", "size": 5, "prefix": 10}),
        (KeyTransportError, ("a reason",), {"reason": "a reason", "code": "key_transport"}),
        (RosterError, ("a reason",), {"reason": "a reason", "code": "bad_roster"}),
        (KeysTampered, ("a detail",), {"detail": "a detail", "code": "keys_tampered"}),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else "",
)
def test_each_error_carries_its_fields(
    kind: type[Exception], args: tuple[Any, ...], fields: dict[str, Any]
) -> None:
    error = kind(*args)  # made here, not at import, so that what makes it is what is tested
    for name, value in fields.items():
        assert getattr(error, name) == value
