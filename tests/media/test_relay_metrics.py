"""``/metrics`` during a real meeting: the relay worker's forwarded packets and bytes reach the
scrape through the control channel, and still nothing in it names the room or its people.

Two real clients in this process, the local relay worker process `conclave run` starts, the
real core in this process; loopback only.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import pytest

from bot.client.session import ClientSession, MediaOptions
from bot.core.links import parse_link
from bot.rtc.internals import restrict_host_addresses
from tests.support.clients import decrypted, until
from tests.support.fakes import user
from tests.support.server import serve
from tests.test_metrics import TOKEN, parse, scrape, value

pytestmark = pytest.mark.slow

WAIT = 30.0
TOPIC = "Zeppelin procurement"


async def test_forwarded_media_is_counted_per_worker(tmp_path: Path) -> None:
    env = {
        "CONCLAVE_METRICS_TOKEN": TOKEN,
        "CONCLAVE_RELAY_WORKERS": "1",
        "CONCLAVE_RELAY_HOST_ADDRESSES": "127.0.0.1",
    }
    async with AsyncExitStack() as stack:
        # Process-wide: undone last, whether the test passes, fails or is cancelled.
        restrict_host_addresses(["127.0.0.1"])
        stack.callback(restrict_host_addresses, [])
        server = await stack.enter_async_context(serve(tmp_path, env=env))
        http = await stack.enter_async_context(aiohttp.ClientSession())
        made = await server.app.service.create_room(user("hortensia"), [user("anastasia")], TOPIC)
        links = {"hortensia": made.host_invite.link, "anastasia": made.invites[0].link}
        options = MediaOptions(video="testsrc", audio="tone", activation_delay=0.3)
        clients = {
            who: ClientSession(parse_link(link.reveal()), lambda line: None, options)
            for who, link in links.items()
        }
        tasks = [asyncio.ensure_future(c.run(None)) for c in clients.values()]

        async def stop_clients() -> None:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        stack.push_async_callback(stop_clients)
        await until(lambda: all(decrypted(c) > 30 for c in clients.values()), "media flowing", WAIT)

        status, text = await scrape(http, f"{server.base_url}/metrics")
        assert status == 200
        samples = parse(text)
        worker = {"worker": "local-1"}
        assert value(samples, "conclave_relay_workers_ready") == 1
        assert value(samples, "conclave_relay_worker_rooms", **worker) == 1
        assert value(samples, "conclave_relay_worker_participants", **worker) == 2
        forwarded = value(samples, "conclave_relay_forwarded_packets_total", **worker)
        octets = value(samples, "conclave_relay_forwarded_bytes_total", **worker)
        received = value(samples, "conclave_relay_received_packets_total", **worker)
        assert forwarded is not None and octets is not None and received is not None
        assert received > 0 and forwarded > 30
        # Each forwarded packet carries a payload: an SFrame header and tag at least.
        assert octets > 10 * forwarded
        for reason in ("foreign", "rate_limited", "late"):
            dropped = {"reason": reason, **worker}
            assert value(samples, "conclave_relay_dropped_packets_total", **dropped) == 0
        memory = value(samples, "conclave_relay_worker_resident_memory_bytes", **worker)
        assert memory is not None and memory > 10 * 2**20

        # Counters only grow while media flows.
        await until(lambda: all(decrypted(c) > 60 for c in clients.values()), "more media", WAIT)
        later = parse((await scrape(http, f"{server.base_url}/metrics"))[1])
        again = value(later, "conclave_relay_forwarded_packets_total", **worker)
        assert again is not None and again > forwarded

        ids = [made.room.id, made.host_invite.invite.id, made.invites[0].invite.id]
        ids += [c.welcome.participant_id for c in clients.values() if c.welcome is not None]
        assert len(ids) == 5
        lowered = text.lower()
        for forbidden in [*ids, "hortensia", "anastasia", *TOPIC.lower().split()]:
            assert forbidden.lower() not in lowered, forbidden
