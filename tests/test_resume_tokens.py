"""Resume tokens work once and resumes are rationed: a copied token dies when its device next
rejoins, and a client resuming in a loop (to churn the roster) is refused."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import pytest

from bot.core.models import Admission, UserRef
from bot.core.service import MeetingService
from bot.errors import BadResumeToken, ResumeTooSoon
from bot.signaling.hub import CLOSE_REFUSED
from tests.support.fakes import FakeClock, user
from tests.support.meeting import connect, join, make_meeting, refused
from tests.support.server import expect_refused, hello_resume, receive_json, serve


async def admitted(service: MeetingService, host: UserRef, *guests: str) -> list[Admission]:
    made = await service.create_room(host, [user(g) for g in guests], "Sync")
    return [
        await service.redeem(made.room.id, i.link.reveal().split("#", 1)[1]) for i in made.invites
    ]


async def test_each_resume_hands_out_a_new_token_and_kills_the_old(
    service: MeetingService, host: UserRef
) -> None:
    (ana,) = await admitted(service, host, "ana")
    first = ana.resume_token.reveal()
    again = await service.resume(first)
    second = again.resume_token.reveal()
    assert again.participant.id == ana.participant.id
    assert second != first and second.startswith(f"{ana.participant.id}.")
    # The thief who copied the first token is too late: the device already used it.
    with pytest.raises(BadResumeToken):
        await service.resume(first)
    third = (await service.resume(second)).resume_token.reveal()
    with pytest.raises(BadResumeToken):
        await service.resume(second)
    assert (await service.resume(third)).participant.id == ana.participant.id


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
