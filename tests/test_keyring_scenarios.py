"""Real ``Keyring`` objects in an in-memory room: who can read whose frames through joins, leaves,
kicks and rejoins, with the rotation policy of ``Keyring`` itself deciding every key that moves.

The properties (docs/PROTOCOL.md, sender keys): a newcomer cannot read what was sent before it
came, and reads from the first frame after its key arrives; someone who left or was kicked
cannot read what is sent once the key that excludes it is in use (at most the activation delay
later, whoever joins meanwhile); a participant back after a lost connection sends under a fresh
key, which only those present get. And protocol version 2's rules: keys go only
to peers whose signed announcements verify, only over a complete roster, never again once the
server has shown tampered keys; a key message the server alters, replays or hands to someone
else opens for no one.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag

from bot.client.keyring import WAITING_PER_SENDER, WAITING_TOTAL, Keyring
from bot.e2ee.announce import announce
from bot.e2ee.encoding import b64url_decode, b64url_encode
from bot.e2ee.errors import KeysTampered
from bot.e2ee.identity import MeetingKeys
from bot.e2ee.media import Codec
from bot.e2ee.roster import RosterView
from bot.e2ee.senderkeys import frame_key_id
from bot.e2ee.transport import HPKE, message_from_text, parse_message
from tests.support.keyroom import FRAME, Room, Roster, Sent, frame, reads


def generation(sender: Keyring) -> int:
    """The key generation of the frames ``sender`` sends now."""
    return frame_key_id(frame(sender)[10:]).generation


def opens_for(keys: MeetingKeys, sent: Sent) -> bool:
    """Whether a holder of ``keys`` (the server, say) can open a key message's sender key."""
    parsed = parse_message(message_from_text(sent.payload))
    try:
        HPKE.decrypt(parsed.hpke_ciphertext, keys.x25519, parsed.binding.hpke_info())
    except (InvalidTag, ValueError):
        return False
    return True


def test_everyone_reads_everyone() -> None:
    room = Room()
    people = room.meeting("ana", "ben", "cy")
    for sender in people:
        data = [frame(sender) for _ in people]
        for reader, one in zip(people, data, strict=True):
            assert reads(reader, one) is (reader is not sender)


def test_a_newcomer_cannot_read_frames_sent_before_it_joined() -> None:
    room = Room()
    ana, ben = room.meeting("ana", "ben")
    before = {ana: frame(ana), ben: frame(ben)}
    cy = room.join("cy")
    # No time passes: a join's key is in use from the next frame, not after a delay.
    after = {ana: [frame(ana) for _ in range(2)], ben: [frame(ben) for _ in range(2)]}

    # Each old member sent the newcomer one key: its own, ratcheted one step.
    for member in (ana, ben):
        assert [s.to for s in room.sent_by(member)].count(cy.participant_id) == 1
        assert frame_key_id(after[member][0][10:]).ratchet_step == 1
    for member, other in ((ana, ben), (ben, ana)):
        assert reads(cy, after[member][0])
        assert reads(other, after[member][1])  # the old members follow the ratchet themselves
        assert not reads(cy, before[member])
        assert reads(other, before[member])  # still in flight, say: within the grace period


def test_a_join_while_a_kicks_key_is_pending_waits_for_the_kick_and_no_longer() -> None:
    """Kim is kicked; Dan joins half a delay later. Until the kick's deadline Ana keeps the key
    Ben is sure to hold (Dan reads none of it); from that deadline on, not one delay after
    Dan's join, she sends under the kick's key ratcheted for Dan: Ben and Dan read it, Kim,
    with every key message sent since the kick, does not."""
    room = Room(activation_delay=2.0)
    ana, ben, kim = room.meeting("ana", "ben", "kim")
    kicked_at = room.clock.now()
    room.leave(kim)
    room.clock.advance(1.0)
    dan = room.join("dan")
    waiting = frame(ana)
    assert generation(ana) == 0
    assert reads(ben, waiting) and reads(kim, waiting) and not reads(dan, waiting)
    room.clock.advance(1.0)  # the kick's deadline
    due = frame(ana)
    assert (frame_key_id(due[10:]).generation, frame_key_id(due[10:]).ratchet_step) == (1, 1)
    for s in room.sent:
        if s.at >= kicked_at:
            kim.on_key(s.sender, s.payload)
    assert reads(ben, due) and reads(dan, due)
    assert not reads(kim, due)


