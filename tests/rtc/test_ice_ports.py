"""``internals.bind_ports``: every ICE host socket binds a UDP port in the range, the
connection works through those sockets, and a full range is a ``PortsExhausted`` that says so.

Real peer connections on loopback; the hook is process-wide, so each test puts it back.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import pytest
from aiortc import RTCPeerConnection

from bot.rtc import internals
from bot.rtc.internals import PortsExhausted
from bot.rtc.peer import make_peer_connection
from tests.support.ports import busy, free_udp_ports

HOST = re.compile(r"a=candidate:\S+ \d+ udp \d+ (\S+) (\d+) typ host")


@pytest.fixture(autouse=True)
def loopback_only() -> Iterator[None]:
    internals.restrict_host_addresses(["127.0.0.1"])
    yield
    internals.restrict_host_addresses([])
    internals.bind_ports(None)


def host_ports(pc: RTCPeerConnection) -> list[int]:
    return [int(port) for _, port in HOST.findall(pc.localDescription.sdp)]


async def test_every_host_socket_binds_in_the_range_and_carries_the_connection() -> None:
    ports = free_udp_ports(4)
    internals.bind_ports(ports)
    a, b = make_peer_connection(), make_peer_connection()
    try:
        channel = a.createDataChannel("check")
        got: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        b.on("datachannel", lambda ch: ch.on("message", got.set_result))
        channel.on("open", lambda: channel.send("through the ranged sockets"))
        await a.setLocalDescription(await a.createOffer())
        await b.setRemoteDescription(a.localDescription)
        await b.setLocalDescription(await b.createAnswer())
        await a.setRemoteDescription(b.localDescription)
        used = host_ports(a) + host_ports(b)
        assert len(used) == 2 and all(port in ports for port in used), (used, ports)
        assert used[0] != used[1]
        assert await asyncio.wait_for(got, 10) == "through the ranged sockets"
    finally:
        await a.close()
        await b.close()
    internals.bind_ports(None)
    free = make_peer_connection()  # back to any port the system gives
    try:
        free.addTransceiver("audio", direction="recvonly")
        await free.setLocalDescription(await free.createOffer())
        assert host_ports(free) and not set(host_ports(free)) & set(ports)
    finally:
        await free.close()


async def test_a_full_range_is_a_clear_error() -> None:
    ports = free_udp_ports(2)
    internals.bind_ports(ports)
    with busy(ports) as held:
        assert held == list(ports)
        pc = make_peer_connection()
        try:
            pc.addTransceiver("audio", direction="recvonly")
            with pytest.raises(PortsExhausted) as refused:
                await pc.setLocalDescription(await pc.createOffer())
        finally:
            await pc.close()
    assert refused.value.code == "ports_exhausted"
    assert str(refused.value) == (
        f"Every UDP port from {ports[0]} to {ports[-1]} (relay.udp_port_range) is in use on "
        "127.0.0.1: widen the range (each participant takes one port per host address)."
    )
