"""What the relay sees with a browser publishing: only SDP on its control channel, and from
the page only frames that do not decode as video (tests/media/test_kick_and_relay_view.py
makes the same check with `conclave join` clients alone). A page and a `conclave join` client
(in this process) meet through a relay worker process whose control channel passes through a
recording proxy; the client shows what the relay forwarded to it from the page, before its own
decryption, and that it decrypts it."""

from __future__ import annotations

import asyncio
import json
from contextlib import suppress
from pathlib import Path
from typing import Any

import av
import pytest
from aiortc.codecs.vpx import VpxPayloadDescriptor
from aiortc.rtp import RtpPacket
from playwright.async_api import Browser

from bot.client.session import ClientSession, MediaOptions
from bot.core.links import parse_link
from bot.rtc.internals import restrict_host_addresses
from tests.browser.meeting_tabs import open_tab, until
from tests.support.meeting import make_meeting
from tests.support.proxied_relay import proxied_worker
from tests.support.rtc import tap_receiver_rtp
from tests.support.server import serve

pytestmark = pytest.mark.slow

SECRET = "test-relay-secret-" + "y" * 20
WAIT = 30.0


class Frames:
    """The VP8 frames an RTP stream carried, as the relay forwarded them."""

    def __init__(self) -> None:
        self.done: list[bytes] = []
        self._parts: list[bytes] = []

    def add(self, packet: RtpPacket) -> None:
        _, data = VpxPayloadDescriptor.parse(packet.payload)
        self._parts.append(data)
        if packet.marker:
            self.done.append(b"".join(self._parts))
            self._parts = []


async def test_with_a_browser_publishing_the_relay_sees_only_ciphertext(
    browser: Browser, tmp_path: Path
) -> None:
    restrict_host_addresses(["127.0.0.1"])  # process-wide, for the client here: undone below
    env = {"CONCLAVE_RELAY_SECRET": SECRET, "CONCLAVE_RELAY_WORKERS": "0"}
    try:
        async with (
            serve(tmp_path, env=env) as server,
            proxied_worker(server, SECRET, WAIT) as proxy,
        ):
            meeting = await make_meeting(server, "ana")
            link = meeting.invites["hana"].link.reveal()
            async with open_tab(browser, server.base_url, "hana", link) as hana:
                await hana.join()
                await hana.until_screen("screen-meeting")
                page_id = (await hana.report())["participantId"]
                options = MediaOptions(video="testsrc", audio="none")
                client = ClientSession(
                    parse_link(meeting.invites["ana"].link.reveal()), lambda _: None, options
                )
                running = asyncio.ensure_future(client.run(None))
                try:
                    frames = Frames()

                    async def tapped() -> bool:
                        pc: Any = client.media._pc if client.media else None
                        for t in pc.getTransceivers() if pc else []:
                            track = t.receiver.track
                            if track and track.kind == "video" and track.id.startswith(page_id):
                                tap_receiver_rtp(t.receiver, frames.add)
                                return True
                        return False

                    await until(tapped, "the page's video line at the client")
                    await hana.until_decoding(
                        client.welcome.participant_id if client.welcome else ""
                    )
                    before = client.keyring.decrypted if client.keyring else 0

                    async def forwarded() -> bool:
                        decrypted = client.keyring.decrypted if client.keyring else 0
                        return len(frames.done) >= 60 and decrypted > before + 60

                    await until(forwarded, "the page's frames forwarded and decrypted")
                finally:
                    running.cancel()
                    with suppress(asyncio.CancelledError):
                        await running
                    if client.media is not None:
                        await client.media.close()
                assert hana.problems() == []
            # What the relay received: SDP, never key material (a key-transport message's
            # magic in base64url is "Q0tUAQ"); the page's keys went over signaling only.
            kinds = {json.loads(raw)["type"] for raw in proxy.to_worker}
            assert kinds <= {"welcome", "join", "answer", "leave", "close_room", "stats"}, kinds
            assert "join" in kinds
            assert "Q0tUAQ" not in "\n".join(proxy.to_worker + proxy.to_core)
    finally:
        restrict_host_addresses([])

    # What it forwarded from the page is not the encoded video: no frame decodes as VP8.
    decoder = av.CodecContext.create("vp8", "r")
    pictures = 0
    for frame in frames.done:
        with suppress(av.FFmpegError):
            pictures += len(decoder.decode(av.Packet(frame)))
    assert pictures == 0, f"{pictures} of {len(frames.done)} forwarded frames decoded as VP8"
