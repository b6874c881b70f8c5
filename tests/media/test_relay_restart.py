"""A relay worker that dies mid-meeting is restarted, and the meeting's media comes back by
itself: the hub tells each client, which negotiates again with a live worker."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from bot.client.session import ClientSession, MediaOptions
from bot.core.links import parse_link
from bot.rtc.internals import restrict_host_addresses
from tests.support.clients import decrypted, until
from tests.support.fakes import user
from tests.support.server import serve

pytestmark = pytest.mark.slow


async def test_media_recovers_after_the_relay_worker_dies(tmp_path: Path) -> None:
    restrict_host_addresses(["127.0.0.1"])
    env = {"CONCLAVE_RELAY_WORKERS": "1", "CONCLAVE_RELAY_HOST_ADDRESSES": "127.0.0.1"}
    try:
        async with serve(tmp_path, env=env) as server:
            made = await server.app.service.create_room(user("hana"), [user("ana")], "Sync")
            said: dict[str, list[str]] = {"hana": [], "ana": []}
            options = MediaOptions(video="none", audio="tone")
            clients = {
                "hana": ClientSession(
                    parse_link(made.host_invite.link.reveal()), said["hana"].append, options
                ),
                "ana": ClientSession(
                    parse_link(made.invites[0].link.reveal()), said["ana"].append, options
                ),
            }
            tasks = [asyncio.ensure_future(c.run(None)) for c in clients.values()]
            try:
                await until(lambda: all(decrypted(c) > 50 for c in clients.values()), "audio")
                workers = server.app.local_workers
                assert workers is not None
                (pid,) = workers.pids()
                os.kill(pid, signal.SIGKILL)
                await until(
                    lambda: all(
                        any("media relay restarted" in line for line in lines)
                        for lines in said.values()
                    ),
                    "clients to hear the relay went away",
                )
                before = {w: decrypted(c) for w, c in clients.items()}
                await until(
                    lambda: all(decrypted(c) > before[w] + 50 for w, c in clients.items()),
                    "audio to flow again through the restarted worker",
                )
                assert workers.restarts >= 1
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        restrict_host_addresses([])