def test_a_leaver_cannot_read_frames_sent_once_the_new_key_is_in_use() -> None:
    room = Room()
    ana, ben, cy = room.meeting("ana", "ben", "cy")
    assert reads(ben, frame(ana))
    left_at = room.clock.now()
    room.leave(ben)
    # Each who stays drew a key of the next generation and sent it to the other one only.
    for member, other in ((ana, cy), (cy, ana)):
        assert [s.to for s in room.sent_by(member, since=left_at)] == [other.participant_id]
    room.settle()
    for sender, reader in ((ana, cy), (cy, ana)):
        assert generation(sender) == 1
        data = frame(sender)
        assert reads(reader, data)
        assert not reads(ben, data)


def test_a_kicked_participant_with_every_key_message_sent_since_reads_nothing_new() -> None:
    """The kicked client keeps its state and gets, from a server on its side, every key message
    routed after the kick: none is addressed to it, so none opens, and nothing it holds reads
    the frames sent once the new keys are in use."""
    room = Room()
    ana, ben, kim = room.meeting("ana", "ben", "kim")
    kicked_at = room.clock.now()
    room.leave(kim)
    room.settle()
    later = [frame(ana), frame(ben)]
    leaked = [s for s in room.sent if s.at >= kicked_at]
    assert leaked
    assert all(s.to != kim.participant_id for s in leaked)
    for s in leaked:
        kim.on_key(s.sender, s.payload)
    assert not any(reads(kim, data) for data in later)
    assert kim.sender_keys.held_kids().isdisjoint(frame_key_id(d[10:]).kid for d in later)


def test_the_key_that_excludes_a_leaver_is_in_use_within_the_activation_delay() -> None:
    room = Room(activation_delay=2.0)
    ana, ben = room.meeting("ana", "ben")
    room.leave(ben)
    room.clock.advance(1.0)
    assert generation(ana) == 0  # the new key has not reached everyone surely yet
    room.clock.advance(1.0)
    assert generation(ana) == 1
    assert not reads(ben, frame(ana))


def test_a_rejoiner_sends_under_a_fresh_key_that_those_present_get() -> None:
    room = Room()
    ana, ben, cy = room.meeting("ana", "ben", "cy")
    assert generation(ben) == 0
    room.leave(ben)  # the connection drops
    room.settle()
    back_at = room.clock.now()
    room.resume(ben)
    # Ben sent his new key to each who saw him go and come back, and they sent theirs to him.
    to = sorted(s.to for s in room.sent_by(ben, since=back_at))
    assert to == [ana.participant_id, cy.participant_id]
    room.settle()
    assert generation(ben) == 1
    for reader in (ana, cy):
        assert reads(reader, frame(ben))
        assert reads(ben, frame(reader))


def test_a_rejoiners_old_key_never_reaches_someone_who_joined_while_it_was_away() -> None:
    room = Room()
    _, ben = room.meeting("ana", "ben")
    old = frame(ben)
    room.leave(ben)
    cy = room.join("cy")
    room.settle()
    room.resume(ben)
    room.settle()
    assert reads(cy, frame(ben))
    assert not reads(cy, old)


def test_someone_kicked_while_a_rejoiner_was_away_cannot_read_the_rejoiner() -> None:
    """Kim holds Ben's key and keeps it (a hostile client that ignores rosters). Ben's connection
    drops, Kim is kicked meanwhile, Ben comes back: Ben never saw Kim leave, but he sends under
    a new key, which reaches only those present."""
    room = Room()
    ana, ben, kim = room.meeting("ana", "ben", "kim")
    assert reads(kim, frame(ben))
    room.deaf.add(kim.participant_id)
    room.leave(ben)
    room.leave(kim)
    room.settle()
    room.resume(ben)
    room.settle()
    data = frame(ben)
    assert reads(ana, data)
    assert not reads(kim, data)


