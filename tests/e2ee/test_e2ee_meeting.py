"""A simulated meeting: clients, a server that routes roster and key messages, and a relay.

Covers the three properties the issue names: backward secrecy (a newcomer cannot read the past),
forward secrecy (a leaver cannot read the future), and a key-substituting server showing up in
the security codes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from bot.e2ee import sframe
from bot.e2ee.code import security_code
from bot.e2ee.errors import SFrameError
from bot.e2ee.identity import MeetingKeys, PublicKeys, RosterEntry
from bot.e2ee.kid import KeyId
from bot.e2ee.media import Codec, protect, unprotect
from bot.e2ee.senderkeys import SenderKey, SenderKeys, frame_key_id
from bot.e2ee.transport import KeyReceiver, seal_sender_key

ROOM = "Yd3kQ9vX2mTq8LrPzW4sNa"
VP8_FRAME = bytes.fromhex("5042009d012a8002e001") + b"picture"


@dataclass
class Client:
    participant_id: str
    sender_index: int
    keys: MeetingKeys = field(default_factory=MeetingKeys.generate)
    sender: SenderKeys = field(init=False)
    transport: KeyReceiver = field(init=False)
    roster: dict[str, RosterEntry] = field(default_factory=dict)
    received: list[SenderKey] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sender = SenderKeys(self.sender_index)
        self.transport = KeyReceiver(
            room_id=ROOM, participant_id=self.participant_id, keys=self.keys
        )

    @property
    def entry(self) -> RosterEntry:
        return RosterEntry(self.participant_id, self.sender_index, self.keys.public())

    def send_frame(self, payload: bytes, now: float) -> bytes:
        return protect(
            Codec.VP8, VP8_FRAME + payload, lambda md, pt: self.sender.encrypt(md, pt, now)
        )

    def read_frame(self, wire: bytes, now: float) -> bytes:
        return unprotect(Codec.VP8, wire, lambda sf, md: self.sender.decrypt(sf, md, now))

    def code(self) -> str:
        return security_code((e.participant_id, e.keys) for e in self.roster.values())


class Server:
    """Routes what the real server routes: roster views and opaque, addressed key messages."""

    def __init__(self) -> None:
        self.clients: dict[str, Client] = {}
        # (viewer, shown participant) -> keys the server shows instead of the real ones
        self.substitutions: dict[tuple[str, str], PublicKeys] = {}

    def view_for(self, viewer: str) -> dict[str, RosterEntry]:
        view = {}
        for pid, client in self.clients.items():
            entry = client.entry
            fake = self.substitutions.get((viewer, pid))
            view[pid] = RosterEntry(pid, entry.sender_index, fake) if fake else entry
        return view

    def send_key(self, sender: Client, key: SenderKey, recipient: Client, now: float) -> None:
        shown = sender.roster[recipient.participant_id].keys  # what the sender was shown
        message = seal_sender_key(
            key,
            room_id=ROOM,
            sender_id=sender.participant_id,
            sender_keys=sender.keys,
            recipient_id=recipient.participant_id,
            recipient=shown,
        )
        opened = recipient.transport.open(message, recipient.roster)
        recipient.received.append(opened)
        recipient.sender.add_peer_key(opened, now)

    def refresh_rosters(self) -> None:
        for pid, client in self.clients.items():
            client.roster = self.view_for(pid)

    def join(self, newcomer: Client, now: float) -> None:
        others = list(self.clients.values())
        self.clients[newcomer.participant_id] = newcomer
        self.refresh_rosters()
        for member in others:
            self.send_key(member, member.sender.on_join(now), newcomer, now)
            self.send_key(newcomer, newcomer.sender.latest_key, member, now)

    def leave(self, leaver: Client, now: float) -> None:
        del self.clients[leaver.participant_id]
        self.refresh_rosters()
        remaining = list(self.clients.values())
        for member in remaining:
            member.sender.remove_peer(leaver.sender_index)
            fresh = member.sender.on_leave(now)
            for other in remaining:
                if other is not member:
                    self.send_key(member, fresh, other, now)


def _meeting(*names: str) -> tuple[Server, list[Client]]:
    server = Server()
    clients = [Client(name, i + 1) for i, name in enumerate(names)]
    for client in clients:
        server.join(client, now=0.0)
    return server, clients


def test_everyone_reads_everyone() -> None:
    _, clients = _meeting("p_ana", "p_ben", "p_cy")
    for sender in clients:
        wire = sender.send_frame(b" from " + sender.participant_id.encode(), now=2.0)
        for reader in clients:
            if reader is not sender:
                assert reader.read_frame(wire, now=2.0).endswith(sender.participant_id.encode())


def test_backward_secrecy_a_newcomer_cannot_read_earlier_frames() -> None:
    server, (ana, ben) = _meeting("p_ana", "p_ben")
    before = [c.send_frame(b"before %d" % t, now=float(t)) for t in range(2, 6) for c in (ana, ben)]
    last_before = [c.send_frame(b"just before", now=10.0) for c in (ana, ben)]
    cy = Client("p_cy", 3)
    server.join(cy, now=10.0)
    # The very next frames use the ratcheted keys: a join waits for no activation delay.
    from_ana, from_ben = (c.send_frame(b"after", now=10.0) for c in (ana, ben))

    for wire, member in ((from_ana, ben), (from_ben, ana)):
        assert cy.read_frame(wire, now=10.0).endswith(b"after")
        assert member.read_frame(wire, now=10.0).endswith(b"after")  # followed the ratchet
        assert member.read_frame(before[0 if member is ben else 1], now=10.0)  # still in grace
    for wire in before + last_before:
        with pytest.raises(SFrameError):
            cy.read_frame(wire, now=10.0)
    # Not even by ratcheting what it was given: the ratchet only goes forward.
    for wire in before:
        for key in cy.received:
            candidate = key
            for _ in range(5):
                with pytest.raises(SFrameError):
                    sframe.decrypt(key.suite, candidate.base_key.reveal(), wire[10:], wire[:10])
                candidate = candidate.ratcheted()


def test_forward_secrecy_a_leaver_cannot_read_later_frames() -> None:
    server, (ana, ben, cy) = _meeting("p_ana", "p_ben", "p_cy")
    assert ben.read_frame(ana.send_frame(b"while present", now=2.0), now=2.0)
    server.leave(ben, now=20.0)
    later = [c.send_frame(b"after rotation", now=21.5) for c in (ana, cy)]

    assert cy.read_frame(later[0], now=21.5).endswith(b"after rotation")
    assert ana.read_frame(later[1], now=21.5).endswith(b"after rotation")
    for wire in later:
        # Ben's saved state: his SenderKeys object and every key he was ever given.
        with pytest.raises(SFrameError):
            ben.read_frame(wire, now=21.5)
        for key in ben.received:
            candidate = key
            for _ in range(20):
                with pytest.raises(SFrameError):
                    sframe.decrypt(key.suite, candidate.base_key.reveal(), wire[10:], wire[:10])
                candidate = candidate.ratcheted()


def test_a_join_while_a_kick_is_pending_uses_no_key_early_and_none_late() -> None:
    """Kim is kicked at 20.0 and Dan joins at 20.4, before the key that excludes Kim is in use:
    Ana and Cy go on with the keys everyone holds until the kick's deadline (21.0), and from
    then on send under keys Kim cannot read and Dan, Cy and Ana all can."""
    server, (ana, cy, kim) = _meeting("p_ana", "p_cy", "p_kim")
    server.leave(kim, now=20.0)
    dan = Client("p_dan", 4)
    server.join(dan, now=20.4)
    waiting = [c.send_frame(b"waiting", now=20.9) for c in (ana, cy)]
    due = [c.send_frame(b"due", now=21.0) for c in (ana, cy)]

    for i, (sender, reader) in enumerate(((ana, cy), (cy, ana))):
        assert frame_key_id(waiting[i][10:]).generation == 0  # the key everyone holds
        assert frame_key_id(due[i][10:]) == KeyId(sender.sender_index, 1, 1)  # kick's, ratcheted
        assert reader.read_frame(waiting[i], now=21.0).endswith(b"waiting")
        assert reader.read_frame(due[i], now=21.0).endswith(b"due")
        assert dan.read_frame(due[i], now=21.0).endswith(b"due")
        with pytest.raises(SFrameError):
            dan.read_frame(waiting[i], now=21.0)  # the pre-kick key, never Dan's
        assert kim.read_frame(waiting[i], now=21.0).endswith(b"waiting")  # the delay's price
        with pytest.raises(SFrameError):
            kim.read_frame(due[i], now=21.0)


def test_security_codes_agree_without_substitution() -> None:
    _, clients = _meeting("p_ana", "p_ben", "p_cy")
    assert len({c.code() for c in clients}) == 1


def test_a_key_substituting_server_changes_the_victims_codes() -> None:
    server, (ana, ben, cy) = _meeting("p_ana", "p_ben", "p_cy")
    mallory = MeetingKeys.generate()
    # The server shows ana a key of its own in place of ben's.
    server.substitutions[("p_ana", "p_ben")] = mallory.public()
    server.refresh_rosters()

    # The attack works at the key level: ana's next key, "for ben", opens with mallory's key.
    key = ana.sender.on_leave(now=30.0)
    message = seal_sender_key(
        key,
        room_id=ROOM,
        sender_id="p_ana",
        sender_keys=ana.keys,
        recipient_id="p_ben",
        recipient=ana.roster["p_ben"].keys,
    )
    stolen = KeyReceiver(room_id=ROOM, participant_id="p_ben", keys=mallory).open(
        message, ana.roster
    )
    assert stolen == key

    # ...and it shows: ana's code differs from ben's and cy's, who were shown the truth.
    assert ana.code() != ben.code()
    assert ana.code() != cy.code()
    assert ben.code() == cy.code()
