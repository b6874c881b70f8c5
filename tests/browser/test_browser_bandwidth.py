"""A browser publishing to a real relay worker gets bandwidth feedback (REMB), so its video climbs.

Chromium's video sender starts at 300 kbit/s and sends no faster than its bandwidth estimate.
The relay answers with goog-remb and abs-send-time (not transport-cc, whose feedback it does not
send) and reports the publisher's uplink in REMB (``bot.rtc.bandwidth``). Here the fake camera
publishes through a relay worker, driven by the fake core of tests/relay over its real control
channel, to an aiortc subscriber; the page's own ``getStats`` must show, within 15 s (issue 12):

- the camera's full height at more than 300 kbit/s (``frameHeight``, ``bytesSent``);
- a send-side estimate (``availableOutgoingBitrate``) of at least 2 Mbit/s. Only receiver
  feedback gives that: from receiver reports alone Chromium raises its estimate by 8 % a second
  at most, 300 kbit/s x 1.08^15 = 950 kbit/s. The relay's first REMB states its ceiling, which
  Chromium takes as its start rate. (Chromium's fake camera pattern needs only about 500
  kbit/s, so without feedback it too reaches 480 px and 300 kbit/s, after some 5 s: the first
  check alone would not show the feedback works. A real camera's picture, or a file fed to the
  fake camera, needs more, and without feedback drops to 240 px.)
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final

import pytest_asyncio
from playwright.async_api import Browser, Page

from bot.config import RelaySettings
from bot.relay import control
from bot.relay.worker import run_worker
from bot.rtc.bandwidth import MAX_PUBLISH_BITRATE
from tests.relay.relay_fakes import LOOPBACK, SECRET, FakeClient, FakeCore, eventually
from tests.support.server import Running

PAGE: Final = "/static/tests/bandwidth.html"
CAMERA: Final = (640, 480)  # asked of the fake camera, which gives it
CLIMB_SECONDS: Final = 15.0  # the bound, from the moment the relay answered
MIN_KBPS: Final = 300.0
# Out of reach of a loss-driven ramp in CLIMB_SECONDS (about 950 kbit/s), within the ceiling.
MIN_ESTIMATE_KBPS: Final = 0.8 * MAX_PUBLISH_BITRATE / 1000


@dataclass(frozen=True)
class Sample:
    """One look at the page's outbound video (``getStats`` outbound-rtp)."""

    at: float  # seconds since the relay answered
    frame_height: int
    kbps: float  # bytesSent over the last second or so
    estimate_kbps: float  # the candidate pair's availableOutgoingBitrate
    limited_by: str  # qualityLimitationReason

    def __str__(self) -> str:
        return (
            f"{self.at:5.1f} s: {self.frame_height:4d} px, {self.kbps:5.0f} kbit/s, "
            f"estimate {self.estimate_kbps:5.0f} kbit/s, limited by {self.limited_by or '-'}"
        )


class BrowserPublisher:
    """The test page as a relay participant the fake core drives (relay_fakes.Participant)."""

    def __init__(self, name: str, page: Page) -> None:
        self.name = name
        self.page = page
        self.joined = asyncio.Event()
        self.negotiating = asyncio.Lock()
        self.camera: tuple[int, int] = (0, 0)
        self.answer = ""  # the relay's answer to the page's offer

    async def offer(self) -> dict[str, str]:
        published = await self.page.evaluate(
            "([w, h]) => globalThis.bandwidth.publish(w, h)", list(CAMERA)
        )
        self.camera = (published["width"], published["height"])
        return control.sdp("offer", published["sdp"])

    async def accept_answer(self, answer: dict[str, str]) -> None:
        self.answer = answer["sdp"]
        await self.page.evaluate("(sdp) => globalThis.bandwidth.acceptAnswer(sdp)", answer["sdp"])

    async def answer_offer(self, offer: dict[str, str]) -> dict[str, str]:
        sdp = await self.page.evaluate(
            "(sdp) => globalThis.bandwidth.answerOffer(sdp)", offer["sdp"]
        )
        return control.sdp("answer", sdp)

    def start_media(self) -> None:
        pass  # the camera sends once the connection is up

    async def close(self) -> None:
        await self.page.evaluate("globalThis.bandwidth.close()")

    async def outbound(self) -> dict[str, Any] | None:
        stats: dict[str, Any] | None = await self.page.evaluate("globalThis.bandwidth.outbound()")
        return stats


