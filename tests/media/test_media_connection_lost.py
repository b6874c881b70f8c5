"""One participant's media connection dies while its signaling stays up, and its media comes
back by itself: the relay worker notices the dead connection, the core tells that client
``media_lost``, and the client publishes again; the other participant decodes it again.

The cut is silent, as a NAT dropping its mapping or a stalled machine would make it: the
client's ICE transport is stopped under it (its sockets close, no DTLS close is sent, nothing
goes over signaling), so the worker learns of it only when ICE consent (RFC 7675) expires.
aioice checks consent every 5 s and gives up after 6 failures; the test runs the worker in this
process with a check a second and 3 failures, so it notices in seconds instead of 30.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import aioice.ice
import pytest

from bot.client.session import ClientSession, MediaOptions
from bot.config import RelaySettings
from bot.core.links import parse_link
from bot.relay.worker import run_worker
from bot.rtc.internals import restrict_host_addresses
from bot.secret import Secret
from tests.support.clients import decrypted, until
from tests.support.fakes import user
from tests.support.server import serve

pytestmark = pytest.mark.slow

LOOPBACK = ("127.0.0.1",)


async def test_media_comes_back_after_a_participants_connection_is_cut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(aioice.ice, "CONSENT_INTERVAL", 1)
    monkeypatch.setattr(aioice.ice, "CONSENT_FAILURES", 3)
    secret = secrets.token_urlsafe(32)
    env = {"CONCLAVE_RELAY_SECRET": secret, "CONCLAVE_RELAY_HOST_ADDRESSES": "127.0.0.1"}
    stop = asyncio.Event()
    try:
        async with serve(tmp_path, env=env) as server:
            settings = RelaySettings(secret=Secret(secret), host_addresses=LOOPBACK)
            worker = asyncio.ensure_future(run_worker(server.base_url, "w1", settings, stop=stop))
            pool = server.app.relay_pool
            assert pool is not None and await pool.wait_for_workers(1, within=20)
            made = await server.app.service.create_room(user("hana"), [user("ana")], "Sync")
            said: dict[str, list[str]] = {"hana": [], "ana": []}
            options = MediaOptions(video="none", audio="tone")
            links = {"hana": made.host_invite.link, "ana": made.invites[0].link}
            clients = {
                who: ClientSession(parse_link(link.reveal()), said[who].append, options)
                for who, link in links.items()
            }
            tasks = [asyncio.ensure_future(c.run(None)) for c in clients.values()]
            try:
                await until(lambda: all(decrypted(c) > 50 for c in clients.values()), "audio")
                ana, hana = clients["ana"], clients["hana"]
                cut = ana.media
                assert cut is not None
                (transceiver, *_) = cut._pc.getTransceivers()
                await transceiver.sender.transport.transport.stop()
                await until(
                    lambda: any("media connection was lost" in line for line in said["ana"]),
                    "ana to hear her media connection was lost",
                )
                assert said["hana"] == [line for line in said["hana"] if "lost" not in line]
                before = {who: decrypted(c) for who, c in clients.items()}
                await until(
                    lambda: all(decrypted(c) > before[w] + 50 for w, c in clients.items()),
                    "hana to decrypt ana again, and ana hana",
                )
                assert ana.media is not None and ana.media is not cut
                assert not ana.ended and not hana.ended
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                stop.set()
                await asyncio.wait_for(worker, 20)
    finally:
        restrict_host_addresses([])
