"""The composition root: the one place that builds every part from the settings.

Nothing in Conclave connects or listens at import time; ``Application.start`` does it all,
and ``Application.stop`` undoes it in reverse.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TextIO

from aiohttp import web

from adapters.base import PlatformAdapter
from adapters.console import ConsoleAdapter, stdin_lines
from adapters.platforms import build_platform_adapters
from bot.clock import Clock, SystemClock
from bot.commands.handler import CommandHandler
from bot.config import Settings
from bot.core.service import MeetingService
from bot.core.sweeper import run_sweeper
from bot.errors import ConclaveError
from bot.signaling.hub import Hub
from bot.store.sqlite import SqliteStore
from bot.web.app import create_app

log = logging.getLogger(__name__)


class StartupError(ConclaveError):
    code = "startup"


@dataclass
class Application:
    settings: Settings
    store: SqliteStore
    service: MeetingService
    handler: CommandHandler
    hub: Hub
    web_app: web.Application
    console: ConsoleAdapter | None
    platforms: list[PlatformAdapter] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self, console_lines: AsyncIterator[str] | None = None) -> None:
        await self.store.open()
        self._runner = web.AppRunner(self.web_app, handle_signals=False)
        await self._runner.setup()
        host, port = self.settings.server.host, self.settings.server.port
        try:
            await web.TCPSite(self._runner, host, port).start()
        except OSError as exc:
            await self.stop()
            raise StartupError(f"Cannot listen on {host}:{port}: {exc.strerror or exc}.") from None
        log.info("listening on %s:%d; links use %s", host, port, self.settings.server.base_url)
        self._tasks.append(
            asyncio.create_task(
                run_sweeper(self.service, self.settings.meetings.sweep_interval), name="sweeper"
            )
        )
        for adapter in self.platforms:
            try:
                await adapter.start()
            except Exception as exc:
                await self.stop()
                raise StartupError(f"Cannot start the {adapter.name} adapter: {exc}") from None
            log.info("%s adapter started", adapter.name)
        if self.console is not None:
            lines = console_lines if console_lines is not None else stdin_lines()
            self._tasks.append(asyncio.create_task(self.console.run(lines), name="console"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        for adapter in self.platforms:
            with contextlib.suppress(Exception):
                await adapter.stop()
        await self.hub.close_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.store.close()


def build(settings: Settings, clock: Clock | None = None, out: TextIO | None = None) -> Application:
    clock = clock or SystemClock()
    store = SqliteStore(settings.storage.path)
    service = MeetingService(store, settings.meetings.policy(), settings.server.base_url, clock)
    handler = CommandHandler(service, clock)
    hub = Hub(service, hello_timeout=settings.signaling.hello_timeout)
    web_app = create_app(hub, settings.server.base_url)
    platforms = build_platform_adapters(settings, handler, web_app)
    # The console is the adapter of last resort: with no chat platform configured, it is on.
    console = (
        None if platforms else ConsoleAdapter(handler, settings.console.user, out or sys.stdout)
    )
    return Application(
        settings=settings,
        store=store,
        service=service,
        handler=handler,
        hub=hub,
        web_app=web_app,
        console=console,
        platforms=platforms,
    )
