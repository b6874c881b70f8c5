"""A relay worker configured for a firewall and 1:1 NAT, as ``conclave run`` starts it (a local
worker process that gets the [relay] settings through its environment): its candidates use only
ports of ``relay.udp_port_range`` and name ``relay.public_address`` beside its own address,
clients connect through those ports, and a participant who finds the range full is told why.

The clients are real aiortc peer connections in this process, over the real signaling
websocket. All on loopback: the "public" address is 127.0.0.9, where nothing listens.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from bot.rtc import internals
from bot.rtc.peer import make_peer_connection, prefer_codec
from tests.support.meeting import Peer, join, make_meeting
from tests.support.ports import free_udp_ports
from tests.support.server import Running, serve

pytestmark = pytest.mark.slow

PUBLIC = "127.0.0.9"
CANDIDATE = re.compile(
    r"a=candidate:\S+ 1 udp \d+ (?P<host>\S+) (?P<port>\d+) typ (?P<kind>\w+)"
    r"(?: raddr (?P<raddr>\S+) rport (?P<rport>\d+))?"
)
WAIT = 20.0


def relay_candidates(sdp: str) -> list[dict[str, str | None]]:
    return [m.groupdict() for m in CANDIDATE.finditer(sdp)]


def assert_ranged_and_public(sdp: str, ports: range) -> int:
    """The relay's candidates: one host candidate on a port of ``ports``, and its twin at the
    public address with the same port. The port."""
    found = relay_candidates(sdp)
    hosts = [c for c in found if c["kind"] == "host"]
    assert len(hosts) == 1 and hosts[0]["host"] == "127.0.0.1", found
    port = int(str(hosts[0]["port"]))
    assert port in ports, (port, ports)
    assert [c for c in found if c["kind"] == "srflx"] == [
        {
            "host": PUBLIC,
            "port": str(port),
            "kind": "srflx",
            "raddr": "127.0.0.1",
            "rport": str(port),
        }
    ], found
    return port


@pytest.fixture
async def ranged(tmp_path: Path) -> AsyncIterator[tuple[Running, range]]:
    ports = free_udp_ports(2)
    env = {
        "CONCLAVE_RELAY_WORKERS": "1",
        "CONCLAVE_RELAY_HOST_ADDRESSES": "127.0.0.1",
        "CONCLAVE_RELAY_UDP_PORT_RANGE": f"{ports.start}-{ports.stop - 1}",
        "CONCLAVE_RELAY_PUBLIC_ADDRESS": PUBLIC,
    }
    internals.restrict_host_addresses(["127.0.0.1"])  # this process's clients
    try:
        async with serve(tmp_path, env=env) as running:
            pool = running.app.relay_pool
            assert pool is not None and await pool.wait_for_workers(1, within=WAIT)
            yield running, ports
    finally:
        internals.restrict_host_addresses([])


async def publish(peer: Peer, stack: AsyncExitStack) -> RTCPeerConnection:
    """Offer to receive (as a client with no camera or microphone does); the connection."""
    pc = make_peer_connection()
    stack.push_async_callback(pc.close)
    prefer_codec(pc.addTransceiver("audio", direction="recvonly"))
    await pc.setLocalDescription(await pc.createOffer())
    offer = {"type": "offer", "sdp": pc.localDescription.sdp}
    await peer.send("publish", offer=offer)
    return pc


async def connected(pc: RTCPeerConnection) -> None:
    async def state() -> None:
        while pc.connectionState != "connected":
            assert pc.connectionState not in ("failed", "closed"), pc.connectionState
            await asyncio.sleep(0.05)

    await asyncio.wait_for(state(), WAIT)


async def test_the_relay_binds_in_its_range_names_its_public_address_and_says_when_full(
    ranged: tuple[Running, range], http: aiohttp.ClientSession, stack: AsyncExitStack
) -> None:
    server, ports = ranged
    meeting = await make_meeting(server, "ana", "ben")
    used = []
    for who in ("hana", "ana"):
        peer = await join(server, http, stack, meeting, who)
        pc = await publish(peer, stack)
        answer = (await peer.until("answer"))["answer"]
        used.append(assert_ranged_and_public(answer["sdp"], ports))
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        await connected(pc)  # through the ranged socket: ICE, then DTLS
        # The relay's own offers name the public address too.
        offer = await peer.until("offer")
        assert assert_ranged_and_public(offer["offer"]["sdp"], ports) == used[-1]
        await pc.setRemoteDescription(RTCSessionDescription(offer["offer"]["sdp"], "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        reply = {"type": "answer", "sdp": pc.localDescription.sdp}
        await peer.send("answer", negotiation=offer["negotiation"], answer=reply)
    assert sorted(used) == list(ports)  # one port each, and the range is now full

    ben = await join(server, http, stack, meeting, "ben")
    await publish(ben, stack)
    warning = await ben.until("warning")
    assert warning["code"] == "relay_unavailable"
    assert (
        f"Every UDP port from {ports.start} to {ports.stop - 1} (relay.udp_port_range) is in use "
        "on 127.0.0.1: widen the range (each participant takes one port per host address)."
    ) in warning["message"]
