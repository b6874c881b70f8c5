"""The meeting page without media: a link that cannot be used gets a page that says why, in the
words `conclave join` prints; the invite key leaves the address bar at once and is kept
nowhere; a reload rejoins as the same participant with the same keys; a browser that cannot
encrypt frames is refused; the page's message table is the server's schema."""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser

from bot.errors import InviteExpired, InviteRevoked, RoomLocked
from bot.signaling.messages import TO_CLIENT
from bot.signaling.seats import RoomFull
from tests.browser.conftest import E2EEPage
from tests.browser.meeting_tabs import Tab, open_tab, until
from tests.support.fakes import user
from tests.support.meeting import make_meeting
from tests.support.server import Running, serve

HOST = user("hana")


def link_of(meeting_link: str) -> tuple[str, str]:
    """(the link, its invite key): what a person clicks, and what must stay out of sight."""
    return meeting_link, urlsplit(meeting_link).fragment


async def page_says(tab: Tab) -> tuple[str, str]:
    await tab.until_screen("screen-page")
    return await tab.text("#page-title"), await tab.text("#page-sentence")


async def test_the_invite_key_leaves_the_address_bar_and_is_kept_nowhere(
    browser: Browser, server: Running
) -> None:
    meeting = await make_meeting(server, "ana", topic="Design review")
    link, key = link_of(meeting.invites["ana"].link.reveal())
    async with open_tab(browser, server.base_url, "ana", link) as tab:
        # Taken out before the page asked for anything else (the module runs after parsing).
        assert tab.page.url == f"{server.base_url}/j/{meeting.room_id}"
        await tab.until_screen("screen-prejoin")
        assert await tab.text("#prejoin-topic") == "Design review"
        assert "Ana" in await tab.text("#prejoin-name")
        stored = await tab.page.evaluate(
            """() => ({
              session: JSON.stringify(Object.entries(sessionStorage)),
              local: localStorage.length,
              cookies: document.cookie,
              href: location.href,
              title: document.title,
            })"""
        )
        assert key not in str(stored) and key.split(".")[1] not in str(stored)
        assert stored["local"] == 0 and stored["cookies"] == ""
        assert '"resume' in stored["session"]  # what a reload rejoins with
        assert all("#" not in url for url in tab.addresses[1:]), tab.addresses
        assert tab.problems() == []


@pytest.mark.parametrize("case", ["expired", "revoked", "ended", "locked"])
async def test_a_link_that_cannot_be_used_gets_a_page_saying_why(
    case: str, browser: Browser, server: Running
) -> None:
    meeting = await make_meeting(server, "ana")
    link, _ = link_of(meeting.invites["ana"].link.reveal())
    service = server.app.service
    expected: tuple[str, str]
    if case == "expired":
        server.clock.advance(2 * 24 * 3600)
        expected = ("This link has expired", str(InviteExpired("x")))
    elif case == "revoked":
        await service.reissue(user("ana"), meeting.room_id)
        expected = ("This link was revoked", str(InviteRevoked("x")))
    elif case == "ended":
        # Ending a meeting revokes its links: the sentence says that the meeting may be over.
        await service.end(HOST, meeting.room_id)
        expected = ("This link was revoked", str(InviteRevoked("x")))
    else:
        await service.lock(HOST, meeting.room_id)
        expected = ("This meeting is locked", str(RoomLocked("x")))
    async with open_tab(browser, server.base_url, "ana", link) as tab:
        title, sentence = await page_says(tab)
        assert title == expected[0]
        assert sentence.startswith(expected[1])
        assert tab.problems() == []


async def test_a_full_meeting_gets_a_page_saying_so(browser: Browser, tmp_path: Path) -> None:
    env = {"CONCLAVE_SIGNALING_MAX_PARTICIPANTS": "2"}
    async with serve(tmp_path, env=env) as small:
        meeting = await make_meeting(small, "ana", "ben")
        tabs = [
            open_tab(browser, small.base_url, who, meeting.invites[who].link.reveal())
            for who in ("hana", "ana", "ben")
        ]
        async with tabs[0] as hana, tabs[1] as ana:
            await hana.until_screen("screen-prejoin")
            await ana.until_screen("screen-prejoin")
            async with tabs[2] as ben:
                assert await page_says(ben) == ("This meeting is full", str(RoomFull(2)))


@asynccontextmanager
async def host_and_guest(browser: Browser, server: Running) -> AsyncIterator[tuple[Tab, Tab, str]]:
    """Hana (the host) and Ana, each on the pre-join screen of one meeting; Ana's link."""
    meeting = await make_meeting(server, "ana")
    links = {w: meeting.invites[w].link.reveal() for w in ("hana", "ana")}
    async with (
        open_tab(browser, server.base_url, "hana", links["hana"]) as hana,
        open_tab(browser, server.base_url, "ana", links["ana"]) as ana,
    ):
        for tab in (hana, ana):
            await tab.until_screen("screen-prejoin")
        yield hana, ana, links["ana"]


async def test_a_reload_rejoins_as_the_same_participant_with_the_same_keys(
    browser: Browser, server: Running
) -> None:
    async with host_and_guest(browser, server) as (hana, ana, _):

        async def both_coded() -> bool:
            codes = [(await t.report())["code"] for t in (hana, ana)]
            return (
                codes[0] is not None
                and codes[0] == codes[1]
                and len((await hana.report())["roster"]) == 2
            )

        await until(both_coded, "both pages to show the code for two")
        before = await ana.report()
        await ana.page.reload()
        assert "#" not in ana.page.url
        await ana.until_screen("screen-prejoin")  # rejoined: the spent link still works here
        await until(both_coded, "the code for two again after the reload")
        after = await ana.report()
        assert after["participantId"] == before["participantId"]
        # Same keys: the others see the same participant, and the code is what it was.
        assert after["code"] == before["code"]
        assert (await hana.report())["code"] == before["code"]
        assert hana.problems() == [] and ana.problems() == []


