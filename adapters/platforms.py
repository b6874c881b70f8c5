"""Build the chat platform adapters that the settings enable (Slack, Discord)."""

from __future__ import annotations

from aiohttp import web

from adapters.base import PlatformAdapter
from bot.commands.handler import CommandHandler
from bot.config import Settings
from bot.metrics import Metrics


def build_platform_adapters(
    settings: Settings,
    handler: CommandHandler,
    web_app: web.Application,
    metrics: Metrics | None = None,
) -> list[PlatformAdapter]:
    """One adapter per configured platform. ``web_app`` is not started yet, so an adapter may
    add routes to it (Slack's HTTP mode does). Each counts its commands in ``metrics``."""
    adapters: list[PlatformAdapter] = []
    # Each library is imported only when its platform is configured: they are large.
    if settings.slack.enabled:
        from adapters.slack.adapter import SlackAdapter

        adapters.append(SlackAdapter(settings.slack, handler, web_app, metrics))
    if settings.discord.enabled:
        from adapters.discord.adapter import DiscordAdapter

        adapters.append(DiscordAdapter(settings.discord, handler, metrics))
    return adapters
