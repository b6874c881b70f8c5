"""Slack in HTTP mode, end to end: signed slash commands over HTTP to the running
``/slack/events``, slack-bolt handling them, and a local fake Slack Web API receiving the DMs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.core.links import parse_link
from bot.core.models import UserRef
from bot.errors import InviteAlreadyUsed
from tests.conftest import _Keep
from tests.support.fake_slack import (
    BOT_TOKEN,
    TEAM,
    FakeSlack,
    form,
    signed_headers,
    slash_command,
)
from tests.support.server import Running, serve

# Shaped like a Conclave secret on purpose: if it were ever logged, the suite-wide scan fails.
SIGNING_SECRET = "Sx7kQ2mN9pL4vR8tY1wE6uI3oA5sD0fG2hJ4kL6zX8c"


def hana() -> UserRef:
    return UserRef("slack", TEAM, "UHANA", "Hana")


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack.with_people()
    fake.dm_errors["UCAT"] = "restricted_action"
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture
async def running(tmp_path: Path, fake: FakeSlack) -> AsyncIterator[Running]:
    env = {
        "CONCLAVE_SLACK_MODE": "http",
        "CONCLAVE_SLACK_BOT_TOKEN": BOT_TOKEN,
        "CONCLAVE_SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "CONCLAVE_SLACK_API_URL": fake.api_url,
    }
    async with serve(tmp_path, env) as running:
        yield running


async def post(running: Running, body: str, headers: dict[str, str]) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{running.base_url}/slack/events", data=body, headers=headers) as response,
    ):
        return response.status, await response.text()


async def command(
    running: Running, fake: FakeSlack, text: str, user_id: str = "UHANA", key: str = "r1"
) -> tuple[int, str]:
    body = form(slash_command(fake, text, user_id, key))
    return await post(running, body, signed_headers(SIGNING_SECRET, body))


def button_url(message: dict[str, Any]) -> str:
    blocks = message["blocks"]
    urls = [e["url"] for b in blocks if b["type"] == "actions" for e in b["elements"]]
    assert len(urls) == 1
    return str(urls[0])


async def test_meet_dms_every_invitee_one_link_that_redeems(
    running: Running, fake: FakeSlack
) -> None:
    started = time.monotonic()
    status, body = await command(running, fake, "<@UANA> <@UBEN|ben> Weekly sync announce")
    assert status == 200 and body == ""  # the ack: empty, so Slack shows nothing yet
    assert time.monotonic() - started < 3.0  # Slack's deadline, a generous bound

    private, public = await fake.wait_responses(2)
    assert private["response_type"] == "ephemeral"
    assert "Weekly sync" in private["text"]
    assert "Sent a private link to Ana, Ben, Hana." in private["text"]
    assert public["response_type"] == "in_channel"
    assert "Hana started" in public["text"] and "/meet join" in public["text"]

    dms = fake.dms()
    assert sorted(dms) == ["UANA", "UBEN", "UHANA"]
    assert all(len(messages) == 1 for messages in dms.values())
    assert {c.args["users"] for c in fake.called("conversations.open")} == set(dms)
    assert {c.args["user"] for c in fake.called("users.info")} >= {"UHANA", "UANA", "UBEN"}

    links = {user: parse_link(button_url(m[0])) for user, m in dms.items()}
    room_id = links["UANA"].room_id
    for user, link in links.items():
        message = dms[user][0]
        assert link.room_id == room_id
        assert "Weekly sync" in message["text"]  # the plain-text fallback...
        assert link.secret.reveal() in message["text"]  # ...carries the same link
        # Nothing public ever carries a link.
        assert link.secret.reveal() not in private["text"] + public["text"]
    assert "invites you" in dms["UANA"][0]["text"]

    service = running.app.service
    admitted = await service.redeem(room_id, links["UANA"].credential.reveal())
    assert admitted.participant.user_id == "UANA"
    assert admitted.participant.display_name == "Ana"  # the roster shows the Slack name
    host = await service.redeem(room_id, links["UHANA"].credential.reveal())
    assert host.participant.role.value == "host"


async def test_closed_dms_are_reported_and_join_gives_a_private_link(
    running: Running, fake: FakeSlack
) -> None:
    await command(running, fake, "<@UANA> <@UCAT> Planning")
    (reply,) = await fake.wait_responses(1)
    assert "Sent a private link to Ana, Hana." in reply["text"]
    assert "Cat: this workspace does not let the app message them" in reply["text"]
    assert sorted(fake.dms()) == ["UANA", "UHANA"]
    room_id = parse_link(button_url(fake.dms()["UANA"][0])).room_id
    assert f"/meet join {room_id}" in reply["text"]

    posts_before = len(fake.called("chat.postMessage"))
    await command(running, fake, f"join {room_id}", user_id="UCAT", key="cat")
    _, own = await fake.wait_responses(2)
    assert own["_key"] == "cat" and own["response_type"] == "ephemeral"
    link = parse_link(next(w for w in own["text"].split() if w.startswith("http")))
    assert len(fake.called("chat.postMessage")) == posts_before  # a reply, not a DM
    admitted = await running.app.service.redeem(room_id, link.credential.reveal())
    assert admitted.participant.user_id == "UCAT"


async def test_markup_in_a_topic_is_shown_not_obeyed(running: Running, fake: FakeSlack) -> None:
    await command(running, fake, "<@UANA> '<!channel> party' announce")
    private, public = await fake.wait_responses(2)
    for reply in (private, public):
        assert "&lt;!channel&gt; party" in reply["text"] and "<!channel>" not in reply["text"]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("invite", "Use `/meet invite ROOM @user"),
        ("<@UANA> <@UANA> Sync", "more than once"),
        ("<@UBOT> Sync", "can't be invited"),
        (" ".join(f"<@U{i:04d}>" for i in range(26)) + " Big", "at most 25"),
        ("<@UNOBODY> Sync", "not an active member"),
        ("end nosuchroom", "no meeting room"),
        ("lock", "Which room?"),
    ],
)
async def test_bad_input_is_a_private_error_with_no_side_effect(
    running: Running, fake: FakeSlack, text: str, says: str
) -> None:
    status, _ = await command(running, fake, text)
    assert status == 200
    (reply,) = await fake.wait_responses(1)
    assert reply["response_type"] == "ephemeral"
    assert says in reply["text"]
    assert fake.dms() == {} and fake.called("conversations.open") == []
    assert await running.app.service.rooms_of(hana()) == []


async def test_someone_elses_room_is_refused(running: Running, fake: FakeSlack) -> None:
    await command(running, fake, "<@UANA> Sync")
    await fake.wait_responses(1)
    room_id = parse_link(button_url(fake.dms()["UANA"][0])).room_id
    posts = len(fake.called("chat.postMessage"))
    for verb in ("lock", "end"):
        await command(running, fake, f"{verb} {room_id}", user_id="UANA", key=verb)
    await command(running, fake, f"invite {room_id} <@UBEN>", user_id="UANA", key="inv")
    replies = (await fake.wait_responses(4))[1:]
    assert all("Only the host" in r["text"] for r in replies), replies
    assert len(fake.called("chat.postMessage")) == posts
    room = await running.app.service.get_room(room_id)
    assert room is not None and room.state.value == "open"


async def test_rate_limited_calls_are_retried_after_the_wait(
    running: Running, fake: FakeSlack
) -> None:
    fake.rate_limit_once.add("chat.postMessage")
    await command(running, fake, "<@UANA> Sync")
    (reply,) = await fake.wait_responses(1)
    assert "Sent a private link to Ana, Hana." in reply["text"]
    attempts = [c.at for c in fake.called("chat.postMessage")]
    assert len(attempts) == 3  # one refused with Retry-After: 1, then both sent
    assert max(attempts) - min(attempts) >= 0.9


def forged(body: str) -> dict[str, str]:
    return signed_headers("not-the-signing-secret", body)


def stale(body: str) -> dict[str, str]:
    return signed_headers(SIGNING_SECRET, body, timestamp=int(time.time()) - 301)


def no_timestamp(body: str) -> dict[str, str]:
    headers = signed_headers(SIGNING_SECRET, body)
    del headers["X-Slack-Request-Timestamp"]
    return headers


def word_timestamp(body: str) -> dict[str, str]:
    return {**signed_headers(SIGNING_SECRET, body), "X-Slack-Request-Timestamp": "yesterday"}


def float_timestamp(body: str) -> dict[str, str]:
    ts = f"{time.time():.3f}"
    return {**signed_headers(SIGNING_SECRET, body), "X-Slack-Request-Timestamp": ts}


def no_signature(body: str) -> dict[str, str]:
    headers = signed_headers(SIGNING_SECRET, body)
    del headers["X-Slack-Signature"]
    return headers


@pytest.mark.parametrize(
    "headers", [forged, stale, no_timestamp, word_timestamp, float_timestamp, no_signature]
)
async def test_unsigned_or_stale_requests_get_401_and_change_nothing(
    running: Running, fake: FakeSlack, no_secrets_in_logs: _Keep, headers: Any
) -> None:
    body = form(slash_command(fake, "<@UANA> Sync"))
    status, text = await post(running, body, headers(body))
    assert status == 401, text
    calls_after_start = [c.method for c in fake.calls if c.method != "auth.test"]
    assert calls_after_start == [] and fake.responses == []
    assert await running.app.service.rooms_of(hana()) == []
    logged = "\n".join(no_secrets_in_logs.lines)
    assert "refused a request to /slack/events" in logged
    for secret in (SIGNING_SECRET, BOT_TOKEN, fake.response_url("r1")):
        assert secret not in logged


async def test_secrets_never_reach_the_logs(
    running: Running, fake: FakeSlack, no_secrets_in_logs: _Keep
) -> None:
    await command(running, fake, "<@UANA> Sync")
    await fake.wait_responses(1)
    link = button_url(fake.dms()["UANA"][0])
    logged = "\n".join(no_secrets_in_logs.lines)
    assert "slack" in logged  # the adapter did log...
    for secret in (SIGNING_SECRET, BOT_TOKEN, link, parse_link(link).secret.reveal()):
        assert secret not in logged  # ...and none of these


async def test_a_replayed_signed_request_is_refused_and_runs_once(
    running: Running, fake: FakeSlack, no_secrets_in_logs: _Keep
) -> None:
    # Someone who saw one genuine request (a proxy, a log) sends it again, word for word.
    body = form(slash_command(fake, "<@UANA> Sync"))
    headers = signed_headers(SIGNING_SECRET, body)
    assert (await post(running, body, headers))[0] == 200
    await fake.wait_responses(1)
    status, _ = await post(running, body, headers)
    assert status == 401
    again = await asyncio.gather(*(post(running, body, headers) for _ in range(5)))
    assert {s for s, _ in again} == {401}
    await asyncio.sleep(0.2)  # a second run would have answered by now
    assert len(fake.responses) == 1
    assert len(await running.app.service.rooms_of(hana())) == 1
    assert sorted(fake.dms()) == ["UANA", "UHANA"]
    assert any("a replay" in line for line in no_secrets_in_logs.lines)
    # A new request (new timestamp, so a new signature) is not mistaken for a replay.
    earlier = int(headers["X-Slack-Request-Timestamp"]) - 1
    fresh = signed_headers(SIGNING_SECRET, body, timestamp=earlier)
    assert (await post(running, body, fresh))[0] == 200
    await fake.wait_responses(2)


async def test_a_stolen_link_is_reported_to_the_host_by_dm_and_reissue_fixes_it(
    running: Running, fake: FakeSlack
) -> None:
    await command(running, fake, "<@UANA> <@UBEN> Sync")
    await fake.wait_responses(1)
    ana_link = parse_link(button_url(fake.dms()["UANA"][0]))
    room_id = ana_link.room_id
    service = running.app.service
    thief = await service.redeem(room_id, ana_link.credential.reveal())

    # The real Ana clicks her link: refused, and the host gets a DM from the bot.
    with pytest.raises(InviteAlreadyUsed, match="already used at"):
        await service.redeem(room_id, ana_link.credential.reveal())
    await fake.wait_for(lambda: len(fake.dms().get("UHANA", [])) == 2)
    notice = fake.dms()["UHANA"][1]
    assert "Someone tried to join as Ana with Ana's link" in notice["text"]
    assert f"/meet reissue {room_id} @UANA" in notice["text"]
    assert "http" not in notice["text"]

    # Ben is no host: refused, and nothing changes.
    await command(running, fake, f"reissue {room_id} <@UANA>", user_id="UBEN", key="ben")
    (_, refused) = await fake.wait_responses(2)
    assert "Only the host" in refused["text"]
    assert len(fake.dms()["UANA"]) == 1
    assert (await service.resume(thief.resume_token.reveal())).participant.id == (
        thief.participant.id
    )

    # The host, with the mention the notice suggested: Ana gets a new link by DM.
    await command(running, fake, f"reissue {room_id} @UANA", key="host")
    (*_, reply) = await fake.wait_responses(3)
    assert reply["response_type"] == "ephemeral"
    assert "New link for Ana" in reply["text"] and thief.participant.id in reply["text"]
    assert "Sent a private link to Ana." in reply["text"]
    await fake.wait_for(lambda: len(fake.dms()["UANA"]) == 2)
    fresh = parse_link(button_url(fake.dms()["UANA"][1]))
    assert fresh.credential.reveal() != ana_link.credential.reveal()
    admitted = await service.redeem(room_id, fresh.credential.reveal())
    assert admitted.participant.user_id == "UANA"
