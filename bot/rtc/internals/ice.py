"""aioice's host candidates: which addresses (``restrict_host_addresses``) and which ports
(``bind_ports``). Both are process-wide, as aioice reads them from module globals."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import random
import socket
from collections.abc import Sequence
from typing import Any, Final

import aioice
import aioice.ice
import aioice.turn
import aiortc.rtcicetransport
from aioice.candidate import Candidate, candidate_foundation, candidate_priority

from bot.errors import ConclaveError

log = logging.getLogger(__name__)

_original_get_host_addresses: Final = aioice.ice.get_host_addresses
# Where aiortc looks up the Connection class it makes (not in the module's declared exports).
_aiortc_ice: Final[Any] = aiortc.rtcicetransport


class PortsExhausted(ConclaveError):
    code = "ports_exhausted"

    def __init__(self, address: str, ports: range) -> None:
        super().__init__(
            f"Every UDP port from {ports.start} to {ports.stop - 1} (relay.udp_port_range) is "
            f"in use on {address}: widen the range (each participant takes one port per host "
            "address)."
        )


def restrict_host_addresses(addresses: Sequence[str]) -> None:
    """Offer exactly these addresses as ICE host candidates (empty: aioice's own choice).

    aioice gathers host candidates from every interface except loopback, and has no setting
    for it; ``Connection.gather_candidates`` looks up the module global
    ``aioice.ice.get_host_addresses`` on each call, so replacing it is process-wide. Tests and
    benches use ``["127.0.0.1"]`` so media never leaves the machine.
    """
    chosen = tuple(addresses)
    if not chosen:
        aioice.ice.get_host_addresses = _original_get_host_addresses
        return

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = get_host_addresses


def bind_ports(ports: range | None) -> None:
    """Bind every ICE host socket to a UDP port in ``ports`` (None: any the system gives).

    aioice binds each host socket to port 0 in ``Connection.get_component_candidates``, with no
    setting for it, and aiortc makes each ``Connection`` from its module global
    ``aiortc.rtcicetransport.Connection``. This puts a subclass there, process-wide, that binds
    the host sockets itself, in ``ports``, and adds them to the connection's ``_protocols`` as
    the stock method does; the stock method still gathers the TURN candidates. When no port of
    ``ports`` is free, gathering (so ``setLocalDescription``) raises ``PortsExhausted``.
    """
    _aiortc_ice.Connection = aioice.Connection if ports is None else _ranged(ports)


def _ranged(ports: range) -> type[aioice.Connection]:
    class RangedConnection(aioice.Connection):
        async def get_component_candidates(
            self,
            component: int,
            addresses: list[str],
            timeout: int = 5,  # noqa: ASYNC109 - the stock method's signature
        ) -> list[Candidate]:
            hosts: list[Any] = []
            try:
                for address in addresses:
                    protocol = await _bind_host(self, component, address, ports)
                    if protocol is not None:
                        hosts.append(protocol)
            except PortsExhausted:
                for protocol in hosts:
                    protocol.transport.close()
                raise
            self._protocols.extend(hosts)
            reflexive = [
                _reflexive(p, self.stun_server, timeout)
                for p in hosts
                if self.stun_server and ipaddress.ip_address(p.local_candidate.host).version == 4
            ]
            stock = super().get_component_candidates(component, [], timeout)  # TURN only
            relayed = asyncio.ensure_future(stock)
            found = await asyncio.gather(*reflexive)
            hosted = [p.local_candidate for p in hosts]
            return hosted + [c for c in found if c is not None] + await relayed

    return RangedConnection


async def _bind_host(connection: Any, component: int, address: str, ports: range) -> Any | None:
    """A StunProtocol on ``address`` and a free port of ``ports`` with its host candidate; None
    if the address cannot be bound at all (aioice skips it too)."""
    loop = asyncio.get_running_loop()
    start = random.randrange(len(ports))  # noqa: S311 - spreads concurrent binds, not a secret
    for i in range(len(ports)):
        try:
            transport, protocol = await loop.create_datagram_endpoint(
                lambda: aioice.ice.StunProtocol(connection),
                local_addr=(address, ports[(start + i) % len(ports)]),
            )
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                continue
            log.info("could not bind %s: %s", address, exc)
            return None
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, aioice.turn.UDP_SOCKET_BUFFER_SIZE)
        host, port = transport.get_extra_info("sockname")[:2]
        protocol.local_candidate = Candidate(
            foundation=candidate_foundation("host", "udp", host),
            component=component,
            transport="udp",
            priority=candidate_priority(component, "host"),
            host=host,
            port=port,
            type="host",
        )
        return protocol
    log.error("no free UDP port in %d-%d on %s", ports.start, ports.stop - 1, address)
    raise PortsExhausted(address, ports)


async def _reflexive(protocol: Any, server: tuple[str, int], within: int) -> Candidate | None:
    try:
        found, _ = await asyncio.wait_for(
            aioice.ice.server_reflexive_candidate(protocol, server), within
        )
    except Exception:  # as the stock method: no answer, no candidate
        return None
    return found


def missing() -> list[str]:
    """What the hooks above need and this aioice lacks."""
    gaps = []
    if not callable(getattr(aioice.ice, "get_host_addresses", None)):
        gaps.append("aioice.ice.get_host_addresses")
    for name in ("StunProtocol", "server_reflexive_candidate"):
        if not callable(getattr(aioice.ice, name, None)):
            gaps.append(f"aioice.ice.{name}")
    if not issubclass(_aiortc_ice.Connection, aioice.Connection):
        gaps.append("aiortc.rtcicetransport.Connection")
    if not isinstance(getattr(aioice.Connection(True), "_protocols", None), list):
        gaps.append("aioice Connection._protocols")
    return gaps
