"""Fixtures for the browser tests: one headless Chromium for the whole session (Debian's, driven
by Playwright, never a downloaded browser), the real application serving the browser client's
static files, and a fresh page per test that loads the modules under the real headers.

Everything runs on the session's event loop, because the browser and the server outlive any
one test; ``pytest_collection_modifyitems`` puts this folder's tests on that loop.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, ConsoleMessage, Page, Request, async_playwright
from pytest_asyncio import is_async_test

from tests.support.server import Running, serve

CHROMIUM = Path("/usr/bin/chromium")
# Fake camera and microphone with no permission prompt, and none of the background traffic a
# desktop browser makes on its own: the page may reach only the test's server.
LAUNCH_ARGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HERE = Path(__file__).parent
TEST_PAGE = "/static/e2ee/test.html"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    session_loop = pytest.mark.asyncio(loop_scope="session")
    for item in items:
        if is_async_test(item) and HERE in Path(str(item.path)).parents:
            item.add_marker(session_loop, append=False)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Running]:
    async with serve(tmp_path_factory.mktemp("browser-server")) as running:
        yield running


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def relay_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Running]:
    """The real application with one local relay worker (a process), media on loopback."""
    env = {"CONCLAVE_RELAY_WORKERS": "1", "CONCLAVE_RELAY_HOST_ADDRESSES": "127.0.0.1"}
    async with serve(tmp_path_factory.mktemp("meeting-server"), env=env) as running:
        yield running


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does it)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()


@dataclass
class E2EEPage:
    """A page with the browser client's modules loaded as ``globalThis.conclave``."""

    page: Page
    origin: str
    console_errors: list[str] = field(default_factory=list)
    foreign_requests: list[str] = field(default_factory=list)

    async def run(self, body: str, arg: Any = None) -> Any:
        """Run ``body`` as an async function of ``arg`` in the page, with ``c`` the modules and
        ``h``/``x`` turning hex into bytes and back; returns what it returns (JSON values)."""
        source = (
            "async (arg) => { const c = globalThis.conclave;"
            " const h = c.bytes.hexToBytes, x = c.bytes.bytesToHex;\n" + body + "\n}"
        )
        return await self.page.evaluate(source, arg)

    async def run_file(self, name: str, arg: Any = None) -> Any:
        """Run a JavaScript function expression kept in this folder (test-only code)."""
        # Without the statement's semicolon, so that Playwright sees a function to call.
        source = (HERE / name).read_text(encoding="utf-8").strip().removesuffix(";")
        return await self.page.evaluate(source, arg)


@pytest_asyncio.fixture(loop_scope="session")
async def e2ee(browser: Browser, server: Running) -> AsyncIterator[E2EEPage]:
    context = await browser.new_context()
    page = await context.new_page()
    loaded = E2EEPage(page, server.base_url)

    def on_console(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            loaded.console_errors.append(message.text)

    def on_request(request: Request) -> None:
        if not request.url.startswith(server.base_url + "/"):
            loaded.foreign_requests.append(request.url)

    page.on("console", on_console)
    page.on("pageerror", lambda error: loaded.console_errors.append(str(error)))
    page.on("request", on_request)
    try:
        await page.goto(server.base_url + TEST_PAGE)
        await page.wait_for_function("document.getElementById('status').textContent === 'ready'")
        yield loaded
    finally:
        await context.close()
    # A CSP violation or an uncaught error is a console error: the client must need neither.
    assert loaded.console_errors == []
    assert loaded.foreign_requests == []


def load_vectors(name: str) -> Any:
    return json.loads((HERE.parent / "vectors" / name).read_text(encoding="utf-8"))
