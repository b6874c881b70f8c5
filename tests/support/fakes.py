"""Fakes that stand in for the world: a clock the test moves by hand."""

from __future__ import annotations

import socket

from aiohttp import web

from bot.core.models import UserRef


class FakeClock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def user(name: str, workspace: str = "local", platform: str = "console") -> UserRef:
    return UserRef(platform, workspace, name, name.capitalize())


async def start_local_app(app: web.Application) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on a free loopback port: the runner (to clean up) and the port."""
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port
