"""Media across NAT and firewalls, the parts short of a meeting: the relay settings, the TURN
credentials the core mints (coturn's shared-secret formula), the ``welcome`` that hands them
out, and a real coturn that accepts them and refuses expired or forged ones.

Everything runs on 127.0.0.1; coturn is Debian's ``turnserver`` (tests/support/coturn.py).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.config import RelaySettings, describe, load_settings
from bot.errors import ConfigError
from bot.ice_servers import IceServer, ice_servers_for, turn_credentials
from bot.rtc import internals
from bot.rtc.peer import make_peer_connection
from bot.secret import Secret
from tests.support.coturn import Coturn, coturn
from tests.support.meeting import join, make_meeting
from tests.support.ports import free_udp_ports
from tests.support.server import Running, hello_resume, receive_json, serve

TURN_SECRET = "correct-horse-battery-staple"
CANDIDATE = re.compile(r"a=candidate:\S+ \d+ udp \d+ (\S+) (\d+) typ (\w+)")


def relay_error(**env: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={f"CONCLAVE_RELAY_{k.upper()}": v for k, v in env.items()})
    return caught.value


# --- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["40100-40000", "80-90", "40000-70000", "40000", "a-b", "40000-40100-40200"]
)
def test_a_bad_udp_port_range_names_the_key(value: str) -> None:
    err = relay_error(udp_port_range=value)
    assert err.key == "relay.udp_port_range"
    assert "LOW-HIGH" in str(err)


@pytest.mark.parametrize("value", ["relay.example.com", "0.0.0.0", "::", "224.0.0.1"])
def test_a_public_address_must_be_one_reachable_ip(value: str) -> None:
    assert relay_error(public_address=value).key == "relay.public_address"


def test_turn_settings_are_checked_together() -> None:
    turn = "turn:turn.example.com:3478?transport=udp"
    assert relay_error(turn_secret="short", ice_servers=turn).key == "relay.turn_secret"
    err = relay_error(turn_secret=TURN_SECRET, ice_servers="stun:turn.example.com:3478")
    assert err.key == "relay.turn_secret" and "no turn: or turns: URL" in str(err)
    assert relay_error(turn_secret=TURN_SECRET, ice_servers=turn, turn_ttl="1m").key == (
        "relay.turn_ttl"
    )
    settings = load_settings(
        environ={
            "CONCLAVE_RELAY_UDP_PORT_RANGE": "40000-40100",
            "CONCLAVE_RELAY_PUBLIC_ADDRESS": "203.0.113.7",
            "CONCLAVE_RELAY_ICE_SERVERS": turn,
            "CONCLAVE_RELAY_TURN_SECRET": TURN_SECRET,
        }
    )
    relay = settings.relay
    assert relay.ports == range(40000, 40101) and relay.ports[-1] == 40100
    assert relay.public_address == "203.0.113.7"
    assert relay.turn_ttl == 24 * 3600
    assert RelaySettings().ports is None
    assert TURN_SECRET not in describe(settings)


# --- credentials ------------------------------------------------------------------------------


def test_credentials_are_coturns_shared_secret_formula() -> None:
    # The password, as openssl computes it:
    #   printf %s 1800003600:p_ana | openssl dgst -sha1 -hmac SECRET -binary | base64
    username, password = turn_credentials(Secret(TURN_SECRET), "p_ana", 1_800_003_600)
    assert username == "1800003600:p_ana"
    assert password.reveal() == "mM/HLj73veaUeAId23OpGbHrRfc="


def test_each_user_gets_its_own_expiring_pair_and_never_the_secret() -> None:
    relay = RelaySettings(
        ice_servers=("stun:turn.example.com:3478", "turn:turn.example.com:3478"),
        turn_secret=Secret(TURN_SECRET),
        turn_ttl=7200,
    )
    now = 1_800_000_000.5
    ana = ice_servers_for(relay, "p_ana", now)
    assert ana[0] == IceServer(("stun:turn.example.com:3478",))  # STUN: no credentials
    assert ana[1].urls == ("turn:turn.example.com:3478",)
    assert ana[1].username == "1800007200:p_ana"  # valid for turn_ttl from now
    ben = ice_servers_for(relay, "p_ben", now)
    later = ice_servers_for(relay, "p_ana", now + 60)
    passwords = {s[1].credential.reveal() for s in (ana, ben, later)}
    assert len(passwords) == 3
    shown = json.dumps([s.to_json() for s in ana + ben + later])
    assert TURN_SECRET not in shown
    # Without the secret, everyone gets the fixed credentials.
    fixed = RelaySettings(
        ice_servers=("turn:turn.example.com:3478",),
        ice_username="everyone",
        ice_credential=Secret("same-for-all"),
    )
    assert [s.to_json() for s in ice_servers_for(fixed, "p_ana", now)] == [
        {
            "urls": ["turn:turn.example.com:3478"],
            "username": "everyone",
            "credential": "same-for-all",
        }
    ]
    assert ice_servers_for(RelaySettings(), "p_ana", now) == ()


# --- the welcome --------------------------------------------------------------------------------

TURN_ENV = {
    "CONCLAVE_RELAY_ICE_SERVERS": "stun:127.0.0.1:3478,turn:127.0.0.1:3478?transport=udp",
    "CONCLAVE_RELAY_TURN_SECRET": TURN_SECRET,
    "CONCLAVE_RELAY_TURN_TTL": "1h",
}


@pytest.fixture
async def turn_server(tmp_path: Path) -> AsyncIterator[Running]:
    async with serve(tmp_path, env=TURN_ENV) as running:
        yield running


async def test_every_welcome_hands_out_credentials_of_its_own(
    turn_server: Running, http: aiohttp.ClientSession, stack: AsyncExitStack
) -> None:
    meeting = await make_meeting(turn_server, "ana")
    now = int(turn_server.clock.now())
    hana = await join(turn_server, http, stack, meeting, "hana")
    ana = await join(turn_server, http, stack, meeting, "ana")
    given = {}
    for peer in (hana, ana):
        stun, turn = peer.welcome["ice_servers"]
        assert stun == {"urls": ["stun:127.0.0.1:3478"]}
        assert turn["urls"] == ["turn:127.0.0.1:3478?transport=udp"]
        assert turn["username"] == f"{now + 3600}:{peer.participant_id}"
        _, expected = turn_credentials(Secret(TURN_SECRET), peer.participant_id, now + 3600)
        assert turn["credential"] == expected.reveal()
        assert TURN_SECRET not in json.dumps(peer.welcome)
        given[peer.participant_id] = turn["credential"]
    assert len(set(given.values())) == 2

    # A resume later gets fresh ones, valid from then on.
    turn_server.clock.advance(600)
    await ana.ws.close()
    ws = await stack.enter_async_context(http.ws_connect(turn_server.ws_url))
    await ws.send_str(hello_resume(ana.resume_token))
    again = await receive_json(ws)
    assert again["type"] == "welcome"
    assert again["ice_servers"][1]["username"] == f"{now + 600 + 3600}:{ana.participant_id}"


async def test_a_server_without_ice_servers_welcomes_with_none(
    tmp_path: Path, http: aiohttp.ClientSession, stack: AsyncExitStack
) -> None:
    async with serve(tmp_path) as plain:
        meeting = await make_meeting(plain, "ana")
        ana = await join(plain, http, stack, meeting, "ana")
        assert ana.welcome["ice_servers"] == []


# --- a real coturn ------------------------------------------------------------------------------


@pytest.fixture
def turn(tmp_path: Path) -> Iterator[Coturn]:
    internals.restrict_host_addresses(["127.0.0.1"])
    try:
        with coturn(tmp_path / "coturn", TURN_SECRET) as running:
            yield running
    finally:
        internals.restrict_host_addresses([])
        internals.bind_ports(None)


def candidates(sdp: str) -> list[tuple[str, int, str]]:
    return [(host, int(port), kind) for host, port, kind in CANDIDATE.findall(sdp)]


async def gathered(servers: tuple[IceServer, ...], relay_only: bool) -> list[tuple[str, int, str]]:
    pc = make_peer_connection(servers=servers, relay_only=relay_only)
    try:
        pc.addTransceiver("audio", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        return candidates(pc.localDescription.sdp)
    finally:
        await pc.close()


def settings_for(turn: Coturn, secret: str = TURN_SECRET, **more: Any) -> RelaySettings:
    return RelaySettings(ice_servers=(turn.turn_url,), turn_secret=Secret(secret), **more)


async def test_coturn_allocates_for_minted_credentials_and_refuses_others(turn: Coturn) -> None:
    now = time.time()  # coturn's clock decides expiry
    good = ice_servers_for(settings_for(turn), "p_good", now)
    relayed = await gathered(good, relay_only=True)
    # Relay-only: no host candidate at all, one relayed address on coturn's relay ports.
    assert [kind for _, _, kind in relayed] == ["relay"], relayed
    assert relayed[0][0] == "127.0.0.1" and relayed[0][1] in turn.relay_ports

    expired = ice_servers_for(settings_for(turn), "p_expired", now - 2 * 24 * 3600)
    forged = ice_servers_for(settings_for(turn, "a-guessed-secret-value"), "p_forged", now)
    assert await gathered(expired, relay_only=True) == []
    assert await gathered(forged, relay_only=True) == []

    users = {username.split(":", 1)[1] for username in turn.allocations().values()}
    assert users == {"p_good"}, turn.text()[-3000:]


async def test_a_ranged_relay_learns_its_reflexive_address_on_its_own_ports(turn: Coturn) -> None:
    ports = free_udp_ports(3)
    internals.bind_ports(ports)
    stun = ice_servers_for(RelaySettings(ice_servers=(turn.stun_url,)), "w1", 0)
    found = await gathered(stun, relay_only=False)
    kinds = {kind: port for _, port, kind in found}
    assert set(kinds) == {"host", "srflx"}, found
    assert kinds["host"] in ports and kinds["srflx"] == kinds["host"]  # no NAT on loopback
