"""Attacks by a lying server on the meeting page, run against the page's own code: the page's
websocket goes through a liar (lying_signal.py) that rewrites what the hub sends it.

- Replacing the keys of someone who never left: the page says so and leaves, sealing nothing
  more (docs/PROTOCOL.md section 4.7).
- Substituting someone's keys from the start: the page cannot tell, but its security code
  differs from everyone else's (section 5).
- Labelling one participant's tracks with another's id (the relay's msid): every frame on them
  is refused before decryption, so nobody's video is shown under someone else's name
  (section 3.1).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from playwright.async_api import Browser

from bot.e2ee.errors import KeysTampered
from tests.browser.lying_signal import LyingSignal
from tests.browser.meeting_tabs import Tab, open_tab, until
from tests.support.lying_server import Roster
from tests.support.meeting import make_meeting
from tests.support.server import Running


def coded(tab: Tab, people: int) -> Callable[[], Awaitable[bool]]:
    """Whether ``tab`` shows a security code for ``people`` people."""

    async def check() -> bool:
        report = await tab.report()
        return report["code"] is not None and len(report["roster"]) == people

    return check


async def test_a_page_shown_new_keys_for_someone_present_leaves_and_seals_nothing_more(
    browser: Browser, server: Running
) -> None:
    meeting = await make_meeting(server, "ana")
    liar = LyingSignal(meeting.room_id)
    hana_link, ana_link = (meeting.invites[w].link.reveal() for w in ("hana", "ana"))
    async with (
        open_tab(browser, server.base_url, "hana", hana_link, prepare=liar.prepare) as hana,
        open_tab(browser, server.base_url, "ana", ana_link) as ana,
    ):
        await until(coded(hana, 2), "hana's code for both")
        ana_id = (await ana.report())["participantId"]
        sent_before = len(liar.sent)
        swapped = [liar.forged(e) if e["participant_id"] == ana_id else e for e in liar.hub_roster]
        liar.send({"type": "roster", "roster": swapped})

        await hana.until_screen("screen-page")
        assert await hana.text("#page-title") == "The server is tampering with the meeting's keys"
        detail = f"it replaced the keys of Ana ({ana_id}), who never left the meeting"
        assert await hana.text("#page-sentence") == str(KeysTampered(detail))
        assert [m for m in liar.sent[sent_before:] if m["type"] == "key"] == []
        assert liar.liar.opened == []  # nothing was ever sealed to the server's keys
        assert await hana.page.evaluate("sessionStorage.length") == 0  # nothing to rejoin with


async def test_keys_substituted_from_the_start_change_the_victims_code_only(
    browser: Browser, server: Running
) -> None:
    meeting = await make_meeting(server, "ana", "ben")
    ids: dict[str, str] = {}

    def impersonate_ana(roster: Roster) -> Roster:
        return [
            liar.forged(e) if e["participant_id"] == ids.get("ana") and "keys" in e else e
            for e in roster
        ]

    liar = LyingSignal(meeting.room_id, rewrite_roster=impersonate_ana)
    links = {w: meeting.invites[w].link.reveal() for w in ("hana", "ana", "ben")}
    async with (
        open_tab(browser, server.base_url, "ana", links["ana"]) as ana,
        open_tab(browser, server.base_url, "ben", links["ben"]) as ben,
    ):
        await ana.until_screen("screen-prejoin")
        ids["ana"] = (await ana.report())["participantId"]
        async with open_tab(
            browser, server.base_url, "hana", links["hana"], prepare=liar.prepare
        ) as hana:
            for tab in (hana, ana, ben):
                await until(coded(tab, 3), f"{tab.who}'s code for three")
            codes = {t.who: (await t.report())["code"] for t in (hana, ana, ben)}
            # The server holds what Hana sealed for "Ana"; Hana's code is what gives it away.
            assert liar.liar.opened, "the liar opened nothing: the attack did not happen"
            assert codes["ana"] == codes["ben"]
            assert codes["hana"] != codes["ana"]


def swap_ids(sdp: str, a: str, b: str) -> str:
    return re.sub(re.escape(a) + "|" + re.escape(b), lambda m: b if m[0] == a else a, sdp)


@pytest.mark.slow
async def test_tracks_relabelled_by_the_relay_are_never_shown_under_the_wrong_name(
    browser: Browser, relay_server: Running
) -> None:
    meeting = await make_meeting(relay_server, "ana", "ben")
    ids: dict[str, str] = {}
    liar = LyingSignal(
        meeting.room_id, rewrite_sdp=lambda sdp: swap_ids(sdp, ids["ana"], ids["ben"])
    )
    links = {w: meeting.invites[w].link.reveal() for w in ("hana", "ana", "ben")}
    async with (
        open_tab(browser, relay_server.base_url, "ana", links["ana"]) as ana,
        open_tab(browser, relay_server.base_url, "ben", links["ben"]) as ben,
    ):
        for tab in (ana, ben):
            await tab.until_screen("screen-prejoin")
            ids[tab.who] = (await tab.report())["participantId"]
        async with open_tab(
            browser, relay_server.base_url, "hana", links["hana"], prepare=liar.prepare
        ) as hana:
            for tab in (hana, ana, ben):
                await tab.join()
            await ana.until_decoding(ids["ben"])
            await ben.until_decoding(ids["ana"])  # the honest views work

            async def refused() -> bool:
                seen: dict[str, Any] = (await hana.report())["counts"]
                return int(seen["misattributed"]) >= 60

            await until(refused, "hana to refuse the relabelled frames")
            report = await hana.report()
            for who in ("ana", "ben"):
                assert report["receiving"].get(ids[who], {}).get("framesDecoded", 0) == 0
                got = report["counts"]["received"].get(ids[who], {})
                assert got.get("video", 0) == 0 and got.get("audio", 0) == 0
                tile = hana.page.locator(f'.tile[data-participant="{ids[who]}"]')
                assert await tile.locator(".initials").is_visible()
            assert report["counts"]["dropped"] == 0  # refused before any decryption


async def test_no_key_is_sealed_while_someones_announcement_is_withheld(
    browser: Browser, server: Running
) -> None:
    """A server that shows a participant without keys (not announced yet, it claims) leaves
    the page's roster incomplete: the page shows no code and seals nothing to anyone, and
    sends what it owes once every entry verifies."""
    meeting = await make_meeting(server, "ana")
    withhold = {"on": True}
    ids: dict[str, str] = {}

    def without_anas_keys(roster: Roster) -> Roster:
        if not withhold["on"]:
            return roster
        return [
            {k: v for k, v in e.items() if k != "keys"}
            if e["participant_id"] == ids.get("ana")
            else e
            for e in roster
        ]

    liar = LyingSignal(meeting.room_id, rewrite_roster=without_anas_keys)
    hana_link, ana_link = (meeting.invites[w].link.reveal() for w in ("hana", "ana"))
    async with open_tab(browser, server.base_url, "ana", ana_link) as ana:
        await ana.until_screen("screen-prejoin")
        ids["ana"] = (await ana.report())["participantId"]
        async with open_tab(
            browser, server.base_url, "hana", hana_link, prepare=liar.prepare
        ) as hana:
            await hana.until_screen("screen-prejoin")

            async def pending_for_ana() -> bool:
                shown = await hana.page.locator("#security-code").text_content()
                return len((await hana.report())["roster"]) == 2 and "Ana" in (shown or "")

            await until(pending_for_ana, "hana's code to wait for Ana's keys")
            assert (await hana.report())["code"] is None
            assert [m for m in liar.sent if m["type"] == "key"] == []

            withhold["on"] = False
            liar.send({"type": "roster", "roster": liar.hub_roster})
            await until(coded(hana, 2), "hana's code once Ana's keys show")

            async def sent_to_ana() -> bool:
                return any(m["type"] == "key" and m["to"] == ids["ana"] for m in liar.sent)

            await until(sent_to_ana, "the key hana owes ana")
