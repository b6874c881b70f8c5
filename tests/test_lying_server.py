"""Issue 9, finding 1: a server that lies about keys, against real `conclave join` sessions.

Real ClientSessions (media off: the attack is on keys) talk to the real hub through a lying
proxy (tests/support/lying_server.py) that rewrites the rosters each one is shown and tries to
open every key message it routes with key pairs of its own. In each attack either the server
opens no sender key, or each client whose key it opens shows a security code unlike the others'
and unlike the one over the real keys; a client shown its own keys replaced, or a known
participant's keys changed, leaves with the tampering sentence; so does a client shown a
participant that the server made up with a real participant's sender index.
"""

from __future__ import annotations

import asyncio
import io
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from bot.client.join import join
from bot.client.session import ClientSession, MediaOptions
from bot.core.links import parse_link
from bot.e2ee.code import security_code
from bot.e2ee.errors import KeysTampered
from bot.e2ee.identity import MeetingKeys, PublicKeys
from bot.e2ee.media import Codec, protect
from bot.e2ee.senderkeys import SenderKeys
from bot.e2ee.transport import message_to_text, seal_sender_key
from tests.support.fakes import user
from tests.support.lying_server import LyingServer, Roster, lying_server
from tests.support.server import Running, serve

CODE = re.compile(r"security code: (\d{5}(?: \d{5}){5})")
SENTENCE = "The server is tampering with the meeting's keys: "
WAIT = 10.0
VP8_FRAME = bytes.fromhex("5042009d012a8002e001") + b"picture"
GHOST = "p-ghost"


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


@dataclass
class Person:
    name: str
    lines: list[str]
    task: asyncio.Task[Any]
    session: ClientSession | None = None

    def codes(self) -> list[str]:
        return [m[1] for line in self.lines if (m := CODE.fullmatch(line))]

    def code(self) -> str | None:
        codes = self.codes()
        return codes[-1] if codes else None


@dataclass
class Meeting:
    server: Running
    liar: LyingServer
    room_id: str
    links: dict[str, str]  # invite links that lead through the liar, by name
    people: dict[str, Person]

    def start(self, name: str) -> Person:
        lines: list[str] = []
        session = ClientSession(parse_link(self.links[name]), lines.append, MediaOptions(False))
        person = Person(name, lines, asyncio.ensure_future(session.run(None)), session)
        self.people[name] = person
        return person

    def start_cli(self, name: str) -> Person:
        """``conclave join LINK``'s own code path; the task's result is its exit status."""
        out = io.StringIO()
        run = join(self.links[name], None, MediaOptions(False), out=out)
        person = Person(name, [], asyncio.ensure_future(run))
        self.people[name] = person
        return person

    async def join_all(self, *names: str) -> list[Person]:
        people = []
        for name in names:  # one at a time, so that sender indexes follow the order
            people.append(self.start(name))
            await until(lambda: self.pid(name) is not None, f"{name} in a roster")  # noqa: B023
        return people

    def pid(self, name: str) -> str | None:
        return next((p for p, n in self.liar.names.items() if n == name.capitalize()), None)

    def true_code(self) -> str | None:
        """The code over the keys everyone really announced: the hub's own roster."""
        roster = self.server.app.hub.roster(self.room_id)
        if len(roster) != len(self.people) or not all("keys" in e for e in roster):
            return None
        return security_code((e["participant_id"], PublicKeys.from_json(e["keys"])) for e in roster)

    async def leave(self, *names: str) -> None:
        for name in names:
            self.people[name].task.cancel()
        await asyncio.gather(*(self.people[n].task for n in names), return_exceptions=True)

    async def finish(self) -> None:
        """Everyone leaves; then everything each client sent has passed the liar."""
        await self.leave(*self.people)
        await self.liar.drained()

    def sent_by(self, name: str) -> list[str]:
        return [r.to for r in self.liar.routed if r.sender == self.pid(name)]

    def opened_from(self, name: str) -> int:
        return sum(1 for routed, _ in self.liar.opened if routed.sender == self.pid(name))


@pytest.fixture
async def meeting(tmp_path: Path) -> AsyncIterator[Meeting]:
    async with AsyncExitStack() as stack:
        server = await stack.enter_async_context(serve(tmp_path))
        liar = await stack.enter_async_context(lying_server(server.ws_url))
        made = await server.app.service.create_room(
            user("hana"), [user(n) for n in ("ana", "ben", "cy")], "Sync"
        )
        links = {}
        for issued in made.invites:
            real = parse_link(issued.link.reveal())
            links[issued.invite.user_id] = f"{liar.url}/j/{real.room_id}#{real.credential.reveal()}"
        m = Meeting(server, liar, made.room.id, links, {})
        try:
            yield m
        finally:
            await m.leave(*m.people)


