"""A received track takes only its owner's frames (finding 5 of issue 9).

Real keyrings announce signed keys and exchange real sender keys (HPKE key transport); then
frames are fed to the received-track object exactly as aiortc's decoder thread feeds it. A frame
that Ana encrypted, on a track the relay says is Ben's, is refused before decryption and counted
apart from frames that merely fail to decrypt.
"""

from __future__ import annotations

from typing import Any

import pytest

from bot.client.keyring import Keyring
from bot.client.received import ReceivedTrack
from bot.e2ee.attribution import frame_sender_index
from bot.e2ee.media import Codec

ROOM = "room-attribution"
INDEX = {"ana": 1, "ben": 2, "hana": 3}
# A VP8 key frame (bit 0 of byte 0 clear: 10 bytes stay in clear) and an Opus frame.
FRAMES = {Codec.VP8: b"\x10\x02\x00\x9d\x01\x2a" + bytes(range(60)), Codec.OPUS: bytes(range(40))}

Roster = list[dict[str, Any]]


def pid(who: str) -> str:
    return f"p-{who}"


def entry(who: str, ring: Keyring, index: int | None = None) -> dict[str, Any]:
    return {
        "participant_id": pid(who),
        "sender_index": INDEX[who] if index is None else index,
        "name": who.capitalize(),
        "role": "guest",
        "keys": ring.announcement(),
    }


def deliver(rings: dict[str, Keyring], roster: Roster, to: str | None = None) -> None:
    """Everyone (or only ``to``) applies ``roster``; the key messages that causes are delivered."""
    for who, ring in rings.items():
        if to is None or who == to:
            for out in ring.on_roster(roster):
                rings[out.to.removeprefix("p-")].on_key(pid(who), out.payload)


def meeting() -> tuple[dict[str, Keyring], Roster]:
    """Ana, Ben and Hana, each holding the others' sender keys, and the roster they share."""
    rings = {who: Keyring(ROOM, pid(who), index) for who, index in INDEX.items()}
    roster = [entry(who, ring) for who, ring in rings.items()]
    deliver(rings, roster)
    return rings, roster


def shown_as(owner: str, ring: Keyring, roster: Roster, codec: Codec) -> ReceivedTrack:
    kind = "video" if codec is Codec.VP8 else "audio"
    return ReceivedTrack(f"{pid(owner)}-{kind}", codec, ring, lambda: roster)


def frame_of(ring: Keyring, codec: Codec = Codec.OPUS) -> bytes:
    return ring.protect(codec, FRAMES[codec])


@pytest.mark.parametrize("codec", [Codec.VP8, Codec.OPUS])
def test_a_frame_on_another_participants_track_is_refused_and_counted(codec: Codec) -> None:
    rings, roster = meeting()
    hana = rings["hana"]
    as_ben = shown_as("ben", hana, roster, codec)
    from_ana = [frame_of(rings["ana"], codec) for _ in range(5)]
    from_ben = [frame_of(rings["ben"], codec) for _ in range(3)]
    assert {frame_sender_index(codec, f) for f in from_ana} == {INDEX["ana"]}

    assert [as_ben.unprotect(f) for f in from_ana] == [None] * 5
    assert (hana.misattributed, hana.dropped, hana.decrypted) == (5, 0, 0)
    # Hana holds Ana's key: the same frames decrypt on the track that really is Ana's.
    as_ana = shown_as("ana", hana, roster, codec)
    assert [as_ana.unprotect(f) for f in from_ana] == [FRAMES[codec]] * 5
    assert [as_ben.unprotect(f) for f in from_ben] == [FRAMES[codec]] * 3
    assert (hana.misattributed, hana.dropped, hana.decrypted) == (5, 0, 8)
    assert (as_ben.name, as_ben.sender_index) == ("Ben", INDEX["ben"])


