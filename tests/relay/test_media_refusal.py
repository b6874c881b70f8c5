"""An offer the relay will not take reaches its sender as a sentence, through the real hub.

The application runs on loopback with a real relay worker (in this process) dialled into its
pool; the client is a signaling websocket publishing SDP from a real aiortc peer connection.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import pytest

from bot.config import RelaySettings
from bot.relay.worker import run_worker
from bot.rtc.peer import make_peer_connection, prefer_codec
from bot.secret import Secret
from tests.relay.relay_fakes import LOOPBACK
from tests.support.meeting import join, make_meeting
from tests.support.server import Running, receive_until, serve

RELAY_SECRET = Secret(secrets.token_urlsafe(32))
RELAY = RelaySettings(secret=RELAY_SECRET, host_addresses=LOOPBACK)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Running]:
    env = {"CONCLAVE_RELAY_SECRET": RELAY_SECRET.reveal()}
    async with serve(tmp_path, env=env) as running:
        stop = asyncio.Event()
        worker = asyncio.create_task(run_worker(running.base_url, "w1", RELAY, stop=stop))
        try:
            pool = running.app.relay_pool
            assert pool is not None and await pool.wait_for_workers(1, within=20)
            yield running
        finally:
            stop.set()
            await asyncio.wait_for(worker, 20)


async def offer(audio: int, video: int) -> dict[str, str]:
    pc = make_peer_connection()
    try:
        for kind, count in (("audio", audio), ("video", video)):
            for _ in range(count):
                prefer_codec(pc.addTransceiver(kind, direction="sendonly"))
        await pc.setLocalDescription(await pc.createOffer())
        return {"type": "offer", "sdp": pc.localDescription.sdp}
    finally:
        await pc.close()


async def test_a_refused_offer_is_a_warning_the_client_can_read(
    server: Running, http: aiohttp.ClientSession, stack: AsyncExitStack
) -> None:
    meeting = await make_meeting(server, "ana")
    ana = await join(server, http, stack, meeting, "ana")

    await ana.send("publish", offer=await offer(audio=1, video=3))
    warning = await receive_until(ana.ws, "warning")
    assert warning["code"] == "media_refused", warning
    assert warning["message"] == (
        "The offer has 3 video media lines; the relay takes at most one audio and one video "
        "line per participant."
    )

    # Refused, not spent: the same connection can publish an offer the relay takes.
    await ana.send("publish", offer=await offer(audio=1, video=1))
    answer = await receive_until(ana.ws, "answer")
    assert answer["answer"]["type"] == "answer"
