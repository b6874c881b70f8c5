"""Key transport: a receiver accepts only authentic, fresh messages addressed to it in its room."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.e2ee.errors import KeyTransportError
from bot.e2ee.identity import MeetingKeys, PublicKeys, RosterEntry
from bot.e2ee.senderkeys import SenderKey, SenderKeys
from bot.e2ee.transport import (
    MAGIC,
    KeyReceiver,
    assemble_message,
    message_from_text,
    message_to_text,
    parse_message,
    seal_sender_key,
)

ROOM = "Yd3kQ9vX2mTq8LrPzW4sNa"
ANA_KEYS, BEN_KEYS, EVE_KEYS = (
    MeetingKeys.generate(),
    MeetingKeys.generate(),
    MeetingKeys.generate(),
)
BEN_PUBLIC = BEN_KEYS.public()
ROSTER = {
    "p_ana": RosterEntry("p_ana", 1, ANA_KEYS.public()),
    "p_ben": RosterEntry("p_ben", 2, BEN_KEYS.public()),
    "p_eve": RosterEntry("p_eve", 3, EVE_KEYS.public()),
}


def _seal(
    key: SenderKey,
    *,
    room: str = ROOM,
    sender: str = "p_ana",
    signer: MeetingKeys = ANA_KEYS,
    recipient: str = "p_ben",
    recipient_public: PublicKeys = BEN_PUBLIC,
) -> bytes:
    return seal_sender_key(
        key,
        room_id=room,
        sender_id=sender,
        sender_keys=signer,
        recipient_id=recipient,
        recipient=recipient_public,
    )


def _ben() -> KeyReceiver:
    return KeyReceiver(room_id=ROOM, participant_id="p_ben", keys=BEN_KEYS)


def test_round_trip_through_the_json_safe_form() -> None:
    ana = SenderKeys(1)
    text = message_to_text(_seal(ana.current_key))
    assert text.isascii() and "=" not in text
    assert _ben().open(message_from_text(text), ROSTER) == ana.current_key


def test_rejects_another_recipient() -> None:
    key = SenderKeys(1).current_key
    with pytest.raises(KeyTransportError, match="another recipient"):
        _ben().open(_seal(key, recipient="p_eve", recipient_public=EVE_KEYS.public()), ROSTER)
    # Addressed to ben by name but encrypted to another key, which the message names.
    with pytest.raises(KeyTransportError, match="not this client's"):
        _ben().open(_seal(key, recipient_public=EVE_KEYS.public()), ROSTER)


def test_the_recipient_key_is_bound_into_hpke_and_the_signature() -> None:
    key = SenderKeys(1).current_key
    to_eve = parse_message(_seal(key, recipient_public=EVE_KEYS.public()))
    # A server that rewrites the named key to ben's breaks the signature...
    relabelled = replace(to_eve.binding, recipient_key=BEN_PUBLIC.x25519)
    body = MAGIC + relabelled.encode() + to_eve.hpke_ciphertext[:32]
    ct = to_eve.hpke_ciphertext[32:]
    unsigned = body + len(ct).to_bytes(2, "big") + ct + to_eve.signature
    with pytest.raises(KeyTransportError, match="signature"):
        _ben().open(unsigned, ROSTER)
    # ...and re-signed by the sender it opens for nobody: the named key is in the HPKE info.
    resigned = assemble_message(relabelled, to_eve.hpke_ciphertext, ANA_KEYS)
    with pytest.raises(KeyTransportError, match="decrypted"):
        _ben().open(resigned, ROSTER)


def test_rejects_another_room() -> None:
    with pytest.raises(KeyTransportError, match="another room"):
        _ben().open(_seal(SenderKeys(1).current_key, room="x" * 22), ROSTER)


def test_rejects_a_bad_signature() -> None:
    key = SenderKeys(1).current_key
    with pytest.raises(KeyTransportError, match="signature"):
        _ben().open(_seal(key, signer=EVE_KEYS), ROSTER)  # eve signs as ana


def test_rejects_senders_not_in_the_roster_or_with_another_index() -> None:
    with pytest.raises(KeyTransportError, match="roster"):
        _ben().open(_seal(SenderKeys(9).current_key, sender="p_mallory"), ROSTER)
    with pytest.raises(KeyTransportError, match="index"):
        _ben().open(_seal(SenderKeys(3).current_key), ROSTER)  # ana claiming eve's index


def test_rejects_an_older_generation_and_replays() -> None:
    ana = SenderKeys(1)
    old = _seal(ana.current_key)
    new = _seal(ana.on_leave(now=0.0))
    ben = _ben()
    ben.open(new, ROSTER)
    with pytest.raises(KeyTransportError, match="older"):
        ben.open(old, ROSTER)
    with pytest.raises(KeyTransportError, match="replayed"):
        ben.open(new, ROSTER)
    # A fresh message carrying the same key (e.g. re-sent after a reconnect) is accepted.
    assert ben.open(_seal(ana.latest_key), ROSTER) == ana.latest_key


def test_tampering_any_byte_is_rejected() -> None:
    message = _seal(SenderKeys(1).current_key)
    for i in range(len(message)):
        bad = bytearray(message)
        bad[i] ^= 0x01
        with pytest.raises(KeyTransportError):
            _ben().open(bytes(bad), ROSTER)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_fuzzed_messages_raise_only_key_transport_error(data: bytes) -> None:
    with pytest.raises(KeyTransportError):
        _ben().open(MAGIC + data, ROSTER)
    with pytest.raises(KeyTransportError):
        _ben().open(data, ROSTER)


@pytest.mark.parametrize("text", ["", "a", "ab=", "a b", "ab+/", "\u00e9"])
def test_bad_text_forms(text: str) -> None:
    with pytest.raises(KeyTransportError):
        _ben().open(message_from_text(text), ROSTER)


def test_private_keys_do_not_leak_through_repr() -> None:
    assert repr(ANA_KEYS) == "MeetingKeys('**********')"


def test_version_one_messages_are_refused() -> None:
    message = _seal(SenderKeys(1).current_key)
    with pytest.raises(KeyTransportError, match="version"):
        _ben().open(b"CKT\x01" + message[4:], ROSTER)
