"""Discord end to end: the adapter logs in and syncs ``/meet`` against a local fake Discord,
connects to its fake gateway, and receives ``INTERACTION_CREATE`` payloads that discord.py
parses and dispatches itself; replies, DMs and followups land on the fake's REST routes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yarl

from adapters.discord.adapter import DiscordAdapter
from bot.commands.handler import CommandHandler
from bot.config import load_settings
from bot.core.links import JoinLink, parse_link
from bot.core.models import Invite, Room, UserRef
from bot.core.service import MeetingService
from bot.errors import InviteAlreadyUsed
from bot.store.sqlite import SqliteStore
from tests.conftest import _Keep
from tests.support.fake_discord import (
    APP_ID,
    BOT_ID,
    GUILD_ID,
    TOKEN,
    FakeDiscord,
    dm_channel,
    meet,
)
from tests.support.fakes import FakeClock
from tests.support.server import Running, serve

EPHEMERAL = 64


def env(fake: FakeDiscord) -> dict[str, str]:
    return {
        "CONCLAVE_DISCORD_TOKEN": TOKEN,
        "CONCLAVE_DISCORD_APPLICATION_ID": APP_ID,
        "CONCLAVE_DISCORD_GUILD_ID": GUILD_ID,
        "CONCLAVE_DISCORD_API_URL": fake.api_url,
    }


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeDiscord]:
    fake = FakeDiscord.with_people()
    await fake.start()
    # discord.py connects to Discord's gateway at this class attribute; point it at the fake.
    monkeypatch.setattr(
        "discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY", yarl.URL(fake.gateway_url)
    )
    # The adapter sets the REST base at start; put the real one back after the test.
    monkeypatch.setattr("discord.http.Route.BASE", "https://discord.com/api/v10")
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture
async def running(tmp_path: Path, fake: FakeDiscord) -> AsyncIterator[Running]:
    async with serve(tmp_path, env(fake)) as running:
        yield running


def hana() -> UserRef:
    return UserRef("discord", GUILD_ID, "100", "Hana")


def button_url(message: dict[str, Any]) -> str:
    (row,) = message["components"]
    (button,) = row["components"]
    assert button["style"] == 5 and button["label"] == "Join securely"  # a link button
    return str(button["url"])


def link_in(text: str) -> JoinLink:
    return parse_link(next(w for w in text.split() if w.startswith("http")))


async def test_start_syncs_the_guild_command_and_logs_the_install_url(
    running: Running, fake: FakeDiscord, no_secrets_in_logs: _Keep
) -> None:
    (sync,) = fake.matching("PUT", f"/applications/{APP_ID}/guilds/{GUILD_ID}/commands")
    (command,) = sync.body
    assert command["name"] == "meet"
    assert {o["name"] for o in command["options"]} == {
        "create", "invite", "lock", "unlock", "end", "list", "join", "reissue", "help"
    }  # fmt: skip
    assert running.app.console is None
    url = (
        f"https://discord.com/oauth2/authorize?client_id={APP_ID}"
        "&scope=bot+applications.commands&permissions=2048"
    )
    assert any(url in line for line in no_secrets_in_logs.lines)
    assert not any(TOKEN in line for line in no_secrets_in_logs.lines)


async def test_create_dms_each_invitee_a_link_button_that_redeems(
    running: Running, fake: FakeDiscord
) -> None:
    options: dict[str, str | bool] = {
        "invitees": "<@101> <@!102>",
        "topic": "Design review",
        "announce": True,
    }
    await fake.interact(meet("create", options))
    reply, announcement = await fake.wait_followups(2)

    (callback,) = fake.callbacks()
    assert callback.body["type"] == 5  # deferred, thinking...
    assert callback.body["data"]["flags"] & EPHEMERAL  # ...visible only to the caller
    assert reply.body["flags"] & EPHEMERAL
    assert "Design review" in reply.body["content"]
    assert "Sent a private link to Ana B., Ben, Hana." in reply.body["content"]
    assert not announcement.body.get("flags", 0) & EPHEMERAL  # the channel sees this one
    for followup in (reply, announcement):  # a chosen name never pings anyone
        assert followup.body["allowed_mentions"] == {"parse": []}
    assert "Hana started" in announcement.body["content"]
    assert "#" not in announcement.body["content"] and "http" not in announcement.body["content"]

    dms = fake.dms()
    assert sorted(dms) == ["100", "101", "102"]
    assert all(len(messages) == 1 for messages in dms.values())
    assert len(fake.matching("POST", "/users/@me/channels")) == 3
    links = {user: parse_link(button_url(m[0])) for user, m in dms.items()}
    room_id = links["101"].room_id
    assert {link.room_id for link in links.values()} == {room_id}
    for user, link in links.items():
        assert link.secret.reveal() in dms[user][0]["content"]  # also copyable as text
        assert link.secret.reveal() not in reply.body["content"]

    admitted = await running.app.service.redeem(room_id, links["101"].credential.reveal())
    assert (admitted.participant.user_id, admitted.participant.display_name) == ("101", "Ana B.")


async def test_closed_dms_are_reported_not_retried_and_join_is_the_fallback(
    running: Running, fake: FakeDiscord
) -> None:
    fake.closed_dms.add("103")
    await fake.interact(meet("create", {"invitees": "<@101> <@103>", "topic": "Retro"}))
    (reply,) = await fake.wait_followups(1)
    text = reply.body["content"]
    assert "Sent a private link to Ana B., Hana." in text
    assert "Cat: they do not accept direct messages" in text
    to_cat = f"/channels/{dm_channel('103')}/messages"
    assert len(fake.matching("POST", to_cat)) == 1  # tried once, never retried
    room_id = parse_link(button_url(fake.dms()["101"][0])).room_id
    assert f"/meet join {room_id}" in text

    await fake.interact(meet("join", {"room": room_id}, user_id="103", name="Cat"))
    _, own = await fake.wait_followups(2)
    assert own.body["flags"] & EPHEMERAL
    assert len(fake.matching("POST", to_cat)) == 1  # a reply, not a DM
    link = link_in(own.body["content"])
    admitted = await running.app.service.redeem(room_id, link.credential.reveal())
    assert admitted.participant.user_id == "103"


async def test_a_429_is_waited_out_then_the_dm_goes(running: Running, fake: FakeDiscord) -> None:
    fake.rate_limit_once.add("101")
    await fake.interact(meet("create", {"invitees": "<@101>", "topic": "Sync"}))
    (reply,) = await fake.wait_followups(1)
    assert "Sent a private link to Ana B., Hana." in reply.body["content"]
    first, second = fake.matching("POST", f"/channels/{dm_channel('101')}/messages")
    assert second.at - first.at >= fake.retry_after * 0.9  # it honoured retry_after
    assert len(fake.dms()["101"]) == 1  # delivered once, after the wait


@pytest.mark.parametrize(
    ("subcommand", "options", "says"),
    [
        ("create", {"invitees": f"<@{BOT_ID}>"}, "can't be invited"),
        ("create", {"invitees": "<@101> <@101>"}, "more than once"),
        ("create", {"invitees": " ".join(f"<@{i}>" for i in range(200, 226))}, "at most 25"),
        ("create", {"invitees": "<@999>"}, "not a member of this server"),
        ("create", {"invitees": "ana", "topic": "Sync"}, "is not a mention"),
        ("create", {"invitees": "<@100>"}, "don't need to invite yourself"),
        ("invite", {"room": "nosuchroom", "invitees": ""}, "Say whom to invite"),
        ("end", {"room": "nosuchroom"}, "no meeting room"),
        ("lock", {"room": "two words"}, "is not a room id"),
        ("frobnicate", {}, "I don't know that /meet command"),
    ],
)
async def test_bad_input_is_a_private_error_with_no_side_effect(
    running: Running, fake: FakeDiscord, subcommand: str, options: dict[str, str], says: str
) -> None:
    def replies() -> list[dict[str, Any]]:
        return [r.body for r in fake.followups()] + [
            r.body["data"] for r in fake.callbacks() if r.body["type"] == 4
        ]

    await fake.interact(meet(subcommand, options))
    # The reply may come after a deferral (a callback that says nothing): wait for the reply.
    await fake.wait_for(lambda: bool(replies()))
    reply = replies()[0]
    assert reply["flags"] & EPHEMERAL
    assert says in reply["content"]
    assert await running.app.service.rooms_of(hana()) == []
    # A second reply would follow the first at once; give it time to arrive, then count.
    await asyncio.sleep(0.2)
    assert replies() == [reply]
    assert fake.matching("POST", "/users/@me/channels") == []
    assert fake.matching("POST", "/channels/") == []


async def test_someone_elses_room_is_refused(running: Running, fake: FakeDiscord) -> None:
    await fake.interact(meet("create", {"invitees": "<@101>", "topic": "Sync"}))
    await fake.wait_followups(1)
    room_id = parse_link(button_url(fake.dms()["101"][0])).room_id
    await fake.interact(meet("end", {"room": room_id}, user_id="101", name="Ana"))
    _, refused = await fake.wait_followups(2)
    assert refused.body["flags"] & EPHEMERAL
    assert "Only the host" in refused.body["content"]
    room = await running.app.service.get_room(room_id)
    assert room is not None and room.state.value == "open"


async def test_a_reused_link_is_told_to_the_host_and_reissue_fixes_it(
    running: Running, fake: FakeDiscord
) -> None:
    await fake.interact(meet("create", {"invitees": "<@101>", "topic": "Sync"}))
    await fake.wait_followups(1)
    link = parse_link(button_url(fake.dms()["101"][0]))
    service = running.app.service
    thief = await service.redeem(link.room_id, link.credential.reveal())
    with pytest.raises(InviteAlreadyUsed):
        await service.redeem(link.room_id, link.credential.reveal())

    await fake.wait_for(lambda: len(fake.dms().get("100", [])) == 2)
    notice = fake.dms()["100"][1]
    assert "Someone tried to join as Ana B. with Ana B.'s link" in notice["content"]
    assert f"/meet reissue {link.room_id} @101" in notice["content"]
    assert notice["allowed_mentions"] == {"parse": []}

    await fake.interact(meet("reissue", {"room": link.room_id, "invitee": "<@101>"}))
    _, reply = await fake.wait_followups(2)
    assert reply.body["flags"] & EPHEMERAL
    assert "New link for Ana B." in reply.body["content"]
    assert thief.participant.id in reply.body["content"]
    await fake.wait_for(lambda: len(fake.dms()["101"]) == 2)
    fresh = parse_link(button_url(fake.dms()["101"][1]))
    admitted = await service.redeem(link.room_id, fresh.credential.reveal())
    assert admitted.participant.user_id == "101"


class SlowStore(SqliteStore):
    """The real store, slowed down: a disk or lock that takes longer than Discord waits."""

    delay = 3.5

    async def create_room(self, room: Room, invites: Sequence[Invite], actor: str) -> None:
        await asyncio.sleep(self.delay)
        await super().create_room(room, invites, actor)


async def test_a_slow_store_is_deferred_then_followed_up(tmp_path: Path, fake: FakeDiscord) -> None:
    settings = load_settings(environ=env(fake))
    clock = FakeClock()
    store = SlowStore(tmp_path / "slow.db")
    service = MeetingService(store, settings.meetings.policy(), "http://127.0.0.1:9", clock)
    adapter = DiscordAdapter(settings.discord, CommandHandler(service, clock))
    await store.open()
    await adapter.start()
    try:
        sent = time.monotonic()
        await fake.interact(meet("create", {"invitees": "<@101>", "topic": "Slow"}))
        (reply,) = await fake.wait_followups(1)
        (callback,) = fake.callbacks()
        assert callback.body["type"] == 5
        assert callback.at - sent < 3.0  # acknowledged inside Discord's deadline...
        assert reply.at - sent >= SlowStore.delay  # ...though the work took longer
        assert "Sent a private link to Ana B., Hana." in reply.body["content"]
    finally:
        await adapter.stop()
        await store.close()
