"""The composition root: the one place that builds every part from the settings.

Nothing in Conclave connects or listens at import time; ``Application.start`` does it all,
and ``Application.stop`` undoes it in reverse.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
import socket
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
from bot.config import Settings, section_env
from bot.core.service import MeetingService
from bot.core.sweeper import run_sweeper
from bot.errors import ConclaveError
from bot.ice_servers import IceServer, ice_servers_for
from bot.metrics import Metrics
from bot.relay.local import LocalWorkers
from bot.relay.pool import RelayPool
from bot.secret import Secret
from bot.signaling.hub import Hub
from bot.store.sqlite import SqliteStore
from bot.web.app import create_app, make_runner, metrics_app, metrics_handler
from bot.web.health import Health

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
    metrics: Metrics = field(default_factory=Metrics)
    # The separate metrics listener's application (``metrics.listen``), if there is one.
    metrics_app: web.Application | None = None
    platforms: list[PlatformAdapter] = field(default_factory=list)
    relay_pool: RelayPool | None = None
    relay_secret: Secret = field(default_factory=lambda: Secret(""))
    _workers: LocalWorkers | None = None
    _runner: web.AppRunner | None = None
    _metrics_runner: web.AppRunner | None = None
    _listener: socket.socket | None = None  # bound by ``build`` for ``server.port = 0``
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self, console_lines: AsyncIterator[str] | None = None) -> None:
        await self.store.open()
        self._runner = make_runner(self.web_app, self.settings.server.idle_timeout)
        await self._runner.setup()
        host, port = self.settings.server.host, self.settings.server.port
        site: web.BaseSite = (
            web.TCPSite(self._runner, host, port)
            if self._listener is None
            else web.SockSite(self._runner, self._listener)
        )
        try:
            await site.start()
        except OSError as exc:
            await self.stop()
            raise StartupError(f"Cannot listen on {host}:{port}: {exc.strerror or exc}.") from None
        log.info("listening on %s:%d; links use %s", host, port, self.settings.server.base_url)
        await self._start_metrics_listener()
        await self._start_relays()
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

    @property
    def local_workers(self) -> LocalWorkers | None:
        return self._workers

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        """Where the separate metrics listener listens (its real port, for ``:0``)."""
        if self._metrics_runner is None or not self._metrics_runner.addresses:
            return None
        host, port = self._metrics_runner.addresses[0][:2]
        return str(host), int(port)

    async def _start_metrics_listener(self) -> None:
        if self.metrics_app is None:
            return
        host, port = self.settings.metrics.address
        self._metrics_runner = make_runner(self.metrics_app, self.settings.server.idle_timeout)
        await self._metrics_runner.setup()
        try:
            await web.TCPSite(self._metrics_runner, host, port).start()
        except OSError as exc:
            await self.stop()
            raise StartupError(
                f"Cannot listen for metrics on {host}:{port}: {exc.strerror or exc}."
            ) from None
        log.info("serving /metrics on %s:%d", *(self.metrics_address or (host, port)))

    async def _start_relays(self) -> None:
        count = self.settings.relay.workers
        if self.relay_pool is None or count == 0:
            return
        self._workers = LocalWorkers(
            count,
            self.settings.server.local_url,
            local_worker_env(self.settings, self.relay_secret),
        )
        await self._workers.start()
        if await self.relay_pool.wait_for_workers(count, within=20.0):
            log.info("%d relay worker(s) ready", count)
        else:
            log.warning("relay workers are slow to start; media waits until one is ready")

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
        if self._workers is not None:
            await self._workers.stop()
            self._workers = None
        for runner in (self._metrics_runner, self._runner):
            if runner is not None:
                await runner.cleanup()
        self._runner = self._metrics_runner = None
        if self._listener is not None:
            self._listener.close()  # never started, or the server has closed it already
            self._listener = None
        await self.store.close()


def local_worker_env(settings: Settings, secret: Secret) -> dict[str, str]:
    """A local relay worker's settings as this process resolved them, whatever their source
    (the worker reads no config file): every relay key, with this run's secret, and the log
    level. Secrets are revealed: for the worker's environment only."""
    relay = dataclasses.replace(settings.relay, secret=secret)
    return {**section_env(relay), **section_env(settings.logging)}


def _bind_any_port(settings: Settings) -> tuple[Settings, socket.socket | None]:
    """``server.port = 0``: bind a free port now, so that links carry the real one.

    The bound socket is handed to the web server at start, so the port is never released and
    taken again in between (another process could take it).
    """
    server = settings.server
    if server.port != 0:
        return settings, None
    listener: socket.socket | None = None
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            server.host, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        listener = socket.socket(family, kind, proto)
        listener.bind(address)
    except OSError as exc:
        if listener is not None:
            listener.close()
        raise StartupError(f"Cannot listen on {server.host}:0: {exc.strerror or exc}.") from None
    port = int(listener.getsockname()[1])
    return dataclasses.replace(settings, server=dataclasses.replace(server, port=port)), listener


def build(settings: Settings, clock: Clock | None = None, out: TextIO | None = None) -> Application:
    settings, listener = _bind_any_port(settings)
    clock = clock or SystemClock()
    store = SqliteStore(settings.storage.path)
    service = MeetingService(store, settings.meetings.policy(), settings.server.base_url, clock)
    handler = CommandHandler(service, clock)
    # Local workers only need a secret shared with this process: a fresh one per run will do.
    secret = settings.relay.secret or Secret(secrets.token_urlsafe(32))
    pool = RelayPool(secret)
    metrics = Metrics()

    def ice_servers(participant_id: str) -> tuple[IceServer, ...]:
        return ice_servers_for(settings.relay, participant_id, clock.now())

    hub = Hub(service, settings.signaling, relay=pool, metrics=metrics, ice_servers=ice_servers)
    metrics.watch(hub, pool)
    scrape = metrics_handler(metrics, settings.metrics.token)
    # The hub hears the core's events and the relay's; neither knows the hub.
    service.events.subscribe(hub.on_event)
    pool.on_offer(hub.media.relay_offer)
    pool.on_lost(hub.media.relay_lost)
    pool.on_peer_lost(hub.media.peer_lost)
    web_app = create_app(
        hub,
        settings.server.base_url,
        pool.handle_worker,
        idle_timeout=settings.server.idle_timeout,
        health=Health(store, pool),
        metrics=scrape if settings.metrics.public else None,
    )
    platforms = build_platform_adapters(settings, handler, web_app, metrics)
    # The console is the adapter of last resort: with no chat platform configured, it is on.
    console = (
        None
        if platforms
        else ConsoleAdapter(
            handler,
            settings.console.user,
            out or sys.stdout,
            url=settings.server.base_url,
            metrics=metrics,
        )
    )
    return Application(
        settings=settings,
        store=store,
        service=service,
        handler=handler,
        hub=hub,
        web_app=web_app,
        console=console,
        metrics=metrics,
        metrics_app=(
            metrics_app(scrape, settings.server.idle_timeout) if settings.metrics.listen else None
        ),
        platforms=platforms,
        relay_pool=pool,
        relay_secret=secret,
        _listener=listener,
    )
