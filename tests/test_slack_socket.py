"""Slack in Socket Mode, end to end: the adapter opens a Socket Mode connection (through
``apps.connections.open`` on the fake Web API), Slack's side pushes a slash-command envelope
down the websocket, Bolt acknowledges it on the socket and the DMs go out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.core.links import parse_link
from tests.support.fake_slack import APP_TOKEN, BOT_TOKEN, FakeSlack, slash_command
from tests.support.server import Running, serve


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack.with_people()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture
async def running(tmp_path: Path, fake: FakeSlack) -> AsyncIterator[Running]:
    env = {
        "CONCLAVE_SLACK_MODE": "socket",
        "CONCLAVE_SLACK_BOT_TOKEN": BOT_TOKEN,
        "CONCLAVE_SLACK_APP_TOKEN": APP_TOKEN,
        "CONCLAVE_SLACK_API_URL": fake.api_url,
    }
    async with serve(tmp_path, env) as running:
        yield running


async def test_slash_command_over_socket_mode(running: Running, fake: FakeSlack) -> None:
    assert fake.called("apps.connections.open"), "the adapter did not open a socket"
    assert running.app.console is None  # a chat platform is configured: no console

    envelope = await fake.send_envelope(
        "slash_commands", slash_command(fake, "<@UANA> <@UBEN> Standup lobby")
    )
    await fake.wait_for(lambda: envelope in fake.acks, timeout=3.0)  # Slack's ack deadline
    (reply,) = await fake.wait_responses(1)
    assert reply["response_type"] == "ephemeral"
    assert "Sent a private link to Ana, Ben, Hana." in reply["text"]
    assert "lobby on" in reply["text"]

    dms = fake.dms()
    assert sorted(dms) == ["UANA", "UBEN", "UHANA"]
    assert all(len(messages) == 1 for messages in dms.values())
    for user, (message,) in dms.items():
        link = parse_link(message["text"].split("Join securely: ")[1].split()[0])
        admitted = await running.app.service.redeem(link.room_id, link.credential.reveal())
        assert admitted.participant.user_id == user


async def test_bad_input_over_socket_mode_sends_nothing(running: Running, fake: FakeSlack) -> None:
    envelope = await fake.send_envelope("slash_commands", slash_command(fake, "<@UBOT> Hi"))
    await fake.wait_for(lambda: envelope in fake.acks, timeout=3.0)
    (reply,) = await fake.wait_responses(1)
    assert "can't be invited" in reply["text"]
    assert fake.dms() == {}
