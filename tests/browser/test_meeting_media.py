"""Browsers meet for real: the meeting page in headless Chromium (fake camera and microphone),
`conclave join` as a process, the real server in this process and a real relay worker process,
all on loopback. What each side decodes was encrypted by the other's own code: the relay only
forwards, and every page counts the frames that failed to decrypt (none may)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, WebSocketRoute

from tests.browser.meeting_tabs import Tab, open_tab, screenshot_dir, until
from tests.media.test_three_party import audio_seconds, video_frames
from tests.support.meeting import make_meeting
from tests.support.proc import BotProcess, conclave_env
from tests.support.server import Running

pytestmark = pytest.mark.slow

CODE_LINE = re.compile(r"^security code: (\d{5}(?: \d{5}){5})$")
JOINED_LINE = re.compile(r"^joined .* participant (\S+)$")
PYTHON_SECONDS = 20  # long enough for both pages to see it and for its recordings


@asynccontextmanager
async def tabs(
    browser: Browser, server: Running, links: dict[str, str]
) -> AsyncIterator[dict[str, Tab]]:
    async with AsyncExitStack() as stack:
        opened = {
            who: await stack.enter_async_context(open_tab(browser, server.base_url, who, link))
            for who, link in links.items()
        }
        yield opened
        for tab in opened.values():
            assert tab.problems() == [], (tab.who, tab.problems())


def conclave_join(tmp_path: Path, link: str) -> BotProcess:
    """`conclave join -` recording what it receives; the link goes in on standard input."""
    args = ["join", "-", "--duration", str(PYTHON_SECONDS), "--record", str(tmp_path / "rec")]
    env = conclave_env(0, tmp_path / "unused.db")
    client = BotProcess(args, env, tmp_path, tmp_path / "join.stderr")
    client.send(link)
    client.close_stdin()
    return client


def drained(client: BotProcess) -> list[str]:
    """Every line the client printed, once it has exited."""
    with contextlib.suppress(AssertionError):  # end of output
        client.stdout.wait_for(lambda line: False, timeout=10)
    return client.stdout.lines


async def counts(tab: Tab) -> dict[str, Any]:
    found: dict[str, Any] = (await tab.report())["counts"]
    return found


async def drops_none_while_decoding(tabs: dict[str, Tab], ids: dict[str, str]) -> None:
    """Each page decodes 30 more video frames from each other participant in ``ids`` without
    one frame failing to decrypt or being refused. (A newcomer may drop frames sent in its
    first second, under keys from before it came, which it is never given; the Python client
    counts those too. After that, nothing may fail.)"""
    before = {who: (await counts(tab))["dropped"] for who, tab in tabs.items()}
    for me, tab in tabs.items():
        for other, pid in ids.items():
            if other != me:
                await keeps_decoding(tab, pid)
    for who, tab in tabs.items():
        seen = await counts(tab)
        assert seen["dropped"] == before[who], (who, seen)
        assert seen["misattributed"] == 0, (who, seen)


async def test_two_browsers_and_conclave_join_meet_end_to_end_encrypted(
    browser: Browser, relay_server: Running, tmp_path: Path
) -> None:
    meeting = await make_meeting(relay_server, "ana", "ben", topic="Weekly sync")
    links = {w: meeting.invites[w].link.reveal() for w in ("hana", "ana")}
    shots = screenshot_dir(tmp_path)
    async with tabs(browser, relay_server, links) as pages:
        hana, ana = pages["hana"], pages["ana"]
        await hana.until_screen("screen-prejoin")
        await hana.page.screenshot(path=shots / "prejoin.png")
        for tab in (hana, ana):
            await tab.join()
            await tab.until_screen("screen-meeting")
        client = conclave_join(tmp_path, meeting.invites["ben"].link.reveal())
        try:
            joined = await asyncio.to_thread(
                client.stdout.wait_for, lambda line: JOINED_LINE.match(line) is not None, 30
            )
            match = JOINED_LINE.match(joined)
            assert match is not None
            ids = {
                "hana": (await hana.report())["participantId"],
                "ana": (await ana.report())["participantId"],
                "ben": match[1],
            }
            # Each page decodes video from both others: encrypted by the other page's worker
            # or by the Python client, forwarded by the relay, decrypted by its own worker.
            for me, tab in pages.items():
                for other, pid in ids.items():
                    if other != me:
                        await tab.until_decoding(pid, frames=30)

            async def all_three_coded() -> bool:
                reports = [await t.report() for t in pages.values()]
                return all(len(r["roster"]) == 3 and r["code"] for r in reports)

            await until(all_three_coded, "both pages to show a code for all three")

            async def someone_speaks() -> bool:  # the fake microphones beep
                return await hana.page.locator("#stage .tile.speaking").count() == 1

            await until(someone_speaks, "the speaker's tile to be highlighted")
            page_codes = {who: (await t.report())["code"] for who, t in pages.items()}
            shown = await hana.page.locator("#security-code").get_attribute("data-code")
            assert shown == page_codes["hana"]
            await hana.page.screenshot(path=shots / "meeting.png")
            await drops_none_while_decoding(pages, ids)
            exit_code = await asyncio.to_thread(client.proc.wait, PYTHON_SECONDS + 30)
            assert exit_code == 0, client.stderr_text()[-2000:]
            lines = await asyncio.to_thread(drained, client)
        finally:
            client.close()

    # All three showed the same code while all three were there.
    python_codes = []
    roster_size = 0
    for line in lines:
        if line.startswith("roster: "):
            roster_size = line.count("(")
        elif (code := CODE_LINE.match(line)) and roster_size == 3:
            python_codes.append(code[1])
    assert python_codes, lines
    assert set(page_codes.values()) == {python_codes[-1]}, (page_codes, python_codes)
    assert lines[-1].startswith("frames decrypted: "), lines[-1]

    # The Python client recorded decodable video and audio from both browsers.
    folder = tmp_path / "rec"
    for who in ("Hana", "Ana"):
        (video,) = folder.glob(f"{who}-*.video.webm")
        (audio,) = folder.glob(f"{who}-*.audio.wav")
        assert video_frames(video) >= 30, video
        assert audio_seconds(audio) >= 2.0, audio
    assert (shots / "prejoin.png").stat().st_size > 0
    assert (shots / "meeting.png").stat().st_size > 0


async def press(tab: Tab, selector: str) -> None:
    """Press a button by keyboard, as someone who does not use a mouse would."""
    button = tab.page.locator(selector)
    await button.wait_for(state="visible")
    await button.focus()
    await tab.page.keyboard.press("Enter")


async def keeps_decoding(tab: Tab, participant_id: str, more: int = 30) -> None:
    start = await tab.decoded_from(participant_id)

    async def more_frames() -> bool:
        return await tab.decoded_from(participant_id) >= start + more

    await until(more_frames, f"{tab.who} to keep decoding {participant_id}")


async def test_the_host_removes_a_participant_and_the_others_keep_decoding(
    browser: Browser, relay_server: Running
) -> None:
    meeting = await make_meeting(relay_server, "ana", "ben")
    links = {w: meeting.invites[w].link.reveal() for w in ("hana", "ana", "ben")}
    async with tabs(browser, relay_server, links) as pages:
        for tab in pages.values():
            await tab.join()
        ids = {}
        for who, tab in pages.items():
            await tab.until_screen("screen-meeting")
            ids[who] = (await tab.report())["participantId"]
        hana, ana, ben = pages["hana"], pages["ana"], pages["ben"]
        await hana.until_decoding(ids["ana"])
        await ana.until_decoding(ids["hana"])
        await ben.until_decoding(ids["hana"])
        three = (await hana.report())["code"]
        await drops_none_while_decoding(pages, ids)

        # Lock and unlock: everyone sees it.
        await press(hana, "#btn-lock")
        await ana.page.locator("#lock-state").wait_for(state="visible")
        assert await hana.text("#btn-lock") == "Unlock meeting"
        await press(hana, "#btn-lock")
        await ana.page.locator("#lock-state").wait_for(state="hidden")

        await press(hana, f'#roster-list li[data-participant="{ids["ben"]}"] button')
        await ben.until_screen("screen-page")
        assert await ben.text("#page-title") == "You were removed from the meeting"
        assert await ben.text("#page-sentence") == "The host removed you from the meeting."

        # The two who stay rotate their keys (the removed one gets none of the new ones) and
        # keep decoding each other; their code changes, and they are told.
        async def code_for_two() -> bool:
            reports = [await t.report() for t in (hana, ana)]
            return all(len(r["roster"]) == 2 and r["code"] for r in reports)

        await until(code_for_two, "the code for the two who stay")
        codes = {(await t.report())["code"] for t in (hana, ana)}
        assert len(codes) == 1 and three not in codes
        assert await ana.page.locator("#code-changed").is_visible()
        # (Frames the removed one sent just before are dropped: its keys are deleted at once.)
        stay = {"hana": hana, "ana": ana}
        await drops_none_while_decoding(stay, {who: ids[who] for who in stay})

        # The host ends the meeting for everyone, confirming once.
        await press(hana, "#btn-end")
        await press(hana, "#btn-end-confirm")
        for tab in (hana, ana):
            await tab.until_screen("screen-page")
            assert await tab.text("#page-title") == "The meeting has ended"
            assert (await tab.text("#page-sentence")).startswith("The meeting has ended")


ONLY_ENCODED_STREAMS = "delete globalThis.RTCRtpScriptTransform;"


async def test_a_guest_waits_in_the_lobby_until_the_host_admits_it(
    browser: Browser, relay_server: Running
) -> None:
    """The guest's browser lacks RTCRtpScriptTransform, so its frames go through
    createEncodedStreams: the other way to encrypt, with the same worker and keys."""
    meeting = await make_meeting(relay_server, "ana", lobby=True)
    async with AsyncExitStack() as stack:
        hana = await stack.enter_async_context(
            open_tab(browser, relay_server.base_url, "hana", meeting.invites["hana"].link.reveal())
        )
        await hana.join()
        await hana.until_screen("screen-meeting")
        ana = await stack.enter_async_context(
            open_tab(
                browser,
                relay_server.base_url,
                "ana",
                meeting.invites["ana"].link.reveal(),
                ONLY_ENCODED_STREAMS,
            )
        )
        await ana.until_screen("screen-prejoin")
        await ana.page.locator("#prejoin-lobby").wait_for(state="visible")
        assert await ana.text("#prejoin-lobby") == "Waiting for the host to let you in."
        await ana.join()  # pressed while waiting: goes in once admitted
        await asyncio.sleep(1.0)
        assert await ana.screen() == "screen-prejoin"  # still waiting
        assert len((await hana.report())["roster"]) == 1  # and in nobody's roster

        ana_id = (await ana.report())["participantId"]
        await press(hana, f'#lobby-list li[data-participant="{ana_id}"] button')
        await ana.until_screen("screen-meeting")
        hana_id = (await hana.report())["participantId"]
        await ana.until_decoding(hana_id)
        await hana.until_decoding(ana_id)
        assert (await ana.report())["transform"] == "streams"
        assert (await hana.report())["transform"] == "script"
        await drops_none_while_decoding(
            {"hana": hana, "ana": ana}, {"hana": hana_id, "ana": ana_id}
        )
        for tab in (hana, ana):
            assert tab.problems() == [], (tab.who, tab.problems())


@asynccontextmanager
async def two_in_a_meeting(
    browser: Browser,
    server: Running,
    ana_script: str | None = None,
    ana_prepare: Callable[[BrowserContext], Awaitable[None]] | None = None,
) -> AsyncIterator[tuple[Tab, Tab, dict[str, str]]]:
    """Hana and Ana in a meeting, past Join; their participant ids by name."""
    meeting = await make_meeting(server, "ana")
    async with AsyncExitStack() as stack:
        opened = {}
        for who, script, prepare in (("hana", None, None), ("ana", ana_script, ana_prepare)):
            link = meeting.invites[who].link.reveal()
            tab = await stack.enter_async_context(
                open_tab(browser, server.base_url, who, link, script, prepare)
            )
            opened[who] = tab
        ids = {}
        for who, tab in opened.items():
            await tab.join()
            await tab.until_screen("screen-meeting")
            ids[who] = (await tab.report())["participantId"]
        yield opened["hana"], opened["ana"], ids
        for tab in opened.values():
            assert tab.problems() == [], (tab.who, tab.problems())


async def sending(tab: Tab) -> dict[str, Any]:
    found: dict[str, Any] = (await tab.report())["sending"]
    return found


async def test_screen_share_replaces_the_camera_on_the_same_sender(
    browser: Browser, relay_server: Running
) -> None:
    async with two_in_a_meeting(browser, relay_server) as (hana, ana, ids):
        await ana.until_decoding(ids["hana"])
        before = await sending(hana)
        assert before["video"]["mimeType"] == "video/VP8"
        assert before["audio"]["mimeType"] == "audio/opus"
        assert before["config"]["iceServers"] == []  # none unless configured, never public
        # No audio level in clear for the relay to read who speaks when; only what it uses.
        assert before["extensions"] == [
            "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
            "urn:ietf:params:rtp-hdrext:sdes:mid",
        ]
        camera = before["video"]["track"]

        await press(hana, "#btn-share")

        async def sharing() -> bool:
            return str((await sending(hana))["video"]["track"]).startswith("screen")

        await until(sharing, "hana's screen to replace her camera")
        assert await hana.text("#btn-share") == "Stop sharing"
        assert (await sending(hana))["lines"] == before["lines"]  # no renegotiation
        await keeps_decoding(ana, ids["hana"])

        # The browser's own "stop sharing" ends the track: the camera comes back.
        await hana.page.evaluate(
            """() => document.querySelector('.tile.self video').srcObject
                 .getVideoTracks()[0].dispatchEvent(new Event('ended'))"""
        )

        async def camera_back() -> bool:
            return bool((await sending(hana))["video"]["track"] == camera)

        await until(camera_back, "hana's camera to come back")
        assert await hana.text("#btn-share") == "Share screen"
        await drops_none_while_decoding({"ana": ana}, {"hana": ids["hana"]})


DENY_DEVICES = """
navigator.mediaDevices.getUserMedia = () =>
  Promise.reject(new DOMException("Permission denied", "NotAllowedError"));
