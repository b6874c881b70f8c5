"""When something fails that nobody planned for, the caller hears a plain sentence and the rest
of the work still happens.

The failures are real: the local fake Slack or Discord answers in a way the adapter has no
entry for (an error code outside its tables, a reply missing a field the client library needs),
and a store file gains a trigger that refuses writes. Nothing of Conclave's own is patched.
"""

from __future__ import annotations

import io
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yarl

from adapters.console import ConsoleAdapter
from adapters.delivery import UNKNOWN_REASON
from bot.commands import render
from bot.commands.handler import CommandHandler
from bot.core.links import parse_link
from bot.core.models import InviteState
from bot.core.service import MeetingService
from bot.store.sqlite import SqliteStore
from tests.conftest import _Keep
from tests.support.fake_discord import DM_BASE, FakeDiscord, meet
from tests.support.fake_slack import FakeSlack
from tests.support.fakes import FakeClock, user
from tests.support.secrets_scan import secret_shaped
from tests.support.server import Running, serve
from tests.support.slack_commands import dm_link, serve_slack
from tests.support.slack_commands import meet as slack_meet
from tests.test_discord_adapter import button_url, env, link_in


def failed_to_reach(room_id: str, who: str, why: str) -> str:
    return (
        f"Could not send a link to:\n  {who}: {why}\n"
        f"They can get their link with /meet join {room_id}"
    )


def assert_no_secret(text: str) -> None:
    assert "/j/" not in text and "#" not in text, text
    assert secret_shaped(text) == [], text


# --- Slack -------------------------------------------------------------------------------


