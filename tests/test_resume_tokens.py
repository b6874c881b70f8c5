"""Resume tokens are spent by use and resumes are rationed: a copied token dies once its device
has resumed with the token it was last given, a welcome lost with the connection does not cost
the device its seat, and a client resuming in a loop (to churn the roster) is refused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import pytest

from bot.core.models import Admission, UserRef
from bot.core.service import MeetingService
from bot.errors import BadResumeToken, ConclaveError, ResumeTooSoon, RoomEnded
from bot.signaling.hub import CLOSE_REFUSED
from bot.store.base import Store
from tests.support.fakes import FakeClock, user
from tests.support.meeting import connect, credential, join, make_meeting, refused
from tests.support.server import expect_refused, hello_resume, receive_json, serve
from tests.support.stores import STORES, each_store


@pytest.fixture(params=STORES)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """The service-level tests run on each store; the over-the-wire ones serve SQLite."""
    async with each_store(request, tmp_path) as s:
        yield s


async def admitted(service: MeetingService, host: UserRef, *guests: str) -> list[Admission]:
    made = await service.create_room(host, [user(g) for g in guests], "Sync")
    return [
        await service.redeem(made.room.id, i.link.reveal().split("#", 1)[1]) for i in made.invites
    ]


async def test_a_token_dies_once_the_token_it_earned_is_used(
    service: MeetingService, host: UserRef
) -> None:
    (ana,) = await admitted(service, host, "ana")
    first = ana.resume_token.reveal()
    again = await service.resume(first)
    second = again.resume_token.reveal()
    assert again.participant.id == ana.participant.id
    assert second != first and second.startswith(f"{ana.participant.id}.")
    # The welcome carrying `second` may never have arrived: `first` works again, for a new one.
    third = (await service.resume(first)).resume_token.reveal()
    assert third not in (first, second)
    with pytest.raises(BadResumeToken):
        await service.resume(second)  # replaced before anyone used it
    # The device resumes with the token it was last given: whoever copied `first` is too late.
    fourth = (await service.resume(third)).resume_token.reveal()
    for dead in (first, second):
        with pytest.raises(BadResumeToken):
            await service.resume(dead)
    assert (await service.resume(fourth)).participant.id == ana.participant.id
    with pytest.raises(BadResumeToken):
        await service.resume(third)


@pytest.mark.parametrize("removal", ["kick", "reissue", "end"])
async def test_a_removal_kills_the_previous_token_too(
    removal: str, service: MeetingService, host: UserRef
) -> None:
    made = await service.create_room(host, [user("ana")], "Sync")
    hana = await service.redeem(made.room.id, credential(made.host_invite))
    ana = await service.redeem(made.room.id, credential(made.invites[0]))
    previous = ana.resume_token.reveal()
    await service.resume(previous)  # its welcome lost
    # Both tokens are live: the previous one (shown by using it) and the one it just earned.
    current = (await service.resume(previous)).resume_token.reveal()
    expected: type[ConclaveError] = BadResumeToken
    if removal == "kick":
        await service.kick(hana.participant.id, ana.participant.id)
    elif removal == "reissue":
        assert (await service.reissue_for(host, made.room.id, "ana")).kicked == ana.participant.id
    else:
        await service.end(host, made.room.id)
        expected = RoomEnded
    for token in (previous, current):
        with pytest.raises(expected):
            await service.resume(token)


async def test_retrying_with_the_previous_token_is_rationed_too(
    service: MeetingService, host: UserRef
) -> None:
    (ana,) = await admitted(service, host, "ana")
    previous = ana.resume_token.reveal()
    for _ in range(service.policy.resume_limit):
        await service.resume(previous)  # every welcome lost
    with pytest.raises(ResumeTooSoon):
        await service.resume(previous)


async def test_a_loop_of_resumes_is_refused_after_the_limit(
    service: MeetingService, host: UserRef, clock: FakeClock
) -> None:
    ana, ben = await admitted(service, host, "ana", "ben")
    limit, window = service.policy.resume_limit, service.policy.resume_window
    token = ana.resume_token.reveal()
    for _ in range(limit):
        token = (await service.resume(token)).resume_token.reveal()
        clock.advance(0.2)
    with pytest.raises(ResumeTooSoon) as refusal:
        await service.resume(token)
    assert refusal.value.code == "resume_too_soon"
    assert "try again in" in str(refusal.value)
    # Refused resumes do not count, and do not spend the token; others are not affected.
    with pytest.raises(ResumeTooSoon):
        await service.resume(token)
    await service.resume(ben.resume_token.reveal())
    # Forged tokens for ana's id cannot use up her allowance either (ids are public).
    clock.advance(window)
    pid = ana.participant.id
    for _ in range(limit * 2):
        with pytest.raises(BadResumeToken):
            await service.resume(f"{pid}.{'A' * 43}")
    assert (await service.resume(token)).participant.id == pid


async def test_over_the_wire_the_old_token_is_dead_and_loops_are_refused(
    tmp_path: Path, http: aiohttp.ClientSession, stack: AsyncExitStack
) -> None:
    clock = FakeClock()
    async with serve(tmp_path, clock=clock) as server:
        meeting = await make_meeting(server, "ana")
        ana = await join(server, http, stack, meeting, "ana")
        tokens = [ana.resume_token]
        await ana.ws.close()
        for _ in range(server.app.service.policy.resume_limit):
            ws = await connect(server, http, stack)
            await ws.send_str(hello_resume(tokens[-1]))
            welcome = await receive_json(ws)
            assert welcome["type"] == "welcome", welcome
            assert welcome["participant_id"] == ana.participant_id
            assert welcome["resume_token"] not in tokens  # a new one every time
            tokens.append(welcome["resume_token"])
            await ws.close()
            clock.advance(0.5)
        # The hub answered every welcome with the new token; the old ones are all dead.
        assert await refused(server, http, stack, hello_resume(tokens[0]), "bad_resume") == (
            CLOSE_REFUSED
        )
        # One resume too many within the window: refused with its own code, token unspent.
        ws = await connect(server, http, stack)
        await ws.send_str(hello_resume(tokens[-1]))
        error, close_code = await expect_refused(ws, "resume_too_soon")
        assert close_code == CLOSE_REFUSED
        assert "try again" in error["message"]
        clock.advance(server.app.service.policy.resume_window)
        ws = await connect(server, http, stack)
        await ws.send_str(hello_resume(tokens[-1]))
        assert (await receive_json(ws))["type"] == "welcome"


async def test_over_the_wire_a_lost_welcome_does_not_cost_the_device_its_seat(
    tmp_path: Path, http: aiohttp.ClientSession, stack: AsyncExitStack
) -> None:
    async with serve(tmp_path, clock=FakeClock()) as server:
        meeting = await make_meeting(server, "ana")
        ana = await join(server, http, stack, meeting, "ana")
        token = ana.resume_token
        await ana.ws.close()
        store = server.app.store
        before = await store.find_session(ana.participant_id)
        assert before is not None

        ws = await connect(server, http, stack)
        await ws.send_str(hello_resume(token))

        async def rotated() -> bool:
            found = await store.find_session(ana.participant_id)
            return found is not None and found[1].resume_hash != before[1].resume_hash

        async with asyncio.timeout(10):
            while not await rotated():
                await asyncio.sleep(0.02)
        # The hub has handed out a new token; the connection drops before the device reads it.
        await ws.close()

        ws = await connect(server, http, stack)
        await ws.send_str(hello_resume(token))
        welcome = await receive_json(ws)
        assert welcome["type"] == "welcome", welcome
        assert welcome["participant_id"] == ana.participant_id
        given = welcome["resume_token"]
        assert given != token
        await ws.close()
        # The device comes back with what it was given; from then on the old token is dead.
        ws = await connect(server, http, stack)
        await ws.send_str(hello_resume(given))
        assert (await receive_json(ws))["type"] == "welcome"
        assert await refused(server, http, stack, hello_resume(token), "bad_resume") == (
            CLOSE_REFUSED
        )