REMOVE_FRAME_APIS = """
delete globalThis.RTCRtpScriptTransform;
delete RTCRtpSender.prototype.createEncodedStreams;
"""
# WebCrypto as in a browser without X25519 (Chromium before 133, for one).
REMOVE_X25519 = """
const generateKey = SubtleCrypto.prototype.generateKey;
SubtleCrypto.prototype.generateKey = function (algorithm, ...rest) {
  if ((algorithm?.name ?? algorithm) === "X25519") {
    return Promise.reject(new DOMException("Unrecognized name.", "NotSupportedError"));
  }
  return generateKey.call(this, algorithm, ...rest);
};
"""


@pytest.mark.parametrize("missing", [REMOVE_FRAME_APIS, REMOVE_X25519], ids=["frames", "x25519"])
async def test_a_browser_that_cannot_encrypt_frames_is_refused(
    missing: str, browser: Browser, server: Running
) -> None:
    meeting = await make_meeting(server, "ana")
    link = meeting.invites["ana"].link.reveal()
    async with open_tab(browser, server.base_url, "ana", link, missing) as tab:
        title, sentence = await page_says(tab)
        assert title == "This browser cannot join an encrypted meeting"
        for browser_name in ("Chrome", "Edge", "Firefox", "Safari"):
            assert browser_name in sentence
        assert tab.problems() == []
        assert tab.page.url == f"{server.base_url}/j/{meeting.room_id}"
    # Nothing was sent: the invite is unspent, and works in a browser that can encrypt.
    async with open_tab(browser, server.base_url, "ana", link) as tab:
        await tab.until_screen("screen-prejoin")


async def test_the_pages_message_table_is_the_servers_schema(e2ee: E2EEPage) -> None:
    fields = await e2ee.page.evaluate(
        """async () => {
          const { TO_CLIENT } = await import('/static/app/schema.js');
          return Object.fromEntries(
            Object.entries(TO_CLIENT).map(([type, f]) => [type, Object.keys(f).sort()]));
        }"""
    )
    assert fields == {
        kind: sorted(f.name for f in message.fields) for kind, message in TO_CLIENT.items()
    }


async def test_a_reused_link_shows_already_used_and_the_host_is_told(
    browser: Browser, server: Running
) -> None:
    async with host_and_guest(browser, server) as (hana, ana, ana_link):
        # Someone else opens Ana's link: in another browser profile, so with nothing to
        # resume, as a thief who copied it would.
        async with open_tab(browser, server.base_url, "thief", ana_link) as thief:
            title, sentence = await page_says(thief)
        assert title == "This link was already used"
        assert sentence.startswith("This invite link was already used at ")
        assert sentence.endswith("If that was not you, tell the host.")
        # Ana is still in, and the host hears about it, by name.
        assert await ana.screen() == "screen-prejoin"

        async def told() -> bool:
            return await hana.page.locator("#notices li").count() > 0

        await until(told, "the host to be told of the reused link")
        notice = await hana.page.locator("#notices li").first.text_content()
        assert notice is not None and "Ana's link" in notice and "already used" in notice


async def test_the_page_preloads_every_module_it_imports(
    browser: Browser, server: Running, caplog: pytest.LogCaptureFixture
) -> None:
    """The served page lists its whole module graph, and its frame worker's, as modulepreload
    links, so the browser fetches the modules in parallel; were one import missing from the
    list, the document would fetch it as a script only once its importer had loaded (initiator
    ``script``, not ``link``), one round trip later per level. The worker imports its modules
    again in its own module map: they come from the cache (the files are named under a
    version), so the server sees each file requested once."""
    meeting = await make_meeting(server, "ana")
    link = meeting.invites["ana"].link.reveal()
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    async with open_tab(browser, server.base_url, "ana", link) as tab:
        await tab.until_screen("screen-prejoin")
        assert await tab.page.evaluate("conclaveMeeting.prepared()")  # the worker is running
        # The document's own fetches, by unversioned path: those before it started the frame
        # worker (its second worker.js, after the preload), whose imports are listed after it.
        fetched = await tab.page.evaluate(
            r"""() => {
              const paths = performance.getEntriesByType("resource")
                .filter((r) => r.name.endsWith(".js"))
                .map((r) => [new URL(r.name).pathname.replace(/^\/static\/[0-9a-f]{16}\//,
                  "/static/"), r.initiatorType]);
              const worker = paths.findLastIndex(([path]) => path === "/static/worker.js");
              return worker < 0 ? paths : paths.slice(0, worker);
            }"""
        )
    modules = dict(fetched)
    assert "/static/app/main.js" in modules and "/static/e2ee/hpke.js" in modules, modules
    assert "/static/e2ee/prefix.js" in modules, "the worker's own import is not preloaded"
    not_preloaded = {
        path: how
        for path, how in modules.items()
        if how == "script" and path != "/static/app/main.js"
    }
    assert not_preloaded == {}, fetched
    requested = Counter(
        match.group(1)
        for record in caplog.records
        if record.name == "aiohttp.access"
        and (match := re.search(r'"GET (/static/\S+) HTTP', record.getMessage()))
    )
    assert requested["/static/" + "worker.js"] == 0, "a file named without the version"
    twice = {path: n for path, n in requested.items() if n > 1}
    assert twice == {}, requested
    assert any(path.endswith("/e2ee/prefix.js") for path in requested), requested
    assert tab.problems() == []
