"""Every input that crashed a fuzz target, replayed; and each crash shown where it mattered:
a pasted link refused with BadInvite, Slack requests answered 401 by the running server (they
were 500s with a traceback in the log), and a relay worker that answers a malformed control
message with an error and keeps serving."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import aiohttp
import pytest

from bot.core.links import parse_link
from bot.errors import BadInvite
from bot.secret import Secret
from tests.conftest import _Keep
from tests.fuzz.crashes import CRASHES
from tests.fuzz.targets import load
from tests.relay.relay_fakes import SECRET, FakeCore, eventually
from tests.support.fake_slack import FakeSlack, form, signed_headers, slash_command
from tests.support.server import Running
from tests.test_slack_http import SIGNING_SECRET, hana


@pytest.mark.parametrize("name", sorted(CRASHES))
def test_the_crashing_input_now_meets_its_documented_outcome(name: str) -> None:
    target, data = CRASHES[name]
    load(target)(data)


@pytest.mark.parametrize(
    "link",
    [
        "https://[::1/j/room#inv_1." + "S" * 43,  # an unclosed IPv6 bracket
        "https://meet\uff03example.org/j/room#inv_1." + "S" * 43,  # NFKC makes a "#"
    ],
)
def test_a_link_urlsplit_refuses_is_a_bad_invite(link: str) -> None:
    with pytest.raises(BadInvite, match="not a Conclave join link"):
        parse_link(link)


def _signed(body: bytes, **headers: str) -> dict[str, str]:
    return {**signed_headers(SIGNING_SECRET, body.decode("latin-1")), **headers}


def _cases(body: bytes) -> dict[str, tuple[bytes, dict[str, str]]]:
    garbled = body + b"&text=%FF\xff\xfe"
    return {
        "body-not-utf8": (garbled, _signed(garbled)),
        "signature-not-ascii": (body, _signed(body, **{"X-Slack-Signature": "v0=\u00e9"})),
        "timestamp-5000-digits": (body, _signed(body, **{"X-Slack-Request-Timestamp": "1" * 5000})),
        "unknown-charset": (
            body,
            _signed(body, **{"Content-Type": "application/x-www-form-urlencoded; charset=nope"}),
        ),
    }


@pytest.mark.parametrize(
    "case", ["body-not-utf8", "signature-not-ascii", "timestamp-5000-digits", "unknown-charset"]
)
async def test_what_crashed_the_slack_verifier_gets_401_and_changes_nothing(
    running: Running, fake: FakeSlack, no_secrets_in_logs: _Keep, case: str
) -> None:
    body = form(slash_command(fake, "<@UANA> Sync")).encode()
    data, headers = _cases(body)[case]
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{running.base_url}/slack/events", data=data, headers=headers) as response,
    ):
        assert response.status == 401, await response.text()
    assert [c.method for c in fake.calls if c.method != "auth.test"] == []
    assert await running.app.service.rooms_of(hana()) == []
    logged = "\n".join(no_secrets_in_logs.lines)
    assert "refused a request to /slack/events" in logged
    assert "Traceback" not in logged and "Error handling request" not in logged


async def test_a_signed_request_still_passes(running: Running, fake: FakeSlack) -> None:
    body = form(slash_command(fake, "<@UANA> Sync")).encode()
    headers = signed_headers(SIGNING_SECRET, body.decode(), timestamp=int(time.time()))
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{running.base_url}/slack/events", data=body, headers=headers) as response,
    ):
        assert response.status == 200, await response.text()
    await fake.wait_responses(1)


async def test_a_core_that_nests_json_too_deep_gets_an_error_and_the_worker_stays(
    started: Callable[[Secret], Awaitable[FakeCore]],
) -> None:
    core = await started(SECRET)
    await asyncio.wait_for(core.ready.wait(), 20)
    assert core._ws is not None
    await core._ws.send_str('{"type":"stats","id":' + "[" * 2000)
    await eventually(lambda: any(m["type"] == "error" for m in core.from_worker), "an error")
    error = next(m for m in core.from_worker if m["type"] == "error")
    assert "not valid JSON" in error["message"] and "id" not in error
    stats = await core.request("stats")
    assert stats["ok"]
