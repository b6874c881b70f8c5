"""People come and go while a browser stays in the meeting. The relay gives the lines their
tracks came on to the next newcomer's (bot/relay/lines.py), so the page's connection keeps one
audio and one video line for them instead of two more per person who ever joined; the page
shows each newcomer's video under the newcomer's own name, counted from the newcomer's first
frame, with nothing refused as someone else's. Real server, relay worker process and Chromium,
on loopback."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser

from tests.browser.meeting_tabs import open_tab, until
from tests.browser.test_meeting_media import press
from tests.support.meeting import make_meeting
from tests.support.server import Running

pytestmark = pytest.mark.slow

VISITORS = ("ana", "ben", "cy")
# Every peer connection the page makes, for the test to count its lines.
KEEP_CONNECTIONS = """(() => {
  const Stock = window.RTCPeerConnection;
  window.__connections = [];
  window.RTCPeerConnection = function (...args) {
    const pc = new Stock(...args);
    window.__connections.push(pc);
    return pc;
  };
  window.RTCPeerConnection.prototype = Stock.prototype;
})();"""
DECODED = """async () => {
  let frames = 0;
  for (const pc of window.__connections) {
    (await pc.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") frames += s.framesDecoded ?? 0;
    });
  }
  return frames;
}"""
LINES = """() => window.__connections.filter((pc) => pc.connectionState === "connected")
  .map((pc) => pc.getTransceivers().map((t) => [t.mid, t.currentDirection]))"""


async def test_newcomers_come_on_the_lines_of_those_who_left(
    browser: Browser, relay_server: Running
) -> None:
    meeting = await make_meeting(relay_server, *VISITORS)
    host_link = meeting.invites["hana"].link.reveal()
    base = relay_server.base_url
    async with open_tab(browser, base, "hana", host_link, KEEP_CONNECTIONS) as hana:
        await hana.join()
        await hana.until_screen("screen-meeting")
        before = 0
        for who in VISITORS:
            link = meeting.invites[who].link.reveal()
            async with open_tab(browser, base, who, link) as visitor:
                await visitor.join()
                await visitor.until_screen("screen-meeting")
                pid = (await visitor.report())["participantId"]
                await hana.until_decoding(pid)
                tile = hana.page.locator(f'#stage [data-participant="{pid}"]')
                await tile.wait_for(state="visible")
                await press(visitor, "#btn-leave")
                await visitor.until_screen("screen-page")
                assert visitor.problems() == []

            async def gone(pid: str = pid) -> bool:
                roster = (await hana.report())["roster"]
                return all(entry["participant_id"] != pid for entry in roster)

            await until(gone, f"{who} gone from hana's roster")
            # Counted from this visitor's own first frame, not from the line's earlier owner's:
            # what the page's video lines decoded since the last visitor left, all of it.
            decoded = await hana.page.evaluate(DECODED)
            assert await hana.decoded_from(pid) == decoded - before, who
            before = decoded
        (lines,) = await hana.page.evaluate(LINES)
        # Her own audio and video, and one pair for whoever comes: not a pair per visitor.
        assert len(lines) == 4, lines
        counts = (await hana.report())["counts"]
        assert counts["misattributed"] == 0, counts
        assert counts["decrypted"] > 0, counts
        assert hana.problems() == []
