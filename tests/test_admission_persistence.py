"""A guest the host let out of the lobby stays let in: the admission is kept with the guest's
session (and audited in the same write), not only in the hub's memory, so a restart of the core
does not send the guest back to the lobby, and a guest who was still waiting waits again.

The service tests run on both stores; the schema upgrade and the restarted hub on SQLite.
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, closing
from pathlib import Path

import aiohttp
import pytest

from bot.core.models import Participant, Room, UserRef
from bot.core.policy import MeetingPolicy
from bot.core.service import MeetingService
from bot.errors import NotWaiting
from bot.secret import Secret
from bot.store.base import Store
from bot.store.migrations import MIGRATIONS, SCHEMA_VERSION
from bot.store.sqlite import SqliteStore
from bot.tokens import hash_secret
from tests.support.fakes import FakeClock, user
from tests.support.meeting import credential, roster_ids
from tests.support.server import serve
from tests.support.stores import STORES, each_store
from tests.support.world import World


@pytest.fixture(params=STORES)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with each_store(request, tmp_path) as s:
        yield s


class Lobby:
    """A lobby room with its host and two guests seated, everyone's resume token kept."""

    def __init__(self, room_id: str, tokens: dict[str, str], ids: dict[str, str]) -> None:
        self.room_id = room_id
        self.tokens = tokens  # by user id
        self.ids = ids  # participant ids by user id


async def lobby_room(service: MeetingService, host: UserRef) -> Lobby:
    made = await service.create_room(host, [user("ana"), user("ben")], "Sync", lobby=True)
    room_id = made.room.id
    tokens, ids = {}, {}
    for issued in (made.host_invite, *made.invites):
        seat = await service.redeem(room_id, credential(issued))
        tokens[issued.invite.user_id] = seat.resume_token.reveal()
        ids[issued.invite.user_id] = seat.participant.id
    return Lobby(room_id, tokens, ids)


async def session(store: Store, participant_id: str) -> tuple[Room, Participant]:
    found = await store.find_session(participant_id)
    assert found is not None
    return found


async def admissions(store: Store, room_id: str) -> list[tuple[str, str, float]]:
    """Whom the audit log says was let in: (actor, participant, when)."""
    log = await store.audit_log(room_id)
    return [
        (e.actor, e.detail["participant"], e.at) for e in log if e.event == "participant_admitted"
    ]


async def test_an_admission_is_kept_with_the_session_and_audited(
    service: MeetingService, store: Store, host: UserRef, clock: FakeClock
) -> None:
    lobby = await lobby_room(service, host)
    ana, ben, hana = lobby.ids["ana"], lobby.ids["ben"], lobby.ids[host.user_id]
    clock.advance(30)

    await service.admit(hana, ana, waiting=[ana, ben])

    room, admitted = await session(store, ana)
    assert admitted.admitted_at == clock.now()
    assert admitted.admitted_to(room)
    _, waiting = await session(store, ben)
    assert waiting.admitted_at is None and not waiting.admitted_to(room)
    _, host_seat = await session(store, hana)
    assert host_seat.admitted_to(room)  # the host never waits
    actor = f"{host.platform}:{host.workspace}:{host.user_id}"
    assert await admissions(store, lobby.room_id) == [(actor, ana, clock.now())]


async def test_a_resume_on_a_reopened_store_is_still_admitted(
    service: MeetingService, store: Store, host: UserRef, clock: FakeClock
) -> None:
    """What the hub reads when a participant comes back to a restarted core: the store
    reopened and a new service, nothing carried over in memory."""
    lobby = await lobby_room(service, host)
    ana, ben = lobby.ids["ana"], lobby.ids["ben"]
    await service.admit(lobby.ids[host.user_id], ana, waiting=[ana, ben])
    admitted_at = clock.now()
    clock.advance(60)
    await store.close()

    reopened: Store = SqliteStore(store.path) if isinstance(store, SqliteStore) else store
    await reopened.open()
    try:
        restarted = MeetingService(reopened, MeetingPolicy(), "http://127.0.0.1:8080", clock)
        back = {who: await restarted.resume(lobby.tokens[who]) for who in ("ana", "ben", "hana")}
        assert back["ana"].participant.admitted_to(back["ana"].room)
        assert not back["ben"].participant.admitted_to(back["ben"].room)
        assert back["hana"].participant.admitted_to(back["hana"].room)
        # Resuming rotates the token and keeps the admission (and its time) with the session.
        assert back["ana"].participant.admitted_at == admitted_at
        _, ana_now = await session(reopened, ana)
        assert ana_now.admitted_at == admitted_at
        assert ana_now.resume_hash == hash_secret(
            Secret(back["ana"].resume_token.reveal().split(".", 1)[1])
        )
    finally:
        if reopened is not store:
            await reopened.close()


async def test_an_admission_is_written_once(
    service: MeetingService, store: Store, host: UserRef
) -> None:
    """A second admit of the same guest (the hub's view of the lobby was stale, or the host
    clicked twice at once) is refused and leaves one record."""
    lobby = await lobby_room(service, host)
    ana, hana = lobby.ids["ana"], lobby.ids[host.user_id]

    results = await asyncio.gather(
        *(service.admit(hana, ana, waiting=[ana]) for _ in range(5)), return_exceptions=True
    )

    assert sum(r is None for r in results) == 1
    assert all(isinstance(r, NotWaiting) for r in results if r is not None)
    with pytest.raises(NotWaiting):
        await service.admit(hana, ana, waiting=[ana])
    assert [who for _, who, _ in await admissions(store, lobby.room_id)] == [ana]