# --- what the server shows -------------------------------------------------------------------


def shown_to(meeting: Meeting, viewer: str, roster: Roster) -> str:
    return meeting.liar.names.get(viewer, "?").lower()


def forge(meeting: Meeting, *, viewers: set[str] | None, targets: set[str] | None) -> None:
    """Show ``viewers`` (None: everyone) server-made keys, signed by the server, for ``targets``
    (None: everyone but the viewer); entries that carry no keys yet are left as they are."""

    def rewrite(viewer: str, roster: Roster) -> Roster:
        who = shown_to(meeting, viewer, roster)
        if viewers is not None and who not in viewers:
            return roster
        out = []
        for entry in roster:
            name = entry["name"].lower()
            hit = name in targets if targets is not None else name != who
            forged = "keys" in entry and hit
            out.append(meeting.liar.forged(entry, meeting.room_id) if forged else entry)
        return out

    meeting.liar.rewrite = rewrite


def swap_x25519(meeting: Meeting, *, viewer: str, target: str) -> MeetingKeys:
    """Show ``viewer`` the target's own entry, signature and Ed25519 key with the server's
    X25519 key in it: the server cannot sign for the target's Ed25519 key."""
    fake = meeting.liar.fakes.setdefault(target, MeetingKeys.generate())
    fake_x = PublicKeys(fake.public().x25519, fake.public().ed25519).to_json()["x25519"]

    def rewrite(viewer_id: str, roster: Roster) -> Roster:
        if shown_to(meeting, viewer_id, roster) != viewer:
            return roster
        return [
            {**e, "keys": {**e["keys"], "x25519": fake_x}}
            if e["name"].lower() == target and "keys" in e
            else e
            for e in roster
        ]

    meeting.liar.rewrite = rewrite
    return fake


async def test_a_rejoin_keeps_the_keys_and_the_code(meeting: Meeting) -> None:
    """Not an attack: a client whose connection drops resumes with the keys it had, so the
    others accept them again and the code comes back unchanged."""
    ana, ben, cy = await meeting.join_all("ana", "ben", "cy")
    await until(lambda: meeting.true_code() is not None, "everyone's keys announced")
    before = meeting.true_code()
    await until(lambda: all(p.code() == before for p in (ana, ben, cy)), "three equal codes")
    shown = len(ben.codes())
    ana_pid = meeting.pid("ana")
    assert ana_pid is not None

    await meeting.liar.drop(ana_pid)
    await until(lambda: "rejoined" in ana.lines, "ana's rejoin")
    await until(
        lambda: len(ben.codes()) > shown and all(p.code() == before for p in (ana, ben, cy)),
        "the same code again",
    )
    assert not any(p.task.done() for p in (ana, ben, cy))
    assert meeting.true_code() == before


# --- the attacks -----------------------------------------------------------------------------


async def test_an_honest_server_leaves_everyone_the_true_code(meeting: Meeting) -> None:
    people = await meeting.join_all("ana", "ben", "cy")
    await until(
        lambda: (
            meeting.true_code() is not None and all(p.code() == meeting.true_code() for p in people)
        ),
        "three equal codes",
    )
    await meeting.finish()
    assert len(meeting.liar.routed) >= 6  # everyone sent everyone a key...
    assert meeting.liar.opened == []  # ...and a passive server opens none of them


async def test_a_swapped_x25519_key_gets_the_server_nothing(meeting: Meeting) -> None:
    """(a) Ana is shown Ben's entry with the server's X25519 key in it."""
    swap_x25519(meeting, viewer="ana", target="ben")
    ana, ben, cy = await meeting.join_all("ana", "ben", "cy")
    await until(lambda: meeting.true_code() is not None, "everyone's keys announced")
    true_code = meeting.true_code()
    await until(lambda: ben.code() == true_code == cy.code(), "ben and cy agree")
    await until(lambda: any("not signed by them" in line for line in ana.lines), "ana's warning")
    await meeting.finish()

    assert meeting.liar.opened == []
    assert meeting.sent_by("ben") and meeting.sent_by("cy")  # there was traffic to attack
    # Ana sealed nothing, not even to Cy: she shows no code, so she sends no keys.
    assert meeting.sent_by("ana") == []
    assert true_code not in ana.codes()
    last = [line for line in ana.lines if line.startswith("security code: ")][-1]
    assert last.startswith("security code: pending (") and "Ben" in last


