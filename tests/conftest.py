"""Fixtures shared by the suite.

Every test runs with the root logger at DEBUG and a handler that keeps every record; after the
test, no record may contain anything shaped like a secret. That is how "logs captured at DEBUG
during the whole suite contain no secret or token" is enforced test by test.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import pytest

from bot.core.models import UserRef
from bot.core.policy import MeetingPolicy
from bot.core.service import MeetingService
from bot.store.sqlite import SqliteStore
from tests.support.fakes import FakeClock, user
from tests.support.secrets_scan import secret_shaped


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self.lines.append(f"{record.name}: {text}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A test skipped because a package is missing fails the run: the package belongs in
    pyproject.toml's test extra, so a skip can only hide a missing declaration."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    skipped = reporter.stats.get("skipped", [])
    missing = [r.nodeid for r in skipped if "could not import" in str(r.longrepr)]
    if missing:
        reporter.ensure_newline()
        reporter.write_line(
            f"FAILED: skipped for a missing package: {', '.join(missing)}", red=True
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True)
def no_secrets_in_logs() -> Iterator[_Keep]:
    root = logging.getLogger()
    keep = _Keep()
    previous = root.level
    root.addHandler(keep)
    root.setLevel(logging.DEBUG)
    try:
        yield keep
    finally:
        root.removeHandler(keep)
        root.setLevel(previous)
    leaked = [line for line in keep.lines if secret_shaped(line)]
    assert not leaked, f"secret-shaped values were logged: {leaked[:3]}"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "conclave.db")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def policy() -> MeetingPolicy:
    return MeetingPolicy()


@pytest.fixture
def service(store: SqliteStore, policy: MeetingPolicy, clock: FakeClock) -> MeetingService:
    return MeetingService(store, policy, "http://127.0.0.1:8080", clock)


@pytest.fixture
def host() -> UserRef:
    return user("hana")


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    """Async resources a test opens (websockets, sessions), closed when it ends."""
    async with AsyncExitStack() as s:
        yield s


@pytest.fixture
async def http(stack: AsyncExitStack) -> aiohttp.ClientSession:
    return await stack.enter_async_context(aiohttp.ClientSession())
