"""Build the chat platform adapters that the settings enable (Slack, Discord)."""

from __future__ import annotations

from aiohttp import web

from adapters.base import PlatformAdapter
from bot.commands.handler import CommandHandler
from bot.config import Settings


def build_platform_adapters(
    settings: Settings, handler: CommandHandler, web_app: web.Application
) -> list[PlatformAdapter]:
    """One adapter per configured platform. ``web_app`` is not started yet, so an adapter may
    add routes to it (Slack's HTTP mode does)."""
    adapters: list[PlatformAdapter] = []
    return adapters