async def test_a_forged_peer_is_read_only_by_a_client_whose_code_differs(
    meeting: Meeting,
) -> None:
    """(a, re-signed) Ana is shown, for Ben, a key pair of the server's own that the server
    signed for Ben's id: it verifies, so Ana seals her key to the server, and her code shows it."""
    forge(meeting, viewers={"ana"}, targets={"ben"})
    ana, ben, cy = await meeting.join_all("ana", "ben", "cy")
    await until(lambda: meeting.true_code() is not None, "everyone's keys announced")
    true_code = meeting.true_code()
    await until(lambda: ben.code() == true_code == cy.code(), "ben and cy agree")
    await until(lambda: ana.code() is not None, "ana's code")
    await meeting.finish()

    assert meeting.opened_from("ana") >= 1  # the attack works at the key level...
    assert meeting.opened_from("ben") == meeting.opened_from("cy") == 0
    assert set(ana.codes()).isdisjoint({true_code})  # ...and shows when codes are compared
    assert ana.code() != ben.code()


async def test_a_full_man_in_the_middle_gives_everyone_a_different_code(
    meeting: Meeting,
) -> None:
    """Everyone is shown their own real entry and server-made pairs for everyone else, the
    only way left to keep clients from noticing their own entry: no two codes agree."""
    forge(meeting, viewers=None, targets=None)
    people = await meeting.join_all("ana", "ben", "cy")
    await until(lambda: meeting.true_code() is not None, "everyone's keys announced")
    true_code = meeting.true_code()
    real = {e["participant_id"]: e["keys"] for e in meeting.server.app.hub.roster(meeting.room_id)}
    # The liar makes each fake pair when it first relays that entry to someone; the hub can
    # hold all three keys a moment before the liar has passed the last one on.
    await until(lambda: set(real) <= set(meeting.liar.fakes), "the liar has forged everyone")

    def code_shown_to(name: str) -> str:
        """What the server's roster for ``name`` adds up to: its own keys, the server's others."""
        me = meeting.pid(name)
        return security_code(
            (pid, PublicKeys.from_json(keys) if pid == me else meeting.liar.fakes[pid].public())
            for pid, keys in real.items()
        )

    expected = {p.name: code_shown_to(p.name) for p in people}
    await until(lambda: all(p.code() == expected[p.name] for p in people), "codes over three")
    await meeting.finish()

    assert len({p.name for p in people if meeting.opened_from(p.name)}) == 3
    assert len(set(expected.values())) == 3
    assert true_code not in expected.values()


async def test_a_victims_own_entry_swapped_everywhere_makes_it_leave(
    meeting: Meeting, capsys: pytest.CaptureFixture[str]
) -> None:
    """(b) Every roster, Ana's own included, shows a server-made pair for Ana. Ana leaves at
    once, through `conclave join`'s own path, with the sentence; the others only ever
    sealed to the fake Ana what they give a newcomer, and showed codes over her fake keys."""
    forge(meeting, viewers=None, targets={"ana"})
    ben, cy = await meeting.join_all("ben", "cy")
    ana = meeting.start_cli("ana")
    assert await asyncio.wait_for(ana.task, WAIT) == 1
    stderr = capsys.readouterr().err
    assert f"conclave: {SENTENCE}" in stderr
    assert "own entry" in stderr
    assert stderr.rstrip().endswith("Leaving.")
    await meeting.finish()

    assert meeting.sent_by("ana") == []  # she sealed nothing
    # Ben and Cy did seal to the fake Ana (the attack got its chance), and only to her.
    assert {routed.sender for routed, _ in meeting.liar.opened} == {
        meeting.pid("ben"),
        meeting.pid("cy"),
    }
    assert all(routed.to == meeting.pid("ana") for routed, _ in meeting.liar.opened)
    assert not any(c in meeting.people["ana"].lines for c in ben.codes() + cy.codes())


