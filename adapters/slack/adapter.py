"""Slack adapter: the ``/meet`` slash command on slack-bolt's ``AsyncApp``, in Socket Mode or
HTTP mode, with invitations delivered by direct message."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from adapters.delivery import caller_reply, count, deliver
from adapters.library_logs import quiet_chat_libraries
from adapters.slack import events
from adapters.slack.dm import SlackDirectMessages
from adapters.slack.message import JOIN_ACTION, escape
from adapters.slack.people import PLATFORM, SlackPeople
from adapters.slack.settings import SlackSettings
from bot.commands.handler import CommandHandler
from bot.metrics import Metrics

log = logging.getLogger(__name__)

COMMAND = "/meet"


class SlackAdapter:
    name = "slack"

    def __init__(
        self,
        settings: SlackSettings,
        handler: CommandHandler,
        web_app: web.Application,
        metrics: Metrics | None = None,
    ) -> None:
        quiet_chat_libraries()
        self._settings = settings
        self._handler = handler
        self._metrics = metrics
        self.client = AsyncWebClient(
            token=settings.bot_token.reveal(),
            base_url=settings.api_url,
            logger=logging.getLogger("slack_sdk.conclave"),
            retry_handlers=[AsyncConnectionErrorRetryHandler(), AsyncRateLimitErrorRetryHandler()],
        )
        self.bolt = AsyncApp(
            client=self.client,
            name="conclave",
            # A named logger under "slack_bolt": Bolt's own default copies the root level.
            logger=logging.getLogger("slack_bolt.conclave"),
            # HTTP mode verifies in events.mount; Socket Mode needs no signature.
            request_verification_enabled=False,
        )
        self.bolt.command(COMMAND)(self._on_meet)
        self.bolt.action(JOIN_ACTION)(self._on_join_click)
        self._people = SlackPeople(self.client)
        self._dms = SlackDirectMessages(self.client)
        handler.notify_hosts(PLATFORM, self._dms.notify)
        self._socket: AsyncSocketModeHandler | None = None
        self._session: aiohttp.ClientSession | None = None
        self._bot_user_id: str | None = None
        if settings.mode == "http":
            events.mount(web_app, self.bolt, settings.signing_secret)

    async def start(self) -> None:
        # One pooled session for every Web API call (slack_sdk opens one per call otherwise).
        self._session = aiohttp.ClientSession()
        self.client.session = self._session
        auth = await self.client.auth_test()  # fails fast on a bad token, and names our bot
        self._bot_user_id = str(auth["user_id"])
        log.info(
            "slack: signed in to team %s as bot user %s", auth.get("team_id"), self._bot_user_id
        )
        if self._settings.mode == "socket":
            self._socket = AsyncSocketModeHandler(
                self.bolt, self._settings.app_token.reveal(), web_client=self.client
            )
            await self._socket.connect_async()  # type: ignore[no-untyped-call]  # untyped in Bolt

    @property
    def bot_user_id(self) -> str | None:
        return self._bot_user_id

    async def stop(self) -> None:
        if self._socket is not None:
            await self._socket.close_async()  # type: ignore[no-untyped-call]
            self._socket = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _on_meet(self, ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()  # within Slack's 3 s, before any work; the answer goes through respond
        team, user = str(body.get("team_id", "")), str(body.get("user_id", ""))
        actor = await self._people.actor(team, user, str(body.get("user_name", "")))
        text = str(body.get("text", ""))
        resolve = self._people.resolver(team)
        outcome = await self._handler.handle(actor, text, resolve, self.bot_user_id)
        report = await deliver(outcome.invitations, self._dms.send)
        count(self._metrics, PLATFORM, outcome, report)
        await respond(text=escape(caller_reply(outcome, report)), response_type="ephemeral")
        if outcome.announcement is not None:
            await respond(text=escape(outcome.announcement), response_type="in_channel")

    @staticmethod
    async def _on_join_click(ack: AsyncAck) -> None:
        # The button is a plain link; Slack still reports the click, which needs only an ack.
        await ack()
