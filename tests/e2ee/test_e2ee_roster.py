"""A client's view of everyone's keys, checked against each roster a lying server could show."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from bot.e2ee.announce import KeyAnnouncement, announce
from bot.e2ee.errors import KeysTampered
from bot.e2ee.identity import MeetingKeys, PublicKeys
from bot.e2ee.roster import KeyBook, ShownEntry

ROOM = "Yd3kQ9vX2mTq8LrPzW4sNa"
KEYS = {pid: MeetingKeys.generate() for pid in ("p_ana", "p_ben", "p_cy")}
INDEX = {"p_ana": 1, "p_ben": 2, "p_cy": 3}
SERVER = MeetingKeys.generate()


def entry(pid: str, announced: KeyAnnouncement | None = None, *, index: int = 0) -> ShownEntry:
    index = index or INDEX[pid]
    keys = None if announced is None else announced.to_json()
    return ShownEntry(pid, index, pid.removeprefix("p_").capitalize(), keys)


def honest(pid: str) -> ShownEntry:
    return entry(pid, announce(KEYS[pid], ROOM, pid, INDEX[pid]))


def book(pid: str) -> KeyBook:
    return KeyBook(ROOM, pid, INDEX[pid], KEYS[pid].public())


def forged(pid: str) -> ShownEntry:
    """What a server can show for ``pid``: a pair of its own, signed by itself."""
    return entry(pid, announce(SERVER, ROOM, pid, INDEX[pid]))


def x_swapped(pid: str) -> ShownEntry:
    """``pid``'s own signature and Ed25519 key around the server's X25519 key."""
    real = announce(KEYS[pid], ROOM, pid, INDEX[pid])
    return entry(pid, replace(real, keys=PublicKeys(SERVER.public().x25519, real.keys.ed25519)))


def test_an_honest_roster_gives_everyone_the_same_code() -> None:
    roster = [honest(p) for p in KEYS]
    views = {pid: book(pid).view(roster) for pid in KEYS}
    assert len({v.code for v in views.values()}) == 1
    assert None not in {v.code for v in views.values()}
    assert set(views["p_ana"].peers) == {"p_ben", "p_cy"}
    assert views["p_ana"].peers["p_ben"].keys == KEYS["p_ben"].public()


def test_the_code_is_pending_until_every_entry_has_verified_keys() -> None:
    ana = book("p_ana")
    own_pending = ana.view([entry("p_ana"), honest("p_ben")])
    assert own_pending.code is None
    assert set(own_pending.peers) == {"p_ben"}
    peer_pending = ana.view([honest("p_ana"), honest("p_ben"), entry("p_cy")])
    assert peer_pending.code is None
    assert peer_pending.waiting == ("Cy (p_cy)",)
    assert ana.view([honest("p_ben")]).code is None  # a roster without this client


def test_a_peers_x25519_key_swapped_by_the_server_is_never_used() -> None:
    view = book("p_ana").view([honest("p_ana"), x_swapped("p_ben"), honest("p_cy")])
    assert "p_ben" not in view.peers
    assert view.rejected == ("Ben (p_ben)",)
    assert view.code is None
    assert "p_cy" in view.peers


def test_an_entry_signed_for_another_index_is_not_used() -> None:
    shown = entry("p_ben", announce(KEYS["p_ben"], ROOM, "p_ben", 2), index=3)
    assert "p_ben" not in book("p_ana").view([honest("p_ana"), shown]).peers


@pytest.mark.parametrize(
    "own",
    [
        pytest.param(lambda: forged("p_ana"), id="server_made_pair"),
        pytest.param(lambda: x_swapped("p_ana"), id="x25519_swapped"),
        pytest.param(
            lambda: entry("p_ana", announce(KEYS["p_ana"], ROOM, "p_ana", 1), index=4),
            id="other_index",
        ),
        pytest.param(lambda: ShownEntry("p_ana", 1, "Ana", {"x25519": "garbage"}), id="garbage"),
    ],
)
def test_this_clients_own_entry_must_carry_its_own_keys(own: Callable[[], ShownEntry]) -> None:
    with pytest.raises(KeysTampered, match="own entry") as raised:
        book("p_ana").view([own(), honest("p_ben")])
    assert str(raised.value).startswith("The server is tampering with the meeting's keys: ")
    assert str(raised.value).endswith(" Leaving.")


def test_new_keys_for_a_participant_who_never_left_are_tampering() -> None:
    ana = book("p_ana")
    ana.view([honest("p_ana"), honest("p_ben")])
    # Shown without keys for a while (a reconnection in progress) is not a leave.
    ana.view([honest("p_ana"), entry("p_ben")])
    assert set(ana.view([honest("p_ana"), honest("p_ben")]).peers) == {"p_ben"}
    with pytest.raises(KeysTampered, match=r"Ben \(p_ben\)"):
        ana.view([honest("p_ana"), forged("p_ben")])


def test_a_broken_statement_for_a_known_participant_is_tampering() -> None:
    ana = book("p_ana")
    ana.view([honest("p_ana"), honest("p_ben")])
    with pytest.raises(KeysTampered):
        ana.view([honest("p_ana"), x_swapped("p_ben")])


def test_after_a_leave_an_id_may_come_back_with_other_keys_and_the_code_shows_it() -> None:
    ana = book("p_ana")
    before = ana.view([honest("p_ana"), honest("p_ben")]).code
    ana.view([honest("p_ana")])
    after = ana.view([honest("p_ana"), forged("p_ben")])
    assert after.code is not None and after.code != before


def test_one_id_twice_is_tampering() -> None:
    with pytest.raises(KeysTampered):
        book("p_ana").view([honest("p_ana"), honest("p_ben"), honest("p_ben")])


def test_a_full_man_in_the_middle_shows_everyone_a_different_code() -> None:
    # Everyone is shown their own true entry and a server-made pair for everyone else: every
    # view verifies, and no two codes agree, which is what people comparing codes notice.
    codes = set()
    for pid in KEYS:
        roster = [honest(p) if p == pid else forged(p) for p in KEYS]
        codes.add(book(pid).view(roster).code)
    assert len(codes) == 3 and None not in codes


# --- sender indexes: one per participant id for the whole meeting ------------------------------

GHOST = MeetingKeys.generate()  # the server's own pair for a participant it makes up


def ghost(index: int) -> ShownEntry:
    """An entry the server adds, with keys it signed for ``index``: it verifies on its own."""
    return entry("p_ghost", announce(GHOST, ROOM, "p_ghost", index), index=index)


def test_a_ghost_signed_for_a_real_participants_index_is_tampering() -> None:
    """The ghost's frames would carry Ben's index in their KID, so show as Ben's; its leave
    would make everyone forget Ben's keys. Each client is shown it, every code would agree."""
    for viewer in KEYS:
        with pytest.raises(KeysTampered, match="two participants with one sender index"):
            book(viewer).view([honest(p) for p in KEYS] + [ghost(INDEX["p_ben"])])