async def test_server_made_pairs_for_everyone_everywhere_open_nothing(meeting: Meeting) -> None:
    """(b) for all: every roster shows every entry with a server-made pair, each client's own
    included. Each leaves with the sentence before sealing anything."""
    forge(meeting, viewers=None, targets={"ana", "ben", "cy"})
    for name in ("ana", "ben", "cy"):
        person = meeting.start(name)
        with pytest.raises(KeysTampered, match="own entry") as raised:
            await asyncio.wait_for(person.task, WAIT)
        assert str(raised.value).startswith(SENTENCE)
        assert person.session is not None and person.session.ended == "keys_tampered"
        assert person.codes() == []
    await meeting.finish()
    assert meeting.liar.routed == []
    assert meeting.liar.opened == []


async def test_a_known_participants_keys_changed_mid_meeting_makes_the_viewer_leave(
    meeting: Meeting,
) -> None:
    """(c) The meeting runs honestly; then Ana is shown server-made keys for Ben, and Cy
    leaves, a rotation whose new key Ana would have sealed to the server."""
    ana, ben, cy = await meeting.join_all("ana", "ben", "cy")
    await until(lambda: meeting.true_code() is not None, "everyone's keys announced")
    true_code = meeting.true_code()
    await until(lambda: all(p.code() == true_code for p in (ana, ben, cy)), "three equal codes")
    sent_before = len(meeting.sent_by("ana"))

    forge(meeting, viewers={"ana"}, targets={"ben"})
    await meeting.leave("cy")
    with pytest.raises(KeysTampered, match=r"replaced the keys of Ben") as raised:
        await asyncio.wait_for(ana.task, WAIT)
    assert str(raised.value).startswith(SENTENCE) and str(raised.value).endswith("Leaving.")
    await until(lambda: len(ben.codes()) >= 2, "ben's code without cy")
    await meeting.finish()

    assert meeting.liar.opened == []
    assert len(meeting.sent_by("ana")) == sent_before  # nothing sealed after the swap
    assert ana.code() == true_code  # the last code she showed was the honest one


async def test_a_client_past_the_resume_limit_waits_and_rejoins(meeting: Meeting) -> None:
    """Not an attack: a flaky connection drops more often than the server's resume ration.
    The client is told to wait, keeps its token, and rejoins once the window has passed."""
    (ana,) = await meeting.join_all("ana")
    ana_pid = meeting.pid("ana")
    assert ana_pid is not None
    limit = meeting.server.app.service.policy.resume_limit
    for n in range(1, limit + 1):
        await meeting.liar.drop(ana_pid)
        await until(partial(lambda k: ana.lines.count("rejoined") == k, n), f"rejoin {n}")
    await meeting.liar.drop(ana_pid)
    await until(
        lambda: any("Rejoining too often" in line for line in ana.lines),
        "told to wait",
    )
    assert not ana.task.done()
    meeting.server.clock.advance(meeting.server.app.service.policy.resume_window + 1)
    await until(lambda: ana.lines.count("rejoined") == limit + 1, "rejoined after the window")
    assert not ana.task.done() and ana.session is not None and ana.session.ended is None


# --- a participant the server makes up, with a real participant's sender index ---------------


def real_entries(meeting: Meeting) -> dict[str, dict[str, Any]]:
    return {e["participant_id"]: e for e in meeting.server.app.hub.roster(meeting.room_id)}


def show_ghost(meeting: Meeting, *, index: int, viewers: set[str], hide: str | None) -> None:
    """Show ``viewers`` one more entry, "Ghost", with keys the server made and signed for
    ``index``: an announcement that verifies; ``hide`` is left out of their rosters."""

    def rewrite(viewer: str, roster: Roster) -> Roster:
        if shown_to(meeting, viewer, roster) not in viewers:
            return roster
        template = {**roster[0], "participant_id": GHOST, "name": "Ghost", "sender_index": index}
        kept = [e for e in roster if e["name"].lower() != hide]
        return [*kept, meeting.liar.forged(template, meeting.room_id)]

    meeting.liar.fakes.setdefault(GHOST, MeetingKeys.generate())
    meeting.liar.rewrite = rewrite


async def attack_with_a_ghost(meeting: Meeting, victim: str, index: int) -> SenderKeys:
    """The ghost's key for ``index``, three generations newer than the real owner's, sealed to
    the victim, reaches it just before the roster that shows the ghost. Returns the ghost's
    keys, whose frames would carry ``index``."""
    victim_pid = meeting.pid(victim)
    assert victim_pid is not None
    ghost = SenderKeys(index, activation_delay=0.0)
    for _ in range(3):
        ghost.on_leave(0.0)
    ghost.tick(0.0)
    sealed = seal_sender_key(
        ghost.current_key,
        room_id=meeting.room_id,
        sender_id=GHOST,
        sender_keys=meeting.liar.fakes[GHOST],
        recipient_id=victim_pid,
        recipient=PublicKeys.from_json(real_entries(meeting)[victim_pid]["keys"]),
    )
    payload = message_to_text(sealed)
    await meeting.liar.send(victim_pid, {"type": "key", "from": GHOST, "payload": payload})
    await meeting.liar.reshow(victim_pid)
    return ghost