def test_a_rejoiner_sends_nothing_under_its_old_key_even_at_once() -> None:
    """Kim was kicked 30 s before Ben's connection came back. Ben's very first frames after
    the rejoin, before any activation delay has passed, must already use a key Kim never got:
    Ana, who stayed, reads them once Ben's new key reaches her."""
    room = Room()
    ana, ben, kim = room.meeting("ana", "ben", "kim")
    room.deaf.add(kim.participant_id)
    room.leave(ben)
    room.leave(kim)
    room.clock.advance(30)
    room.resume(ben)
    data = frame(ben)  # no time has passed since the rejoin
    assert not reads(kim, data)
    assert reads(ana, data)


def test_keys_wait_for_a_complete_roster_and_then_go_out() -> None:
    """A newcomer that has not announced keys yet makes the roster incomplete: nobody sends
    anybody a key until it has, and then the newcomer still gets only ratcheted keys."""
    room = Room()
    ana, ben = room.meeting("ana", "ben")
    before = frame(ana)
    cy = room.join("cy", announce=False)
    since = room.clock.now()
    assert ana.code is None and cy.code is None
    room.leave(ben)  # a rotation while the roster is incomplete is owed, not lost
    assert room.sent_by(ana, since=since) == []
    room.announce(cy)
    assert ana.code is not None and ana.code == cy.code
    assert [s.to for s in room.sent_by(ana, since=since)] == [cy.participant_id]
    room.settle()
    data = frame(ana)
    assert reads(cy, data)
    assert not reads(ben, data)
    assert not reads(cy, before)


def test_an_x25519_key_swapped_in_one_roster_gets_the_server_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The server shows Ana its own X25519 key for Ben, under Ben's signature: the announcement
    does not verify, so Ana shows no code and seals nothing, to Ben or to anyone."""
    server = MeetingKeys.generate()
    swapped = b64url_encode(server.public().x25519)

    def lie(viewer: str, roster: Roster) -> Roster:
        if viewer != "p-ana":
            return roster
        return [
            {**e, "keys": {**e["keys"], "x25519": swapped}}
            if e["participant_id"] == "p-ben" and "keys" in e
            else e
            for e in roster
        ]

    room = Room(show=lie)
    ana, ben, cy = room.meeting("ana", "ben", "cy")
    assert ana.code is None
    assert ana.view.rejected == ("Ben (p-ben)",)
    warned = "the keys shown for Ben (p-ben) do not verify; they are not used"
    assert caplog.messages.count(warned) == 1  # once, not at every roster
    assert room.sent_by(ana) == []
    assert not any(opens_for(server, s) for s in room.sent)
    data = frame(ana)
    assert not reads(ben, data)
    assert not reads(cy, data)
    assert ben.code is not None and ben.code == cy.code


def test_a_ghost_the_server_shows_one_client_is_read_only_by_a_client_whose_code_differs() -> None:
    """The server signs keys of its own for a participant it invents, in Ana's roster only: Ana
    seals her key to it and the server reads her frames, but her code is not Ben's."""
    ghost_keys = MeetingKeys.generate()
    ghost_entry = {
        "participant_id": "p-ghost",
        "name": "Ghost",
        "sender_index": 99,
        "keys": announce(ghost_keys, "room-1", "p-ghost", 99).to_json(),
    }

    def lie(viewer: str, roster: Roster) -> Roster:
        return [*roster, ghost_entry] if viewer == "p-ana" else roster

    room = Room(show=lie)
    ana, ben = room.meeting("ana", "ben")
    to_ghost = [s for s in room.sent_by(ana) if s.to == "p-ghost"]
    assert to_ghost and all(opens_for(ghost_keys, s) for s in to_ghost)
    assert ana.code is not None and ben.code is not None
    assert ana.code != ben.code
    # Honest Ben sealed nothing the server can open.
    assert not any(opens_for(ghost_keys, s) for s in room.sent_by(ben))


def test_new_keys_for_a_peer_who_never_left_end_key_sending_for_good() -> None:
    """Mid-meeting the server shows Ana new keys for Ben (who never left) as Cy leaves: Ana's
    rotation for Cy's leave must not go to keys of the server's making, nor to anyone after."""
    server = MeetingKeys.generate()
    tampering = False

    def lie(viewer: str, roster: Roster) -> Roster:
        if not tampering or viewer != "p-ana":
            return roster
        fake = announce(server, "room-1", "p-ben", 2).to_json()
        return [{**e, "keys": fake} if e["participant_id"] == "p-ben" else e for e in roster]

    room = Room(show=lie)
    ana, ben, cy = room.meeting("ana", "ben", "cy")
    tampering = True
    since = room.clock.now()
    with pytest.raises(KeysTampered, match="p-ben"):
        room.leave(cy)
    assert ana.tampered is not None
    tampering = False
    with pytest.raises(KeysTampered):
        room.broadcast()
    dan = room.newcomer("dan")
    room.present[dan.participant_id] = dan
    room.announced.add(dan.participant_id)
    for ring in (ben, dan):
        room.roster_to(ring)
    assert room.sent_by(ana, since=since) == []
    assert not any(opens_for(server, s) for s in room.sent)


