"""The key announcement: an X25519 key counts only with the signature of the Ed25519 key next to
it, for one room, one participant id and one sender index."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bot.e2ee.announce import LABEL, KeyAnnouncement, announce, statement
from bot.e2ee.errors import RosterError
from bot.e2ee.identity import MeetingKeys, PublicKeys

ROOM = "Yd3kQ9vX2mTq8LrPzW4sNa"
ANA = MeetingKeys.generate()
SERVER = MeetingKeys.generate()


def _ana() -> KeyAnnouncement:
    return announce(ANA, ROOM, "p_ana", 3)


def test_a_fresh_announcement_verifies_for_its_room_id_and_index() -> None:
    announced = _ana()
    assert announced.keys == ANA.public()
    assert announced.verifies(ROOM, "p_ana", 3)


@pytest.mark.parametrize(
    ("room", "participant", "index"),
    [("another-room", "p_ana", 3), (ROOM, "p_ben", 3), (ROOM, "p_ana", 4)],
)
def test_it_does_not_verify_anywhere_else(room: str, participant: str, index: int) -> None:
    assert not _ana().verifies(room, participant, index)


def test_a_swapped_x25519_key_does_not_verify() -> None:
    announced = _ana()
    swapped = PublicKeys(SERVER.public().x25519, announced.keys.ed25519)
    assert not replace(announced, keys=swapped).verifies(ROOM, "p_ana", 3)


def test_a_swapped_ed25519_key_does_not_verify_with_the_old_signature() -> None:
    announced = _ana()
    swapped = PublicKeys(announced.keys.x25519, SERVER.public().ed25519)
    assert not replace(announced, keys=swapped).verifies(ROOM, "p_ana", 3)


def test_a_bad_signature_does_not_verify() -> None:
    announced = _ana()
    for i in (0, 31, 63):
        bad = bytearray(announced.signature)
        bad[i] ^= 0x01
        assert not replace(announced, signature=bytes(bad)).verifies(ROOM, "p_ana", 3)
    # Signed by someone else's key over the very same statement: still not ana's.
    forged = SERVER.sign(statement(ROOM, "p_ana", 3, ANA.public()))
    assert not replace(announced, signature=forged).verifies(ROOM, "p_ana", 3)


def test_a_server_can_only_announce_keys_of_its_own() -> None:
    # What a lying server can do: sign its own pair for ana's id. It verifies, and it carries the
    # server's Ed25519 key, which the security code covers.
    fake = announce(SERVER, ROOM, "p_ana", 3)
    assert fake.verifies(ROOM, "p_ana", 3)
    assert fake.keys.ed25519 != ANA.public().ed25519


def test_the_statement_layout() -> None:
    keys = ANA.public()
    data = statement(ROOM, "p_ana", 3, keys)
    assert data == (
        LABEL
        + bytes([len(ROOM)])
        + ROOM.encode()
        + b"\x05p_ana"
        + b"\x00\x03"
        + keys.x25519
        + keys.ed25519
    )


@pytest.mark.parametrize(
    ("room", "participant", "index"),
    [("", "p", 1), ("r", "p\u00e9", 1), ("r", "p" * 256, 1), ("r", "p", 0), ("r", "p", 65536)],
)
def test_unencodable_statements_are_refused(room: str, participant: str, index: int) -> None:
    with pytest.raises(RosterError):
        statement(room, participant, index, ANA.public())
    assert not _ana().verifies(room, participant, index)


def test_json_round_trip_and_malformed_forms() -> None:
    announced = _ana()
    data = announced.to_json()
    assert set(data) == {"x25519", "ed25519", "signature"}
    assert KeyAnnouncement.from_json(data) == announced
    for bad in (
        {k: v for k, v in data.items() if k != "signature"},
        {**data, "signature": data["signature"][:-2]},
        {**data, "signature": data["signature"] + "="},
        {**data, "signature": 7},
        {**data, "x25519": data["x25519"][:-1]},
    ):
        with pytest.raises(RosterError):
            KeyAnnouncement.from_json(bad)
