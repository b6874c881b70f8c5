"""The ``[relay]`` settings section: the media relay workers, and how media crosses NAT and
firewalls (ICE servers, TURN credentials, host and public addresses, the UDP port range)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from bot.config_fields import Section, between, secret_of_length, spec
from bot.errors import ConfigError
from bot.secret import Secret

MIN_TURN_SECRET = 16
# Below it are the system's well-known and registered services; media has no business there.
MIN_UDP_PORT = 1024


def _ice_urls(v: tuple[str, ...]) -> str | None:
    for url in v:
        if not url.startswith(("stun:", "turn:", "turns:")):
            return f"{url!r} is not a stun:, turn: or turns: URL"
    return None


def _ips(v: tuple[str, ...]) -> str | None:
    for ip in v:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            return f"{ip!r} is not an IP address"
    return None


def _public_address(v: str) -> str | None:
    if not v:
        return None
    try:
        ip = ipaddress.ip_address(v)
    except ValueError:
        return "must be an IP address, e.g. 203.0.113.7 (not a host name)"
    if ip.is_unspecified or ip.is_multicast:
        return "must be the one address clients reach the relay at, not a wildcard or multicast"
    return None


def port_range(v: str) -> range | None:
    """``"LOW-HIGH"`` as the ports it holds (HIGH included); None for ""; ValueError if bad."""
    if not v:
        return None
    found = re.fullmatch(r"\s*(\d{1,5})\s*-\s*(\d{1,5})\s*", v)
    if found is None:
        raise ValueError("must be LOW-HIGH, e.g. 40000-40100")
    low, high = int(found[1]), int(found[2])
    if not MIN_UDP_PORT <= low <= high <= 65535:
        raise ValueError(f"must be LOW-HIGH with {MIN_UDP_PORT} <= LOW <= HIGH <= 65535")
    return range(low, high + 1)


def _port_range(v: str) -> str | None:
    try:
        port_range(v)
    except ValueError as exc:
        return str(exc)
    return None


@dataclass(frozen=True)
class RelaySettings(Section):
    # Local relay worker processes `conclave run` starts (0: only remote `conclave relay`s).
    workers: int = spec(1, check=between(0, 64))
    # Shared secret between core and relay workers; empty: a random one per run, which is
    # enough when every worker is local.
    secret: Secret = spec(Secret(""))
    # STUN/TURN URLs for every peer connection; empty means host candidates only.
    ice_servers: tuple[str, ...] = spec((), check=_ice_urls)
    ice_username: str = spec("")
    ice_credential: Secret = spec(Secret(""))
    # Restrict ICE host candidates to these addresses (empty: every interface but loopback).
    host_addresses: tuple[str, ...] = spec((), check=_ips)
    # Behind 1:1 NAT (a cloud machine's public IP): the address the relay's candidates also
    # name, with the same ports. Empty: only the addresses of its own interfaces.
    public_address: str = spec("", check=_public_address)
    # "LOW-HIGH": every media socket of the relay binds a UDP port in it, so that one firewall
    # rule admits them all. Empty: any port the system gives.
    udp_port_range: str = spec("", check=_port_range)
    # coturn's use-auth-secret: each participant (and relay worker) gets a TURN username and
    # password made from it, valid for turn_ttl; the secret itself is never handed out. Set,
    # it replaces ice_username and ice_credential for the turn: and turns: URLs.
    turn_secret: Secret = spec(Secret(""), check=secret_of_length(MIN_TURN_SECRET))
    turn_ttl: int = spec(24 * 3600, duration=True, check=between(600, 7 * 24 * 3600))
    # SRTP and SRTCP packets a second one participant may send a relay worker; more are dropped
    # (and counted) before decryption. Real audio and video stay far below the default.
    max_packet_rate: int = spec(2000, check=between(100, 1_000_000))

    def validate(self) -> None:
        turn = any(u.startswith(("turn:", "turns:")) for u in self.ice_servers)
        if self.turn_secret and not turn:
            raise ConfigError(
                "relay.turn_secret", "is set, but relay.ice_servers has no turn: or turns: URL"
            )

    @property
    def ports(self) -> range | None:
        """The ports ``udp_port_range`` holds; None: any."""
        return port_range(self.udp_port_range)
