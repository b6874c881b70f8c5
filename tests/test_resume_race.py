"""A kick or an end that lands while a resume is still being checked, against the real hub.

The service here is the real one, except that its resume holds the (at that moment correct)
answer until the test lets it go, as a slow database would. Meanwhile the host kicks the
participant or ends the meeting. The resume must then be turned away, not installed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from bot.config import SignalingSettings
from bot.core.models import Admission
from bot.core.policy import MeetingPolicy
from bot.core.service import MeetingService
from bot.signaling.hub import CLOSE_REFUSED, Hub
from bot.store.sqlite import SqliteStore
from bot.web.app import create_app, make_runner
from tests.support.fakes import FakeClock, loopback_socket, user
from tests.support.meeting import credential, roster_ids
from tests.support.server import (
    expect_closed,
    expect_refused,
    hello_invite,
    hello_resume,
    receive_json,
    receive_until,
)

BOUND = 10.0


class HeldResume(MeetingService):
    """The real service; ``resume`` waits with its verdict until ``release`` is set."""

    def __init__(self, store: SqliteStore, base_url: str) -> None:
        super().__init__(store, MeetingPolicy(), base_url, FakeClock())
        self.checked = asyncio.Event()
        self.release = asyncio.Event()

    async def resume(self, token: str) -> Admission:
        admission = await super().resume(token)
        self.checked.set()
        await self.release.wait()
        return admission


@dataclass
class Site:
    service: HeldResume
    hub: Hub
    ws_url: str


@asynccontextmanager
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    # Links need the server's URL before the server exists: bind first, hand the socket over.
    listener = loopback_socket()
    base_url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    store = SqliteStore(tmp_path / "c.db")
    await store.open()
    service = HeldResume(store, base_url)
    hub = Hub(service, SignalingSettings(hello_timeout=int(BOUND)))
    service.events.subscribe(hub.on_event)  # as the composition root does
    runner = make_runner(create_app(hub, base_url), idle_timeout=30)
    await runner.setup()
    await web.SockSite(runner, listener).start()
    try:
        yield Site(service, hub, f"{base_url}/ws")
    finally:
        service.release.set()
        await hub.close_all()
        await runner.cleanup()
        await store.close()


async def enter(
    http: aiohttp.ClientSession, stack: AsyncExitStack, url: str, first: str
) -> tuple[aiohttp.ClientWebSocketResponse, dict[str, object]]:
    ws = await stack.enter_async_context(http.ws_connect(url))
    await ws.send_str(first)
    return ws, await receive_json(ws)


@pytest.mark.parametrize("meanwhile", ["kick", "end"])
async def test_a_resume_in_flight_is_turned_away_by_a_kick_or_an_end(
    meanwhile: str, tmp_path: Path, http: aiohttp.ClientSession, stack: AsyncExitStack
) -> None:
    async with site(tmp_path) as s:
        host_user = user("hana")
        made = await s.service.create_room(host_user, [user("mal")], "Sync")
        room_id = made.room.id
        host, host_welcome = await enter(
            http, stack, s.ws_url, hello_invite(room_id, credential(made.host_invite))
        )
        mal, mal_welcome = await enter(
            http, stack, s.ws_url, hello_invite(room_id, credential(made.invites[0]))
        )
        mal_id, token = mal_welcome["participant_id"], mal_welcome["resume_token"]
        assert isinstance(token, str)
        host_id = host_welcome["participant_id"]
        await receive_until(host, "roster", lambda m: roster_ids(m) == [host_id, mal_id])
        await mal.close()  # mal's connection drops; it will resume
        await receive_until(host, "roster", lambda m: roster_ids(m) == [host_id])

        again = await stack.enter_async_context(http.ws_connect(s.ws_url))
        await again.send_str(hello_resume(token))
        # The service has found mal's session active; before the hub installs it...
        await asyncio.wait_for(s.service.checked.wait(), BOUND)
        if meanwhile == "kick":
            await s.service.kick(str(host_id), str(mal_id))
        else:
            await s.service.end(host_user, room_id)
        s.service.release.set()

        _, close_code = await expect_refused(
            again, "bad_resume" if meanwhile == "kick" else "room_ended", timeout=BOUND
        )
        assert close_code == CLOSE_REFUSED
        assert mal_id not in [e["participant_id"] for e in s.hub.roster(room_id)]
        if meanwhile == "kick":
            # The host never sees mal come back.
            await host.send_str('{"type": "ping"}')
            seen = []
            while (message := await receive_json(host, BOUND))["type"] != "pong":
                seen.append(message)
            assert not [m for m in seen if m["type"] == "roster" and mal_id in roster_ids(m)]
        else:
            await receive_until(host, "ended", timeout=BOUND)
            await expect_closed(host, BOUND)