def test_a_line_named_again_is_bound_to_its_new_owner_alone() -> None:
    """The relay reuses a line whose track ended for someone else's (bot.relay.lines) and
    names the new owner in its offer: from then on the line takes the new owner's frames and
    refuses the old owner's, as it refused everyone else's before."""
    rings, roster = meeting()
    hana = rings["hana"]
    line = shown_as("ben", hana, roster, Codec.VP8)
    assert line.unprotect(frame_of(rings["ben"], Codec.VP8)) == FRAMES[Codec.VP8]
    line.rebind(f"{pid('ana')}-video")
    assert (line.owner, line.name, line.sender_index) == (pid("ana"), "Ana", None)
    assert line.unprotect(frame_of(rings["ben"], Codec.VP8)) is None
    assert line.unprotect(frame_of(rings["ana"], Codec.VP8)) == FRAMES[Codec.VP8]
    assert line.sender_index == INDEX["ana"]
    assert (hana.misattributed, hana.decrypted) == (1, 2)


def test_a_broken_frame_is_an_ordinary_failure_not_a_misattribution() -> None:
    rings, roster = meeting()
    hana = rings["hana"]
    frame = bytearray(frame_of(rings["ben"]))
    frame[-1] ^= 1
    as_ben = shown_as("ben", hana, roster, Codec.OPUS)
    assert as_ben.unprotect(bytes(frame)) is None
    assert as_ben.unprotect(b"\x80") is None  # a KID whose byte never arrives
    assert frame_sender_index(Codec.OPUS, b"\x80") is None
    assert (hana.misattributed, hana.dropped) == (0, 2)


def test_a_track_of_someone_unknown_or_of_oneself_takes_no_frame() -> None:
    rings, roster = meeting()
    hana = rings["hana"]
    for owner in ("mal", "hana"):  # never in the roster; this client itself
        track = shown_as(owner, hana, roster, Codec.OPUS)
        assert track.unprotect(frame_of(rings["ben"])) is None
    assert shown_as("mal", hana, roster, Codec.OPUS).name == "participant"
    assert (hana.misattributed, hana.decrypted) == (2, 0)


def test_a_track_is_bound_once_its_owner_is_verified() -> None:
    rings = {who: Keyring(ROOM, pid(who), index) for who, index in INDEX.items()}
    full = [entry(who, ring) for who, ring in rings.items()]
    without_ben = [e for e in full if e["participant_id"] != pid("ben")]
    deliver(rings, without_ben, to="hana")
    as_ben = shown_as("ben", rings["hana"], full, Codec.OPUS)
    assert as_ben.unprotect(frame_of(rings["ben"])) is None
    assert as_ben.sender_index is None and rings["hana"].misattributed == 1
    deliver(rings, full)  # Hana now verifies Ben's announcement and holds his key
    assert as_ben.unprotect(frame_of(rings["ben"])) == FRAMES[Codec.OPUS]
    assert as_ben.sender_index == INDEX["ben"]


def test_a_roster_index_that_the_owner_did_not_sign_binds_nothing() -> None:
    """A server that shows Ben with Ana's sender index (so that Ana's frames would pass on
    Ben's track) gets Ben's entry rejected: his announcement signs his own index."""
    rings = {who: Keyring(ROOM, pid(who), index) for who, index in INDEX.items()}
    honest = [entry(who, ring) for who, ring in rings.items()]
    deliver(rings, honest, to="ana")
    deliver(rings, honest, to="ben")
    # Ana is left out: two entries with one index would be tampering on its own (roster.py).
    lying = [entry("ben", rings["ben"], INDEX["ana"]), entry("hana", rings["hana"])]
    deliver(rings, lying, to="hana")
    as_ben = shown_as("ben", rings["hana"], lying, Codec.OPUS)
    assert as_ben.unprotect(frame_of(rings["ana"])) is None
    assert as_ben.sender_index is None
    assert rings["hana"].misattributed == 1 and rings["hana"].decrypted == 0