def test_a_key_message_altered_or_replayed_by_the_server_is_refused_never_fatal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The server flips one bit of each key Ana seals for Ben, then hands Ben Ana's earlier
    key again: Ben refuses both (the signature, the older generation) and carries on."""
    altering = False

    def alter(sent: Sent) -> Sent:
        if not altering or sent.to != "p-ben":
            return sent
        raw = bytearray(b64url_decode(sent.payload))
        raw[-80] ^= 1
        return replace(sent, payload=b64url_encode(bytes(raw)))

    room = Room(carry=alter)
    ana, ben, cy = room.meeting("ana", "ben", "cy")
    first = room.sent_by(ana)
    altering = True
    room.leave(cy)
    room.settle()
    data = frame(ana)
    assert not reads(ben, data)
    assert "rejected a key message from p-ana: key_transport" in caplog.messages
    caplog.clear()
    (earlier,) = [s for s in first if s.to == "p-ben"]
    ben.on_key(earlier.sender, earlier.payload)
    assert "rejected a key message from p-ana: key_transport" in caplog.messages
    assert not reads(ben, frame(ana))
    assert reads(ana, frame(ben))  # Ben's own key still went out; the meeting goes on


# --- the edges: defaults, counters, codecs, the waiting room for early key messages -----------


def test_a_fresh_keyring_shows_an_empty_pending_view_and_so_does_a_rejoined_one() -> None:
    room = Room()
    ana = room.newcomer("ana")
    empty = RosterView({}, (), (), None)
    assert ana.view == empty and ana.code is None
    room.meeting("ben")
    room.enter(ana)
    assert ana.code is not None
    ana.rejoin()
    assert ana.view == empty and ana.code is None


@pytest.mark.parametrize(
    "settings",
    [{"keyring_defaults": True}, {"activation_delay": 2.5, "grace_period": 25.0}],
    ids=["defaults", "given"],
)
def test_a_new_key_waits_the_delay_and_a_superseded_one_lives_the_grace_period(
    settings: dict[str, Any],
) -> None:
    room = Room(**settings)
    ana, ben, cy = room.meeting("ana", "ben", "cy")
    room.clock.advance(60)  # long after every key of the joins is in use
    old = [frame(ana) for _ in range(2)]
    left_at = room.clock.now()
    room.leave(cy)  # Ana draws a new key; Ben keeps her old one for frames still in flight
    room.clock.advance(room.activation_delay - 0.01)
    assert generation(ana) == 0
    room.clock.advance(0.01)
    assert generation(ana) == 1
    assert reads(ben, frame(ana))  # the new key superseded the old one at Ben's: grace starts
    room.clock.advance(left_at + room.grace_period - 0.01 - room.clock.now())
    ben.tick()
    assert reads(ben, old[0])
    room.clock.advance(0.02)
    ben.tick()
    assert not reads(ben, old[1])


def test_tick_starts_using_a_pending_key_without_a_frame_sent() -> None:
    room = Room()
    ana, ben = room.meeting("ana", "ben")
    room.leave(ben)
    room.settle()
    assert ana.sender_keys.current_key.id.generation == 0
    ana.tick()
    assert ana.sender_keys.current_key.id.generation == 1


def test_a_rejoiner_sends_a_new_generation_not_a_ratchet_of_one() -> None:
    room = Room()
    ana, ben = room.meeting("ana", "ben")
    room.leave(ben)
    room.resume(ben)
    room.settle()
    key_id = frame_key_id(frame(ben)[10:])
    assert (key_id.generation, key_id.ratchet_step) == (1, 0)
    assert reads(ana, frame(ben))


def test_a_leavers_frames_are_refused_at_once_and_counted() -> None:
    room = Room()
    ana, ben, cy = room.meeting("ana", "ben", "cy")
    assert reads(ana, frame(ben))
    room.leave(ben)
    room.leave(cy)
    assert ana.rotations == 2
    assert (ana.decrypted, ana.dropped) == (1, 0)
    for _ in range(3):
        assert not reads(ana, frame(ben))  # no grace for the keys of someone who left
    assert (ana.decrypted, ana.dropped, ana.misattributed) == (1, 3, 0)


def test_opus_frames_carry_no_clear_prefix_and_round_trip() -> None:
    room = Room()
    ana, ben = room.meeting("ana", "ben")
    sound = b"\x78" + bytes(range(40))
    sent = ana.protect(Codec.OPUS, sound)
    assert frame_key_id(sent).sender_index == 1  # the SFrame header comes first
    assert ben.unprotect(Codec.OPUS, sent) == sound
    sent = ana.protect(Codec.OPUS, sound)
    assert ben.unprotect(Codec.OPUS, sent, sender_index=1) == sound
    assert ben.decrypted == 2


def test_a_frame_shown_under_another_senders_track_is_refused_before_decryption() -> None:
    room = Room()
    ana, ben, cy = room.meeting("ana", "ben", "cy")
    index = ana.sender_keys.sender_index
    assert cy.unprotect(Codec.VP8, frame(ana), sender_index=index) == FRAME
    assert cy.unprotect(Codec.VP8, frame(ana), sender_index=ben.sender_keys.sender_index) is None
    assert cy.unprotect(Codec.OPUS, ana.protect(Codec.OPUS, b"x" * 20), sender_index=2) is None
    assert (cy.decrypted, cy.misattributed, cy.dropped) == (1, 2, 0)
    assert cy.unprotect(Codec.VP8, b"\x01\x02\x03\x04", sender_index=index) is None
    assert (cy.misattributed, cy.dropped) == (2, 1)  # no header to read: only undecryptable


def test_opus_frames_shown_under_another_senders_track_are_all_refused() -> None:
    """Opus has no clear prefix: the KID is read from the first byte. Many frames, so that no
    reading of the wrong bytes can pass for a right one by chance."""
    room = Room()
    ana, ben, cy = room.meeting("ana", "ben", "cy")
    frames = [ana.protect(Codec.OPUS, bytes([n]) * 20) for n in range(32)]
    index = ben.sender_keys.sender_index
    assert all(cy.unprotect(Codec.OPUS, data, sender_index=index) is None for data in frames)
    assert (cy.misattributed, cy.decrypted, cy.dropped) == (32, 0, 0)


def cy_is_read_after(junk: int, senders: list[str]) -> bool:
    """Cy's key message reaches Ana before the roster that shows Cy's keys does (the hub's
    messages to different clients race), then ``junk`` key messages from ``senders`` in turn,
    then a roster that shows Cy without keys yet, then the one with Cy's keys. Whether Ana can
    read Cy then says whether Cy's message was kept until then."""
    room = Room()
    ana, _ = room.meeting("ana", "ben")
    cy = room.newcomer("cy")
    room.present[cy.participant_id] = cy
    room.announced.add(cy.participant_id)
    room.roster_to(cy)
    for n in range(junk):
        ana.on_key(senders[n % len(senders)], f"junk {n}")
    room.announced.discard(cy.participant_id)
    room.roster_to(ana)
    room.announced.add(cy.participant_id)
    room.broadcast()
    room.settle()
    return reads(ana, frame(cy))


def test_a_senders_oldest_waiting_message_goes_first_when_it_has_eight() -> None:
    assert cy_is_read_after(WAITING_PER_SENDER - 1, ["p-cy"])
    assert not cy_is_read_after(WAITING_PER_SENDER, ["p-cy"])


def test_the_oldest_waiting_message_of_all_goes_first_when_there_are_sixty_four() -> None:
    mute = [f"p-mute{n}" for n in range(WAITING_TOTAL // WAITING_PER_SENDER)]
    assert cy_is_read_after(WAITING_TOTAL - 1, mute)
    assert not cy_is_read_after(WAITING_TOTAL, mute)


def test_one_senders_flood_evicts_only_its_own_messages() -> None:
    assert cy_is_read_after(5 * WAITING_TOTAL, ["p-mute"])