"""


async def test_a_guest_who_allows_no_camera_or_microphone_joins_without_them(
    browser: Browser, relay_server: Running
) -> None:
    async with two_in_a_meeting(browser, relay_server, DENY_DEVICES) as (hana, ana, ids):
        assert await ana.text("#prejoin-devices") == (
            "You will join without them (camera not allowed, microphone not allowed); "
            "the others will see your initials."
        )
        await ana.until_decoding(ids["hana"])  # she still sees and hears the others
        sent = await sending(ana)
        assert sent["video"]["track"] is None and sent["audio"]["track"] is None
        # Hana sees Ana's initials, and Ana sees Hana's video.
        ana_tile = hana.page.locator(f'.tile[data-participant="{ids["ana"]}"]')
        assert await ana_tile.locator(".initials").inner_text() == "A"
        assert await ana_tile.locator(".initials").is_visible()
        hana_tile = ana.page.locator(f'.tile[data-participant="{ids["hana"]}"]')
        await hana_tile.locator("video").wait_for(state="visible")
        assert not await hana_tile.locator(".initials").is_visible()


class Cuttable:
    """Passes the page's websockets through to the server, and can cut them as a network
    would: the page sees its connection close without having asked."""

    def __init__(self) -> None:
        self.routes: list[WebSocketRoute] = []

    async def prepare(self, context: BrowserContext) -> None:
        async def through(route: WebSocketRoute) -> None:
            route.connect_to_server()
            self.routes.append(route)

        await context.route_web_socket("**/ws", through)

    async def cut(self) -> None:
        for route in self.routes:
            await route.close(code=4000, reason="network lost")
        self.routes.clear()


async def test_a_dropped_connection_rejoins_by_itself_and_the_meeting_goes_on(
    browser: Browser, relay_server: Running
) -> None:
    network = Cuttable()
    async with two_in_a_meeting(browser, relay_server, ana_prepare=network.prepare) as (
        hana,
        ana,
        ids,
    ):
        await hana.until_decoding(ids["ana"])
        await ana.until_decoding(ids["hana"])
        before = (await ana.report())["code"]
        await network.cut()

        async def rejoined() -> bool:
            return len(network.routes) == 1 and (await ana.report())["code"] == before

        await until(rejoined, "ana to rejoin over a new connection, with the same code")
        assert await ana.screen() == "screen-meeting"
        assert (await ana.report())["participantId"] == ids["ana"]
        await ana.page.locator("#connection-note").wait_for(state="hidden")
        # Media was negotiated again on a new peer connection, and flows both ways.
        await keeps_decoding(hana, ids["ana"])
        await ana.until_decoding(ids["hana"])


CLIMB_SECONDS = 15.0  # the bound, from the moment both pages are in the meeting
MIN_KBPS = 300.0


async def test_each_camera_climbs_to_full_resolution_in_a_meeting(
    browser: Browser, relay_server: Running
) -> None:
    """Through the real server and relay, each page's outbound video reaches the height its
    camera captures at more than 300 kbit/s within 15 s: the relay's REMB, sent from the first
    packet of either kind (tests/browser/test_browser_bandwidth.py shows why that matters),
    lets Chromium start at the ceiling rather than creep up from 300 kbit/s at 360 px."""
    async with two_in_a_meeting(browser, relay_server) as (hana, ana, ids):
        start = time.monotonic()
        last: dict[str, tuple[float, float]] = {}  # who -> (bytesSent, at ms) of the last look
        reached: dict[str, str] = {}
        seen: list[str] = []
        while len(reached) < 2 and time.monotonic() - start < CLIMB_SECONDS:
            await asyncio.sleep(1.0)
            for tab in (hana, ana):
                sent = await sending(tab)
                video = sent["video"]
                if not video.get("at"):
                    continue
                kbps = 0.0
                if tab.who in last and video["at"] > last[tab.who][1]:
                    kbps = (
                        (video["bytesSent"] - last[tab.who][0])
                        * 8
                        / (video["at"] - last[tab.who][1])
                    )
                last[tab.who] = (video["bytesSent"], video["at"])
                look = (
                    f"{time.monotonic() - start:4.1f} s {tab.who}: {video['frameHeight']} of "
                    f"{video['captureHeight']} px, {kbps:.0f} kbit/s, estimate {sent['estimate']}"
                )
                seen.append(look)
                full = video["frameHeight"] == video["captureHeight"] and video["frameHeight"]
                if full and kbps > MIN_KBPS:
                    reached.setdefault(tab.who, look)
        assert set(reached) == {"hana", "ana"}, "\n".join(seen)
        await keeps_decoding(ana, ids["hana"])
        await keeps_decoding(hana, ids["ana"])


async def test_media_is_made_ready_before_join_and_sent_only_on_join(
    browser: Browser, relay_server: Running
) -> None:
    """The page prepares its peer connection and offer while the person looks at the pre-join
    screen, so that Join sends at once; nothing goes to the server before Join, and what the
    person changed meanwhile (the camera turned off here) is what the prepared lines send."""
    meeting = await make_meeting(relay_server, "ana")
    link = meeting.invites["ana"].link.reveal()
    sent: list[str] = []  # every message the page sent the server

    async def record(context: BrowserContext) -> None:
        async def through(route: WebSocketRoute) -> None:
            server = route.connect_to_server()

            def from_page(message: str | bytes) -> None:
                sent.append(str(message))
                server.send(message)

            route.on_message(from_page)

        await context.route_web_socket("**/ws", through)

    async with open_tab(browser, relay_server.base_url, "ana", link, prepare=record) as ana:
        await ana.until_screen("screen-prejoin")

        async def prepared() -> bool:
            return bool(await ana.page.evaluate("conclaveMeeting.prepared()"))

        await until(prepared, "the page to prepare its offer")
        assert not [f for f in sent if '"publish"' in f], sent
        await press(ana, "#pre-cam")
        await ana.join()
        await ana.until_screen("screen-meeting")

        async def sending_audio() -> bool:
            return int((await sending(ana))["audio"].get("bytesSent", 0)) > 0

        await until(sending_audio, "ana's microphone to go out")
        assert len([f for f in sent if '"publish"' in f]) == 1, sent
        out = await sending(ana)
        assert out["video"]["track"] is None and out["audio"]["track"] is not None, out
        assert ana.problems() == []