async def test_a_kicked_guest_cannot_be_admitted(
    service: MeetingService, store: Store, host: UserRef
) -> None:
    lobby = await lobby_room(service, host)
    ben, hana = lobby.ids["ben"], lobby.ids[host.user_id]
    await service.kick(hana, ben)

    with pytest.raises(NotWaiting):
        await service.admit(hana, ben, waiting=[ben])

    assert (await session(store, ben))[1].admitted_at is None
    assert await admissions(store, lobby.room_id) == []


async def test_a_host_cannot_admit_into_their_room_a_guest_of_another(
    service: MeetingService, store: Store, host: UserRef
) -> None:
    """The store writes an admission only for a session in the host's own room, whatever
    list of waiting people it is handed."""
    mine = await lobby_room(service, host)
    theirs = await lobby_room(service, user("olga"))
    stranger = theirs.ids["ana"]

    with pytest.raises(NotWaiting):
        await service.admit(mine.ids[host.user_id], stranger, waiting=[stranger])

    room, guest = await session(store, stranger)
    assert not guest.admitted_to(room)
    assert await admissions(store, mine.room_id) == []
    assert await admissions(store, theirs.room_id) == []


# --- the schema upgrade --------------------------------------------------------------------


async def test_a_schema_2_database_upgrades_with_its_admissions(tmp_path: Path) -> None:
    """Migration 3 adds the admission to each session, filled in from the audit log for
    guests let in before the upgrade; the others still wait."""
    path = tmp_path / "old.db"
    tokens = {who: Secret(secrets.token_urlsafe(32)) for who in ("ana", "ben")}
    with closing(sqlite3.connect(path)) as db:
        for script in MIGRATIONS[:2]:
            db.executescript(script)
        db.execute(
            "INSERT INTO rooms VALUES ('r', 'Sync', 'console', 'local', 'hana', 'Hana', 'open',"
            " 1, 0, 1e12, NULL)"
        )
        for n, who in enumerate(("ana", "ben"), start=1):
            db.execute(
                "INSERT INTO invites VALUES (?, 'r', ?, ?, 'guest', ?, 'redeemed', 0, 1e12, 1)",
                (f"i{who}", who, who.capitalize(), hash_secret(Secret(f"invite-{who}"))),
            )
            db.execute(
                "INSERT INTO participants VALUES (?, 'r', ?, ?, ?, 'guest', ?, ?, 'active', 1,"
                " NULL)",
                (f"p{who}", f"i{who}", who, who.capitalize(), n, hash_secret(tokens[who])),
            )
        # Ana was let in (twice on record: the earlier time counts); an admission of Ben in
        # another room's log does not let him into this one.
        db.executemany(
            "INSERT INTO audit (at, room_id, actor, event, detail)"
            " VALUES (?, ?, ?, 'participant_admitted', ?)",
            [
                (50, "r", "console:local:hana", '{"participant": "pana"}'),
                (70, "r", "console:local:hana", '{"participant": "pana"}'),
                (60, "x", "console:local:olga", '{"participant": "pben"}'),
            ],
        )
        db.execute("PRAGMA user_version = 2")
        db.commit()

    store = SqliteStore(path)
    await store.open()
    try:
        service = MeetingService(store, MeetingPolicy(), "http://127.0.0.1:8080", FakeClock())
        ana = await service.resume(f"pana.{tokens['ana'].reveal()}")
        ben = await service.resume(f"pben.{tokens['ben'].reveal()}")
        assert ana.participant.admitted_at == 50
        assert ana.participant.admitted_to(ana.room)
        assert ben.participant.admitted_at is None
        assert not ben.participant.admitted_to(ben.room)
    finally:
        await store.close()
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3


# --- the hub after a restart -------------------------------------------------------------


async def test_a_restarted_hub_lets_the_admitted_guest_back_in_and_the_waiting_one_wait(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """The real application twice on one database: everything the first one held in memory
    is gone, as after a crash, and each participant comes back with its resume token."""
    async with AsyncExitStack() as first_stack:
        first = World(await first_stack.enter_async_context(serve(tmp_path)), http, first_stack)
        await first.room("ana", "ben", lobby=True)
        host = await first.join("hana")
        ana = await first.lobby("ana")
        ben = await first.lobby("ben")
        await first.admit(host, ana)
        await host.until("lobby_waiting", lambda m: len(m["waiting"]) == 1)
        tokens = {"hana": host.resume_token, "ana": ana.resume_token, "ben": ben.resume_token}
        ids = {"hana": host.participant_id, "ana": ana.participant_id, "ben": ben.participant_id}

    async with AsyncExitStack() as stack:
        again = World(await stack.enter_async_context(serve(tmp_path)), http, stack)
        assert again.server.app.hub.roster(first.meeting.room_id) == []  # nothing remembered
        host = await again.resume(tokens["hana"])
        ana = await again.resume(tokens["ana"])
        ben = await again.resume(tokens["ben"])

        assert ana.participant_id == ids["ana"]
        assert ana.welcome["admitted"] is True
        assert roster_ids(ana.welcome) == [ids["hana"], ids["ana"]]
        assert not [m for m in await ana.ping() if m["type"] == "lobby"]

        assert ben.participant_id == ids["ben"]
        assert ben.welcome["admitted"] is False
        assert ben.welcome["roster"] == []
        await ben.until("lobby")
        waiting = await host.until("lobby_waiting", lambda m: len(m["waiting"]) == 1)
        assert [w["participant_id"] for w in waiting["waiting"]] == [ids["ben"]]
        in_room = again.server.app.hub.roster(first.meeting.room_id)
        assert [e["participant_id"] for e in in_room] == [ids["hana"], ids["ana"]]
