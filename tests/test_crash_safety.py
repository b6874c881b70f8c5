"""A process killed mid-redemption leaves the database whole: every invite spent completely or
not at all, and the file still usable."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from bot.clock import SystemClock
from bot.core.policy import MeetingPolicy
from bot.core.service import MeetingService
from bot.errors import InviteAlreadyUsed
from bot.store.sqlite import SqliteStore
from tests.support.fakes import user
from tests.support.proc import START_TIMEOUT, LineReader, clean_env

pytestmark = pytest.mark.slow

INVITES = 200
KILL_AFTER = 20
ROUNDS = 3

# The child redeems every invite it is given, one after another, saying how many it has done.
CHILD = textwrap.dedent(
    """
    import asyncio, json, sys

    from bot.clock import SystemClock
    from bot.core.policy import MeetingPolicy
    from bot.core.service import MeetingService
    from bot.store.sqlite import SqliteStore


    async def main(db: str, creds_file: str) -> None:
        with open(creds_file, encoding="utf-8") as f:
            work = json.load(f)
        store = SqliteStore(db)
        await store.open()
        service = MeetingService(store, MeetingPolicy(), "http://127.0.0.1:9", SystemClock())
        print("ready", flush=True)
        done = 0
        for credential in work["credentials"]:
            await service.redeem(work["room"], credential)
            done += 1
            print(f"redeemed {done}", flush=True)
        print("finished", flush=True)
        await asyncio.Event().wait()  # never reached in the test: it is killed long before


    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


async def make_room(db: Path) -> tuple[str, list[str]]:
    """A room with ``INVITES`` guests; its id and each invite's ``<invite_id>.<secret>``."""
    store = SqliteStore(db)
    await store.open()
    try:
        service = MeetingService(
            store, MeetingPolicy(max_invitees=INVITES), "http://127.0.0.1:9", SystemClock()
        )
        made = await service.create_room(
            user("hana"), [user(f"guest{n:03}") for n in range(INVITES)], "Crash"
        )
    finally:
        await store.close()
    return made.room.id, [urlsplit(i.link.reveal()).fragment for i in made.invites]


def redeem_until_killed(db: Path, room_id: str, credentials: list[str], work: Path) -> int:
    """Run the redeeming child over ``credentials``, SIGKILL it once it has reported
    ``KILL_AFTER`` redemptions, and return the highest count it reported."""
    work.write_text(json.dumps({"room": room_id, "credentials": credentials}))
    script = work.parent / "redeem_loop.py"
    script.write_text(CHILD, encoding="utf-8")
    child = subprocess.Popen(
        [sys.executable, str(script), str(db), str(work)],
        env=clean_env(),
        cwd=work.parent,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        out = LineReader(child.stdout)
        out.wait_for(lambda s: s == "ready", START_TIMEOUT)
        out.wait_for(lambda s: s.startswith("redeemed ") and int(s.split()[1]) >= KILL_AFTER)
        child.kill()  # SIGKILL: no cleanup, no rollback, whatever the loop was doing
        child.wait(timeout=10)
        out.join()
        assert "finished" not in out.lines, "the child finished before it could be killed"
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=10)
        stderr = child.stderr.read() if child.stderr is not None else ""
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()
    assert child.returncode == -signal.SIGKILL, f"the child died on its own: {stderr}"
    # Whatever it printed before the kill counts.
    return max(int(s.split()[1]) for s in out.lines if s.startswith("redeemed "))


def check_whole(db: Path, room_id: str, invite_ids: set[str]) -> dict[str, str]:
    """Every invite redeemed completely or not at all; the invites' states by id."""
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        rows = conn.execute(
            "SELECT id, state, redeemed_at IS NOT NULL FROM invites WHERE room_id = ? "
            "AND role = 'guest'",
            (room_id,),
        ).fetchall()
        sessions = Counter(
            invite_id
            for (invite_id,) in conn.execute(
                "SELECT invite_id FROM participants WHERE room_id = ?", (room_id,)
            )
        )
        audited = Counter(
            json.loads(detail)["invite"]
            for (detail,) in conn.execute(
                "SELECT detail FROM audit WHERE room_id = ? AND event = 'invite_redeemed'",
                (room_id,),
            )
        )
        indexes = [
            i
            for (i,) in conn.execute(
                "SELECT sender_index FROM participants WHERE room_id = ?", (room_id,)
            )
        ]
    finally:
        conn.close()

    states = {invite_id: state for invite_id, state, _ in rows}
    assert set(states) == invite_ids
    half_done = []
    for invite_id, state, stamped in rows:
        n = (sessions[invite_id], audited[invite_id], bool(stamped))
        if (state, n) not in (("redeemed", (1, 1, True)), ("issued", (0, 0, False))):
            half_done.append((state, n))
    assert not half_done, f"{len(half_done)} invites are half redeemed: {half_done[:3]}"
    assert set(sessions) <= invite_ids  # no session without one of this room's invites
    assert len(indexes) == len(set(indexes)) == sum(1 for s in states.values() if s == "redeemed")
    assert all(i >= 1 for i in indexes)
    return states


async def test_sigkill_mid_redemption_leaves_every_invite_whole(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    room_id, credentials = await make_room(db)
    invite_ids = {c.partition(".")[0] for c in credentials}

    reported = 0
    states = {i: "issued" for i in invite_ids}
    for round_ in range(ROUNDS):
        # Each round a new process takes up what is still issued and is killed mid-loop.
        pending = [c for c in credentials if states[c.partition(".")[0]] == "issued"]
        reported += redeem_until_killed(db, room_id, pending, tmp_path / f"work{round_}.json")
        states = check_whole(db, room_id, invite_ids)
        redeemed = sum(1 for s in states.values() if s == "redeemed")
        assert redeemed >= reported
        assert redeemed < INVITES  # it really was killed mid-loop

    # The file is still a working store: the next invite redeems, with a fresh sender index,
    # and a spent one stays spent.
    store = SqliteStore(db)
    await store.open()
    try:
        service = MeetingService(store, MeetingPolicy(), "http://127.0.0.1:9", SystemClock())
        taken = {p.sender_index for p in await store.participants_for_room(room_id)}
        unspent = next(c for c in credentials if states[c.partition(".")[0]] == "issued")
        admission = await service.redeem(room_id, unspent)
        assert admission.participant.sender_index not in taken
        spent = next(c for c in credentials if states[c.partition(".")[0]] == "redeemed")
        with pytest.raises(InviteAlreadyUsed):
            await service.redeem(room_id, spent)
    finally:
        await store.close()
    check_whole(db, room_id, invite_ids)
