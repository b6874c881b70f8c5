"""``GET /metrics``: what it counts after real activity, what it never names, and who may read it.

Everything is real: the application built by the composition root on loopback, its SQLite file,
the hub over websockets, the console and a fake Slack for commands, a fake relay worker on the
real control channel. Counters are read back by parsing the exposition as Prometheus does.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.config import describe, load_settings
from bot.core.links import JoinLink, parse_link
from bot.errors import ConfigError
from tests.support.fake_worker import fake_worker
from tests.support.server import Running, expect_refused, hello_invite, receive_json, serve
from tests.support.slack_commands import meet as slack_meet
from tests.support.slack_commands import serve_slack
from tests.test_delivery_failures import OddSlack

TOKEN = "metrics-" + secrets.token_hex(16)
BOUND = 10.0  # seconds: a generous functional bound, not a performance claim
# Distinctive, so that finding them in the exposition cannot be a coincidence.
HOST = "hortensia"
GUESTS = ("anastasia", "bartholomew")
TOPIC = "Quarterly zeppelin budget"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def scrape(
    http: aiohttp.ClientSession, url: str, token: str | None = TOKEN
) -> tuple[int, str]:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    async with http.get(url, headers=headers) as response:
        return response.status, await response.text()


async def scrape_until(
    http: aiohttp.ClientSession, url: str, ready: Callable[[Samples], bool]
) -> tuple[Samples, str]:
    """Scrape until ``ready`` holds: a refusal is counted once its connection has closed."""
    deadline = time.monotonic() + BOUND
    while True:
        status, text = await scrape(http, url)
        assert status == 200, text
        samples = parse(text)
        if ready(samples):
            return samples, text
        assert time.monotonic() < deadline, f"never true of the scrape:\n{text}"
        await asyncio.sleep(0.05)


async def console_links(server: Running, *who: str) -> dict[str, JoinLink]:
    """The links the console "sent" to ``who`` by DM, once it has printed them all."""
    deadline = time.monotonic() + BOUND
    while True:
        lines = server.console_out.getvalue().splitlines()
        links = {
            name: parse_link(line.split(": ", 1)[1])
            for line in lines
            for name in who
            if line.startswith(f"DM to @{name}: ")
        }
        if len(links) == len(who):
            return links
        assert time.monotonic() < deadline, f"the console never sent them: {lines}"
        await asyncio.sleep(0.05)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Running]:
    env = {"CONCLAVE_METRICS_TOKEN": TOKEN, "CONCLAVE_CONSOLE_USER": HOST}
    async with serve(tmp_path, env) as running:
        yield running


async def test_a_scrape_counts_what_happened(
    server: Running, http: aiohttp.ClientSession, stack: AsyncExitStack
) -> None:
    url = f"{server.base_url}/metrics"
    server.console.feed(f"/meet @{GUESTS[0]} @{GUESTS[1]} {TOPIC}")
    server.console.feed("/meet end no-such-room")
    links = await console_links(server, *GUESTS)
    ana = links[GUESTS[0]]

    # Someone guessing invite keys: three hellos with the right invite id and a wrong secret.
    for _ in range(3):
        ws = await stack.enter_async_context(http.ws_connect(server.ws_url))
        await ws.send_str(hello_invite(ana.room_id, f"{ana.invite_id}.{secrets.token_hex(16)}"))
        await expect_refused(ws, "bad_invite")
    # A guest joins, pings, and asks to lock the room, which only the host may do.
    ws = await stack.enter_async_context(http.ws_connect(server.ws_url))
    await ws.send_str(hello_invite(ana.room_id, ana.credential.reveal()))
    assert (await receive_json(ws))["type"] == "welcome"
    for kind in ("ping", "lock"):
        await ws.send_str(json.dumps({"type": kind}))
    while (message := await receive_json(ws))["type"] != "warning":
        pass
    assert message["code"] == "not_host"
    # A relay worker reports its load over the control channel.
    worker = await stack.enter_async_context(fake_worker(server.base_url, server.app.relay_secret))
    await worker.ws.send_str(json.dumps({"type": "load", "rooms": 1, "participants": 2}))

    samples, _ = await scrape_until(
        http,
        url,
        lambda s: (
            value(s, "conclave_signaling_refusals_total", code="bad_invite") == 3
            and value(s, "conclave_relay_worker_participants", worker="fake-1") == 2
            and value(s, "conclave_commands_total", platform="console", outcome="refused") == 1
        ),
    )
    assert value(samples, "conclave_commands_total", platform="console", outcome="ok") == 1
    assert value(samples, "conclave_signaling_refusals_total", code="not_host") == 1
    assert value(samples, "conclave_signaling_messages_total", type="ping") == 1
    assert value(samples, "conclave_signaling_messages_total", type="lock") == 1
    assert value(samples, "conclave_rooms_open") == 1
    assert value(samples, "conclave_participants_connected", state="admitted") == 1
    assert value(samples, "conclave_participants_connected", state="lobby") == 0
    assert value(samples, "conclave_relay_workers_ready") == 1
    assert value(samples, "conclave_relay_worker_rooms", worker="fake-1") == 1

    # The guest leaves: the gauges follow at the next scrape, the counters stay.
    await ws.close()
    samples, _ = await scrape_until(
        http, url, lambda s: value(s, "conclave_participants_connected", state="admitted") == 0
    )
    assert value(samples, "conclave_rooms_open") == 0
    assert value(samples, "conclave_signaling_refusals_total", code="bad_invite") == 3


async def test_websockets_refused_before_their_hello_are_counted(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    env = {"CONCLAVE_METRICS_TOKEN": TOKEN, "CONCLAVE_SIGNALING_UNAUTHENTICATED_PER_ADDRESS": "2"}
    async with serve(tmp_path, env) as server:
        silent = [await http.ws_connect(server.ws_url) for _ in range(2)]  # never say hello
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(server.ws_url)
        assert refused.value.status == 429
        _, text = await scrape(http, f"{server.base_url}/metrics")
        for ws in silent:
            await ws.close()
    name = "conclave_signaling_refusals_total"
    assert value(parse(text), name, code="too_many_unauthenticated") == 1


async def test_the_exposition_names_no_room_participant_person_or_topic(
    server: Running, http: aiohttp.ClientSession, stack: AsyncExitStack
) -> None:
    server.console.feed(f"/meet @{GUESTS[0]} @{GUESTS[1]} lobby {TOPIC}")
    links = await console_links(server, *GUESTS, HOST)
    room_id = links[HOST].room_id
    welcomes = {}
    for who, link in links.items():
        ws = await stack.enter_async_context(http.ws_connect(server.ws_url))
        await ws.send_str(hello_invite(link.room_id, link.credential.reveal()))
        welcomes[who] = await receive_json(ws)
        assert welcomes[who]["type"] == "welcome", welcomes[who]
    bad = await stack.enter_async_context(http.ws_connect(server.ws_url))
    await bad.send_str(hello_invite(room_id, f"{links[HOST].invite_id}.{'x' * 43}"))
    await expect_refused(bad, "bad_invite")

    samples, text = await scrape_until(
        http,
        url=f"{server.base_url}/metrics",
        ready=lambda s: (
            value(s, "conclave_participants_connected", state="lobby") == 2
            and value(s, "conclave_signaling_refusals_total", code="bad_invite") == 1
        ),
    )
    assert value(samples, "conclave_participants_connected", state="admitted") == 1  # the host
    forbidden = {
        "room id": room_id,
        **{f"invite id of {w}": link.invite_id for w, link in links.items()},
        **{f"participant id of {w}": m["participant_id"] for w, m in welcomes.items()},
        **{f"name of {w}": m["name"] for w, m in welcomes.items()},
        **{f"user {w}": w for w in (HOST, *GUESTS)},
        "topic": TOPIC,
        **{f"topic word {word!r}": word for word in TOPIC.split()},
    }
    lowered = text.lower()
    found = {what: v for what, v in forbidden.items() if v.lower() in lowered}
    assert found == {}, f"the exposition names {found}"


async def test_slash_commands_by_outcome_and_dm_failures_on_slack(tmp_path: Path) -> None:
    slack = OddSlack(users=OddSlack.with_people().users)
    async with serve_slack(tmp_path, slack) as server:
        slack.dm_errors["UBEN"] = "cannot_dm_bot"  # one DM refused: the command still works
        await slack_meet(server, slack, "<@UANA> <@UBEN> Sync")
        slack.lookup_errors["UCAT"] = "fatal_error"  # Slack fails: the generic sentence
        await slack_meet(server, slack, "<@UCAT> Sync")
        await slack_meet(server, slack, "end no-such-room")
        # The exposition /metrics would serve (how it is served is tested above and below).
        samples = parse(server.app.metrics.render().decode())
    for outcome in ("ok", "error", "refused"):
        assert value(samples, "conclave_commands_total", platform="slack", outcome=outcome) == 1
    assert value(samples, "conclave_dm_failures_total", platform="slack") == 1
    assert value(samples, "conclave_commands_total", platform="console", outcome="ok") is None


async def test_the_token_guards_the_public_listener(
    server: Running, http: aiohttp.ClientSession
) -> None:
    url = f"{server.base_url}/metrics"
    wrong_same_length = "metrics-" + secrets.token_hex(16)
    for headers in (
        {},
        {"Authorization": f"Bearer {wrong_same_length}"},
        {"Authorization": f"Bearer {TOKEN[:-1]}"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Basic {TOKEN}"},  # the right token under another scheme
        {"Authorization": TOKEN},
    ):
        async with http.get(url, headers=headers) as response:
            assert response.status == 401, headers
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert "conclave_" not in await response.text()
    async with http.get(url, headers={"Authorization": f"Bearer {TOKEN}"}) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert "# TYPE conclave_signaling_refusals_total counter" in await response.text()


@pytest.mark.parametrize(
    "env",
    [{}, {"CONCLAVE_METRICS_LISTEN": "127.0.0.1:0"}],
    ids=["neither key set", "separate listener"],
)
async def test_not_served_on_the_public_listener_without_a_token(
    tmp_path: Path, http: aiohttp.ClientSession, env: Mapping[str, str]
) -> None:
    async with serve(tmp_path, env) as server:
        for headers in ({}, {"Authorization": f"Bearer {TOKEN}"}):
            async with http.get(f"{server.base_url}/metrics", headers=headers) as response:
                assert response.status == 404


@pytest.mark.parametrize("token", [None, TOKEN], ids=["no token", "token"])
async def test_a_separate_loopback_listener_serves_metrics_only(
    tmp_path: Path, http: aiohttp.ClientSession, token: str | None
) -> None:
    env = {"CONCLAVE_METRICS_LISTEN": "127.0.0.1:0"}
    if token is not None:
        env["CONCLAVE_METRICS_TOKEN"] = token
    async with serve(tmp_path, env) as server:
        address = server.app.metrics_address
        assert address is not None and address[1] not in (0, server.port)
        base = f"http://127.0.0.1:{address[1]}"
        server.console.feed("/meet @anastasia Sync")
        await console_links(server, "anastasia")
        status, text = await scrape(http, f"{base}/metrics", token)
        assert status == 200
        assert value(parse(text), "conclave_commands_total", platform="console", outcome="ok") == 1
        if token is not None:  # with a token, this listener wants it too
            assert (await scrape(http, f"{base}/metrics", None))[0] == 401
        for path in ("/healthz", "/ws", "/relay", "/j/room"):
            async with http.get(f"{base}{path}") as response:
                assert response.status == 404, path
    # It stops with the application.
    with pytest.raises(aiohttp.ClientConnectionError):
        await scrape(http, f"{base}/metrics", token)


async def test_each_application_counts_apart(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    env = {"CONCLAVE_METRICS_TOKEN": TOKEN}
    async with serve(tmp_path / "a", env) as one, serve(tmp_path / "b", env) as other:
        one.console.feed("/meet @anastasia Sync")
        await console_links(one, "anastasia")
        scraped = [parse((await scrape(http, f"{s.base_url}/metrics"))[1]) for s in (one, other)]
    name = "conclave_commands_total"
    counted = [value(s, name, platform="console", outcome="ok") for s in scraped]
    assert counted == [1, None]


def test_settings_refuse_a_listener_anyone_could_reach_without_a_token() -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings(environ={"CONCLAVE_METRICS_LISTEN": "0.0.0.0:9464"})
    assert refused.value.key == "metrics.listen"
    assert "loopback" in str(refused.value)
    for listen in ("127.0.0.1:9464", "[::1]:9464", "localhost:9464"):
        assert load_settings(environ={"CONCLAVE_METRICS_LISTEN": listen}).metrics.listen == listen
    behind_token = load_settings(
        environ={"CONCLAVE_METRICS_LISTEN": "0.0.0.0:9464", "CONCLAVE_METRICS_TOKEN": TOKEN}
    )
    assert behind_token.metrics.address == ("0.0.0.0", 9464)
    for bad in ("127.0.0.1", "127.0.0.1:http", "127.0.0.1:70000", "http://127.0.0.1:9464"):
        with pytest.raises(ConfigError) as refused:
            load_settings(environ={"CONCLAVE_METRICS_LISTEN": bad})
        assert refused.value.key == "metrics.listen"


def test_the_token_is_long_enough_and_never_printed() -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings(environ={"CONCLAVE_METRICS_TOKEN": "guessable"})
    assert refused.value.key == "metrics.token"
    assert "guessable" not in str(refused.value)
    settings = load_settings(environ={"CONCLAVE_METRICS_TOKEN": TOKEN})
    assert settings.metrics.token.reveal() == TOKEN
    for shown in (describe(settings), repr(settings), f"{settings.metrics.token}"):
        assert TOKEN not in shown