def test_an_index_shown_later_for_another_id_is_tampering_even_after_its_holder_left() -> None:
    ana = book("p_ana")
    ana.view([honest("p_ana"), honest("p_ben"), honest("p_cy")])
    ana.view([honest("p_ana"), honest("p_cy")])  # Ben leaves; his index stays his
    with pytest.raises(KeysTampered) as raised:
        ana.view([honest("p_ana"), honest("p_cy"), ghost(INDEX["p_ben"])])
    assert (
        raised.value.detail
        == "it gave sender index 2, which belonged to Ben (p_ben), to Ghost (p_ghost)"
    )


def test_an_index_without_keys_counts_too() -> None:
    ana = book("p_ana")
    ana.view([honest("p_ana"), entry("p_ben")])  # Ben has not announced yet
    with pytest.raises(KeysTampered, match="which belonged to Ben"):
        ana.view([honest("p_ana"), ghost(INDEX["p_ben"])])


def test_a_peer_with_this_clients_own_index_is_tampering() -> None:
    """Even in a roster that leaves this client out (the server may show one mid-rejoin)."""
    with pytest.raises(KeysTampered, match="index 1, which belonged to this device, to Ghost"):
        book("p_ana").view([honest("p_ben"), ghost(INDEX["p_ana"])])


def test_an_id_back_after_a_leave_keeps_its_index_and_a_newcomer_takes_a_new_one() -> None:
    ana = book("p_ana")
    ana.view([honest("p_ana"), honest("p_ben")])
    ana.view([honest("p_ana")])
    view = ana.view([honest("p_ana"), honest("p_ben"), ghost(4)])
    assert set(view.peers) == {"p_ben", "p_ghost"} and view.code is not None