def assert_nothing_of_the_ghost_accepted(person: Person, ghost: SenderKeys) -> None:
    assert person.session is not None and person.session.keyring is not None
    keyring = person.session.keyring
    assert ghost.current_key.kid not in keyring.sender_keys.held_kids()
    frame = protect(Codec.VP8, VP8_FRAME, lambda md, pt: ghost.encrypt(md, pt, 0.0))
    assert keyring.unprotect(Codec.VP8, frame, ghost.sender_index) is None


async def test_a_ghost_with_a_real_participants_sender_index_makes_everyone_leave(
    meeting: Meeting,
) -> None:
    """Every client is shown a made-up "Ghost" whose announcement the server signed for Ben's
    sender index: every code would still agree, and the ghost's frames would show as Ben's
    (and, when it left, everyone would forget Ben's keys). Each client leaves instead."""
    ana, ben, cy = people = await meeting.join_all("ana", "ben", "cy")
    await until(lambda: meeting.true_code() is not None, "everyone's keys announced")
    true_code = meeting.true_code()
    await until(lambda: all(p.code() == true_code for p in people), "three equal codes")
    ben_pid = meeting.pid("ben")
    assert ben_pid is not None
    index = int(real_entries(meeting)[ben_pid]["sender_index"])

    show_ghost(meeting, index=index, viewers={"ana", "ben", "cy"}, hide=None)
    ghost = await attack_with_a_ghost(meeting, "ana", index)
    for person in (ben, cy):
        pid = meeting.pid(person.name)
        assert pid is not None
        await meeting.liar.reshow(pid)
    for person in people:
        with pytest.raises(KeysTampered, match="two participants with one sender index") as raised:
            await asyncio.wait_for(person.task, WAIT)
        assert str(raised.value).startswith(SENTENCE)
        assert person.session is not None and person.session.ended == "keys_tampered"
    assert_nothing_of_the_ghost_accepted(ana, ghost)
    # Ben's own keys are still Ana's: his frames still pass on his index.
    assert ben.session is not None and ben.session.keyring is not None
    assert ana.session is not None and ana.session.keyring is not None
    ben_frame = ben.session.keyring.protect(Codec.VP8, VP8_FRAME)
    assert ana.session.keyring.unprotect(Codec.VP8, ben_frame, index) == VP8_FRAME
    await meeting.finish()

    assert len(meeting.liar.routed) >= 6  # each of three sealed to the two others
    assert all(routed.to != GHOST for routed in meeting.liar.routed)
    assert meeting.liar.opened == []


async def test_a_ghost_given_the_index_of_someone_hidden_makes_the_viewer_leave(
    meeting: Meeting,
) -> None:
    """Ana alone is shown Ben leave and a made-up "Ghost" come in with Ben's sender index: a
    rotation she would seal to the ghost. She remembers whose index it was, and leaves."""
    ana, ben, cy = await meeting.join_all("ana", "ben", "cy")
    await until(lambda: meeting.true_code() is not None, "everyone's keys announced")
    true_code = meeting.true_code()
    await until(lambda: all(p.code() == true_code for p in (ana, ben, cy)), "three equal codes")
    ben_pid = meeting.pid("ben")
    assert ben_pid is not None
    index = int(real_entries(meeting)[ben_pid]["sender_index"])
    sent_before = len(meeting.sent_by("ana"))

    show_ghost(meeting, index=index, viewers={"ana"}, hide="ben")
    ghost = await attack_with_a_ghost(meeting, "ana", index)
    expected = rf"it gave sender index {index}, which belonged to Ben \({ben_pid}\), to Ghost"
    with pytest.raises(KeysTampered, match=expected) as raised:
        await asyncio.wait_for(ana.task, WAIT)
    assert str(raised.value).startswith(SENTENCE)
    assert_nothing_of_the_ghost_accepted(ana, ghost)
    assert not ben.task.done() and not cy.task.done()
    await meeting.finish()

    assert len(meeting.sent_by("ana")) == sent_before
    assert meeting.liar.opened == []
