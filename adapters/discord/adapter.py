"""Discord adapter: the ``/meet`` app command group on discord.py, with invitations delivered
by direct message."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import discord
from discord import app_commands
from discord.http import Route

from adapters.delivery import caller_reply, count, deliver
from adapters.discord import people
from adapters.discord.commands import meet_group
from adapters.discord.dm import DiscordDirectMessages
from adapters.discord.install import install_url
from adapters.discord.settings import DiscordSettings
from adapters.library_logs import quiet_chat_libraries
from bot.commands import render
from bot.commands.handler import CommandHandler
from bot.errors import ConclaveError
from bot.metrics import Metrics

log = logging.getLogger(__name__)


class DiscordSetupError(ConclaveError):
    code = "discord_setup"


MAX_CONTENT = 2000  # Discord's limit on a message's text
# Names in our text are people's chosen names: never let one ping "@everyone" or a role.
PRIVATE: dict[str, Any] = {"ephemeral": True, "allowed_mentions": discord.AllowedMentions.none()}
PUBLIC: dict[str, Any] = {"ephemeral": False, "allowed_mentions": discord.AllowedMentions.none()}


def fit(text: str) -> str:
    return text if len(text) <= MAX_CONTENT else text[: MAX_CONTENT - 1] + "…"


def _report_gateway_end(task: asyncio.Task[None]) -> None:
    # discord.py reconnects by itself; the task ends only at stop() or on a fatal error.
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("discord: the gateway connection failed for good: %s", type(exc).__name__)


class DiscordAdapter:
    name = "discord"

    def __init__(
        self, settings: DiscordSettings, handler: CommandHandler, metrics: Metrics | None = None
    ) -> None:
        quiet_chat_libraries()
        self._settings = settings
        self._handler = handler
        self._metrics = metrics
        # Only the (unprivileged) guilds intent, which discord.py's state expects: slash
        # commands arrive regardless of intents, and members are looked up over REST.
        self.client = discord.Client(intents=discord.Intents(guilds=True))
        self.tree = app_commands.CommandTree(self.client)
        self._guild = discord.Object(int(settings.guild_id)) if settings.guild_id else None
        self.tree.add_command(meet_group(self._run), guild=self._guild)
        self.tree.error(self._on_error)
        self._dms = DiscordDirectMessages(self.client)
        handler.notify_hosts(people.PLATFORM, self._dms.notify)
        self._gateway: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # discord.py builds every REST URL on this class attribute; one adapter per process.
        Route.BASE = self._settings.api_url.rstrip("/")
        await self.client.login(self._settings.token.reveal())
        app_id = self.client.application_id
        assert app_id is not None  # login fetched the application
        if self._settings.application_id and self._settings.application_id != str(app_id):
            raise DiscordSetupError(
                f"discord.application_id is {self._settings.application_id}, but the token "
                f"belongs to application {app_id}"
            )
        # In one guild, commands appear at once; globally, Discord may take up to an hour.
        await self.tree.sync(guild=self._guild)
        log.info("discord: add the bot to a server with %s", install_url(app_id))
        self._gateway = asyncio.create_task(self.client.connect(), name="discord-gateway")
        self._gateway.add_done_callback(_report_gateway_end)

    async def stop(self) -> None:
        await self.client.close()
        if self._gateway is not None:
            self._gateway.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._gateway
            self._gateway = None

    @property
    def bot_user_id(self) -> str | None:
        user = self.client.user
        return str(user.id) if user is not None else self._settings.application_id or None

    async def _run(self, interaction: discord.Interaction, text: str) -> None:
        # Every command touches the store: acknowledge first, well within Discord's 3 s.
        await interaction.response.defer(ephemeral=True, thinking=True)
        assert interaction.guild_id is not None  # the group is guild-only
        resolve = people.resolver(self.client, interaction.guild_id)
        actor = people.actor(interaction)
        outcome = await self._handler.handle(actor, text, resolve, self.bot_user_id)
        report = await deliver(outcome.invitations, self._dms.send)
        count(self._metrics, people.PLATFORM, outcome, report)
        await interaction.followup.send(fit(caller_reply(outcome, report)), **PRIVATE)
        if outcome.announcement is not None:
            await interaction.followup.send(fit(outcome.announcement), **PUBLIC)

    async def _on_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        """A subcommand this version does not know (a stale registration), or a failure after
        the core answered: tell the caller privately instead of leaving Discord's spinner."""
        cause = getattr(error, "original", error)
        log.warning("discord: /meet failed: %s", type(cause).__name__)
        if isinstance(error, app_commands.CommandNotFound):
            text = "I don't know that /meet command; see /meet help."
        else:
            text = render.INTERNAL_ERROR
        if interaction.response.is_done():
            await interaction.followup.send(text, **PRIVATE)
        else:
            await interaction.response.send_message(text, **PRIVATE)
