"""Fakes that stand in for the world: a clock the test moves by hand, local servers' ports."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web

from bot.core.models import UserRef


class FakeClock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds


def loopback_socket() -> socket.socket:
    """A TCP socket bound to a free loopback port, for a server to listen on
    (``web.SockSite``) when its URL must be known before it is built: the port is never
    released in between, so nothing else can take it."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
    except OSError:
        s.close()
        raise
    return s


@contextmanager
def refusing_port() -> Iterator[int]:
    """A loopback port that refuses connections for as long as the block runs.

    The socket is bound and never listens, so the port stays taken (no other test or process
    can start listening on it) and every connection attempt is refused.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])


def user(name: str, workspace: str = "local", platform: str = "console") -> UserRef:
    return UserRef(platform, workspace, name, name.capitalize())


async def start_local_app(app: web.Application) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on a free loopback port: the runner (to clean up) and the port."""
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    return runner, await listen_on_any_port(runner)


async def listen_on_any_port(runner: web.AppRunner) -> int:
    """Start ``runner`` on a loopback port the system picks; the port it got."""
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    (address,) = runner.addresses
    return int(address[1])
