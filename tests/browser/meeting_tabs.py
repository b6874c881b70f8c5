"""Meeting pages driven like a person would: open the invite link, press Join, read what the
page shows. Each tab records what would betray a broken page: console errors (a CSP violation
is one), uncaught errors, and any request or websocket to an origin other than the server's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Page

WAIT = 30.0  # generous: two cores run the browsers, the relay and the Python client at once


async def until(
    check: Callable[[], Awaitable[bool]], what: str, timeout: float = WAIT, every: float = 0.25
) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(every)


@dataclass
class Tab:
    who: str
    context: BrowserContext
    page: Page
    origin: str
    console_errors: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)  # every URL the address bar held

    async def report(self) -> dict[str, Any]:
        """What the page knows (``conclaveMeeting.report()`` in static/app/main.js)."""
        report: dict[str, Any] = await self.page.evaluate("conclaveMeeting.report()")
        return report

    async def screen(self) -> str | None:
        shown: str | None = await self.page.evaluate(
            "document.querySelector('.screen:not([hidden])')?.id ?? null"
        )
        return shown

    async def text(self, selector: str) -> str:
        return (await self.page.locator(selector).inner_text()).strip()

    async def until_screen(self, screen: str, timeout: float = WAIT) -> None:
        async def shown() -> bool:
            return await self.screen() == screen

        await until(shown, f"{self.who} to show {screen}", timeout)

    async def join(self) -> None:
        """Press Join on the pre-join screen, by keyboard: it has the focus."""
        await self.until_screen("screen-prejoin")
        button = self.page.locator("#join-button")
        await button.wait_for(state="visible")
        await until(button.is_enabled, f"{self.who}'s Join button")
        await button.focus()
        await self.page.keyboard.press("Enter")

    async def decoded_from(self, participant_id: str) -> int:
        got = (await self.report())["receiving"].get(participant_id)
        return 0 if got is None else int(got["framesDecoded"])

    async def until_decoding(self, participant_id: str, frames: int = 30) -> None:
        async def decoding() -> bool:
            return await self.decoded_from(participant_id) >= frames

        await until(decoding, f"{self.who} to decode {frames} frames from {participant_id}")

    def problems(self) -> list[str]:
        return self.console_errors + [f"foreign request: {url}" for url in self.foreign]


@asynccontextmanager
async def open_tab(
    browser: Browser,
    origin: str,
    who: str,
    link: str,
    init_script: str | None = None,
    prepare: Callable[[BrowserContext], Awaitable[None]] | None = None,
) -> AsyncIterator[Tab]:
    """A fresh browser context (its own sessionStorage) with ``link`` opened in it;
    ``prepare`` may route its traffic first."""
    context = await browser.new_context(viewport={"width": 1280, "height": 720})
    if init_script is not None:
        await context.add_init_script(init_script)
    if prepare is not None:
        await prepare(context)
    page = await context.new_page()
    tab = Tab(who, context, page, origin)

    def on_console(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            tab.console_errors.append(message.text)

    def on_url(url: str) -> None:
        if not url.startswith(origin + "/") and not url.startswith(("data:", "blob:")):
            tab.foreign.append(url)

    ws_origin = "ws" + origin.removeprefix("http")
    page.on("console", on_console)
    page.on("pageerror", lambda error: tab.console_errors.append(str(error)))
    page.on("request", lambda request: on_url(request.url))
    page.on(
        "websocket",
        lambda ws: None if ws.url.startswith(ws_origin + "/") else tab.foreign.append(ws.url),
    )
    page.on("framenavigated", lambda frame: tab.addresses.append(frame.url))
    try:
        await page.goto(link)
        tab.addresses.append(page.url)
        yield tab
    finally:
        await context.close()


def screenshot_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "screenshots"
    folder.mkdir(exist_ok=True)
    return folder