async def watch_climb(publisher: BrowserPublisher, seconds: float) -> list[Sample]:
    """Sample the outbound video twice a second until it has shown the camera's height above
    MIN_KBPS and an estimate of MIN_ESTIMATE_KBPS, or ``seconds`` pass; every sample."""
    start = time.monotonic()
    samples: list[Sample] = []
    history: list[tuple[float, int]] = []  # (stats timestamp in ms, bytesSent)
    while (now := time.monotonic() - start) < seconds:
        stats = await publisher.outbound()
        if stats is not None:
            history.append((float(stats["timestamp"]), int(stats["bytesSent"])))
            older = [h for h in history if history[-1][0] - h[0] >= 1000.0]
            kbps = 0.0
            if older:  # the newest against the newest at least a second older
                (t0, b0), (t1, b1) = older[-1], history[-1]
                kbps = (b1 - b0) * 8 / (t1 - t0)  # bytes per ms x 8 = kbit/s
            samples.append(
                Sample(
                    now,
                    int(stats["frameHeight"]),
                    kbps,
                    float(stats["availableOutgoingBitrate"]) / 1000,
                    str(stats["qualityLimitationReason"]),
                )
            )
            if climbed(samples, publisher.camera[1]) and estimated(samples):
                return samples
        await asyncio.sleep(0.5)
    return samples


def climbed(samples: list[Sample], height: int) -> bool:
    return any(s.frame_height >= height and s.kbps > MIN_KBPS for s in samples)


def estimated(samples: list[Sample]) -> bool:
    return any(s.estimate_kbps >= MIN_ESTIMATE_KBPS for s in samples)


@pytest_asyncio.fixture(loop_scope="session")
async def camera_page(browser: Browser, server: Running) -> AsyncIterator[Page]:
    context = await browser.new_context()
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        await page.goto(server.base_url + PAGE)
        await page.wait_for_function("document.getElementById('status').textContent === 'ready'")
        yield page
    finally:
        await context.close()
    assert errors == []


@pytest_asyncio.fixture(loop_scope="session")
async def relay_core() -> AsyncIterator[FakeCore]:
    """A fake core with an in-process relay worker on loopback, ready for joins."""
    core = FakeCore(SECRET)
    await core.start()
    stop = asyncio.Event()
    settings = RelaySettings(secret=SECRET, host_addresses=LOOPBACK)
    worker = asyncio.create_task(run_worker(core.url, "bandwidth-1", settings, stop=stop))
    try:
        await asyncio.wait_for(core.ready.wait(), 20)
        yield core
    finally:
        try:
            for client in core.clients.values():
                await client.close()
        finally:
            stop.set()
            await asyncio.wait_for(worker, 20)
            await core.stop()


async def test_browser_video_climbs_to_full_resolution(
    camera_page: Page, relay_core: FakeCore
) -> None:
    publisher = BrowserPublisher("cam", camera_page)
    await relay_core.join("room", publisher)
    assert publisher.camera == CAMERA, f"the fake camera gave {publisher.camera}"
    # REMB over abs-send-time, and not transport-cc: negotiated, Chromium would wait for
    # transport feedback the relay never sends.
    answer = publisher.answer
    assert re.search(r"^a=rtcp-fb:\d+ goog-remb\r?$", answer, re.M), answer
    assert re.search(r"^a=extmap:\d+ \S+/abs-send-time\r?$", answer, re.M), answer
    assert "transport-cc" not in answer and "transport-wide-cc" not in answer, answer
    subscriber = FakeClient("sub", publish=False)
    await relay_core.join("room", subscriber)

    samples = await watch_climb(publisher, CLIMB_SECONDS)
    shown = "\n".join(str(s) for s in samples)
    assert climbed(samples, CAMERA[1]), (
        f"the browser's video did not reach {CAMERA[1]} px above {MIN_KBPS:.0f} kbit/s "
        f"within {CLIMB_SECONDS:.0f} s:\n{shown}"
    )
    assert estimated(samples), (
        f"the browser's bandwidth estimate did not reach {MIN_ESTIMATE_KBPS:.0f} kbit/s within "
        f"{CLIMB_SECONDS:.0f} s: no REMB reached it\n{shown}"
    )

    # What was measured went through the relay: the subscriber gets the browser's frames.
    def forwarded() -> bool:
        got = subscriber.received.get(("cam", "video"))
        return got is not None and len(got.frames) >= 30

    await eventually(forwarded, "the subscriber receives the browser's video")