@dataclass
class OddSlack(FakeSlack):
    """A Slack that answers some calls in ways the adapter has no table entry for."""

    channelless: set[str] = field(default_factory=set)  # conversations.open: ok, no channel
    post_errors: dict[str, str] = field(default_factory=dict)  # user id -> postMessage error
    lookup_errors: dict[str, str] = field(default_factory=dict)  # user id -> users.info error

    def _answer(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        if method == "conversations.open" and args.get("users") in self.channelless:
            return {"ok": True}
        if method == "chat.postMessage":
            error = self.post_errors.get(str(args.get("channel")).removeprefix("D"))
            if error is not None:
                return {"ok": False, "error": error}
        if method == "users.info" and args.get("user") in self.lookup_errors:
            return {"ok": False, "error": self.lookup_errors[str(args["user"])]}
        return super()._answer(method, args)


@pytest.fixture
def slack() -> OddSlack:
    return OddSlack(users=FakeSlack.with_people().users)


@pytest.fixture
async def on_slack(tmp_path: Path, slack: OddSlack) -> AsyncIterator[Running]:
    async with serve_slack(tmp_path, slack) as running:
        yield running


async def test_slack_dm_that_raises_unexpectedly_is_reported_and_the_others_go(
    on_slack: Running, slack: OddSlack, no_secrets_in_logs: _Keep
) -> None:
    slack.channelless.add("UBEN")  # the client library trips over the answer: not a refusal
    (reply,) = await slack_meet(on_slack, slack, "<@UANA> <@UBEN> <@UCAT> Sync")
    room_id = dm_link(slack, "UANA").room_id
    assert reply["text"].endswith(
        "\nSent a private link to Ana, Cat, Hana.\n"
        + failed_to_reach(room_id, "Ben", UNKNOWN_REASON)
    )
    assert_no_secret(reply["text"])
    assert sorted(slack.dms()) == ["UANA", "UCAT", "UHANA"]
    assert all(len(messages) == 1 for messages in slack.dms().values())
    invites = await on_slack.app.store.invites_for_room(room_id)
    assert {i.user_id: i.state for i in invites} == dict.fromkeys(
        ("UHANA", "UANA", "UBEN", "UCAT"), InviteState.ISSUED
    )
    assert "direct message to UBEN failed: TypeError" in "\n".join(no_secrets_in_logs.lines)

    # Ben is not stuck: the fallback the host was pointed to works.
    slack.channelless.clear()
    (own,) = await slack_meet(on_slack, slack, f"join {room_id}", user_id="UBEN")
    link = link_in(own["text"])
    admitted = await on_slack.app.service.redeem(room_id, link.credential.reveal())
    assert admitted.participant.user_id == "UBEN"


@pytest.mark.parametrize("where", ["conversations.open", "chat.postMessage"])
async def test_slack_error_codes_outside_the_table_name_the_code(
    on_slack: Running, slack: OddSlack, where: str
) -> None:
    code = "team_access_not_granted"  # a real Slack error the adapter has no sentence for
    if where == "conversations.open":
        slack.dm_errors["UBEN"] = code
    else:
        slack.post_errors["UBEN"] = code
    (reply,) = await slack_meet(on_slack, slack, "<@UANA> <@UBEN> Sync")
    room_id = dm_link(slack, "UANA").room_id
    assert reply["text"].endswith(
        "\nSent a private link to Ana, Hana.\n"
        + failed_to_reach(room_id, "Ben", f"Slack refused the message ({code})")
    )
    assert_no_secret(reply["text"])
    # The fake records refused posts too: only the others matter here.
    delivered = {u: len(m) for u, m in slack.dms().items() if u != "UBEN"}
    assert delivered == {"UANA": 1, "UHANA": 1}


async def test_slack_lookup_failure_is_the_generic_sentence_and_changes_nothing(
    on_slack: Running, slack: OddSlack, no_secrets_in_logs: _Keep
) -> None:
    slack.lookup_errors["UBEN"] = "fatal_error"  # not "no such user": Slack itself failed
    (reply,) = await slack_meet(on_slack, slack, "<@UANA> <@UBEN> Sync")
    assert (reply["response_type"], reply["text"]) == ("ephemeral", render.INTERNAL_ERROR)
    assert slack.called("conversations.open") == [] and slack.dms() == {}
    hana = user("UHANA", workspace="T0CONCLAVE", platform="slack")
    assert await on_slack.app.service.rooms_of(hana) == []
    assert any("command failed" in line for line in no_secrets_in_logs.lines)


# --- Discord -----------------------------------------------------------------------------


@dataclass
class OddDiscord(FakeDiscord):
    """A Discord that answers some DMs with errors the adapter has no table entry for."""

    channelless: set[str] = field(default_factory=set)  # DM channel created, without an id
    refusals: dict[str, tuple[int, int]] = field(default_factory=dict)  # user -> status, code
    unknown_users: set[str] = field(default_factory=set)  # opening the DM channel: 404

    def _answer(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if (method, path) == ("POST", "/users/@me/channels"):
            user_id = str(body["recipient_id"])
            if user_id in self.channelless:
                return 200, {"type": 1, "recipients": []}
            if user_id in self.unknown_users:
                return 404, {"message": "Unknown User", "code": 10013}
        parts = path.strip("/").split("/")
        if method == "POST" and parts[0] == "channels" and parts[-1] == "messages":
            refusal = self.refusals.get(str(int(parts[1]) - DM_BASE))
            if refusal is not None:
                return refusal[0], {"message": "refused by the fake", "code": refusal[1]}
        return super()._answer(method, path, body)


@pytest.fixture
def discord_fake() -> OddDiscord:
    return OddDiscord(members=FakeDiscord.with_people().members)


@pytest.fixture
async def on_discord(
    tmp_path: Path, discord_fake: OddDiscord, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Running]:
    await discord_fake.start()
    # discord.py reads both addresses from class attributes; point them at the fake, then back.
    gateway = yarl.URL(discord_fake.gateway_url)
    monkeypatch.setattr("discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY", gateway)
    monkeypatch.setattr("discord.http.Route.BASE", "https://discord.com/api/v10")
    try:
        async with serve(tmp_path, env(discord_fake)) as running:
            yield running
    finally:
        await discord_fake.stop()


async def discord_create(fake: OddDiscord, invitees: str) -> tuple[str, str]:
    """``/meet create`` by Hana; her private reply and the room id."""
    await fake.interact(meet("create", {"invitees": invitees, "topic": "Sync"}))
    (reply,) = await fake.wait_followups(1)
    room_id = parse_link(button_url(fake.dms()["101"][0])).room_id
    return str(reply.body["content"]), room_id


async def test_discord_dm_that_raises_unexpectedly_is_reported_and_the_others_go(
    on_discord: Running, discord_fake: OddDiscord, no_secrets_in_logs: _Keep
) -> None:
    discord_fake.channelless.add("102")
    text, room_id = await discord_create(discord_fake, "<@101> <@102> <@103>")
    assert text.endswith(
        "\nSent a private link to Ana B., Cat, Hana.\n"
        + failed_to_reach(room_id, "Ben", UNKNOWN_REASON)
    )
    assert_no_secret(text)
    assert sorted(discord_fake.dms()) == ["100", "101", "103"]
    invites = await on_discord.app.store.invites_for_room(room_id)
    assert {i.user_id: i.state for i in invites} == dict.fromkeys(
        ("100", "101", "102", "103"), InviteState.ISSUED
    )
    assert "direct message to 102 failed: KeyError" in "\n".join(no_secrets_in_logs.lines)


@pytest.mark.parametrize(
    ("failure", "code"),
    [("refusal", 50001), ("refusal", 50035), ("unknown_user", 10013)],
)
async def test_discord_error_codes_outside_the_table_name_the_code(
    on_discord: Running, discord_fake: OddDiscord, failure: str, code: int
) -> None:
    if failure == "unknown_user":
        discord_fake.unknown_users.add("102")
    else:
        discord_fake.refusals["102"] = (403 if code == 50001 else 400, code)
    text, room_id = await discord_create(discord_fake, "<@101> <@102>")
    assert text.endswith(
        "\nSent a private link to Ana B., Hana.\n"
        + failed_to_reach(room_id, "Ben", f"Discord refused the message (error {code})")
    )
    assert_no_secret(text)
    assert sorted(discord_fake.dms()) == ["100", "101"]


# --- the handler's last resort ------------------------------------------------------------


def refuse_invites(store: SqliteStore) -> None:
    """From now on, the database refuses every new invite: a fault no code path expects."""
    with sqlite3.connect(store.path) as db:
        db.execute(
            "CREATE TRIGGER refuse_invites BEFORE INSERT ON invites "
            "BEGIN SELECT RAISE(ABORT, 'invites are refused by the test'); END"
        )


@pytest.mark.parametrize("command", ["invite {room} @cat", "@cat Other"])
async def test_an_unexpected_failure_is_a_generic_sentence_and_the_console_carries_on(
    service: MeetingService,
    clock: FakeClock,
    store: SqliteStore,
    no_secrets_in_logs: _Keep,
    command: str,
) -> None:
    out = io.StringIO()
    console = ConsoleAdapter(CommandHandler(service, clock), "hana", out)
    await console.handle_line("/meet @ana Sync")
    room_id = (await service.rooms_of(user("hana")))[0].room.id
    before = await store.invites_for_room(room_id)
    refuse_invites(store)
    start = len(out.getvalue())

    await console.handle_line("/meet " + command.format(room=room_id))
    printed = out.getvalue()[start:]
    assert printed == render.INTERNAL_ERROR + "\n"  # no link, no DM line, no detail
    assert_no_secret(printed)
    assert await store.invites_for_room(room_id) == before
    assert [s.room.id for s in await service.rooms_of(user("hana"))] == [room_id]
    assert any("command failed" in line for line in no_secrets_in_logs.lines)

    # The next command works as before.
    await console.handle_line(f"/meet lock {room_id}")
    assert out.getvalue().endswith(
        f'Locked "Sync" (`{room_id}`): nobody new can join until you unlock it.\n'
    )
