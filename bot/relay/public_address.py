"""The relay's public address behind 1:1 NAT, named in the session descriptions it sends.

On a cloud machine the public IP is on no interface: the provider's NAT maps it, port for port,
to the machine's private address, so ICE gathers only the private one. As Jitsi's NAT harvester
does, each host candidate of the relay's descriptions gets a twin at ``relay.public_address``
with the same port, as a server-reflexive candidate whose base is the host one. A client that
reaches the private address (on the same network) still can; one on the internet sends its
checks to the public address, and the NAT delivers them to the socket that gathered the host
candidate. Only the text of the description changes: aiortc's ICE agent answers checks on its
host sockets, wherever they were addressed.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from typing import Final

_HOST_CANDIDATE: Final = re.compile(
    r"a=candidate:\S+ (?P<component>\d+) (?P<transport>\S+) \d+ (?P<host>\S+) (?P<port>\d+) "
    r"typ host(?: .*)?"
)
# RFC 8445 section 5.1.2.1: type preference 100 for server-reflexive, the local preference
# aioice gives every candidate.
_SRFLX_PREFERENCE: Final = 100
_LOCAL_PREFERENCE: Final = 65535


def advertise(sdp: str, public_address: str) -> str:
    """``sdp`` with a server-reflexive twin at ``public_address`` after each host candidate of
    the same IP version (and not already at it)."""
    if not public_address:
        return sdp
    public = ipaddress.ip_address(public_address)
    lines = []
    for line in sdp.splitlines(keepends=True):
        lines.append(line)
        found = _HOST_CANDIDATE.fullmatch(line.rstrip("\r\n"))
        if found is None:
            continue
        try:
            host = ipaddress.ip_address(found["host"])
        except ValueError:
            continue  # an mDNS name: not an address the NAT maps
        if host == public or host.version != public.version:
            continue
        ending = line[len(line.rstrip("\r\n")) :]
        lines.append(_twin(found, public_address) + ending)
    return "".join(lines)


def _twin(host: re.Match[str], public_address: str) -> str:
    component = int(host["component"])
    # As RFC 8445 section 5.1.1.3 asks: the same for candidates of one type, base and server.
    foundation = hashlib.md5(  # not a secret: a label, as aioice computes its own
        f"srflx|{host['transport']}|{host['host']}".encode(), usedforsecurity=False
    ).hexdigest()
    priority = (_SRFLX_PREFERENCE << 24) + (_LOCAL_PREFERENCE << 8) + (256 - component)
    return (
        f"a=candidate:{foundation} {component} {host['transport']} {priority} {public_address} "
        f"{host['port']} typ srflx raddr {host['host']} rport {host['port']}"
    )
