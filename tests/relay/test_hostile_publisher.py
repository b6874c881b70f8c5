"""A hostile publisher against a real relay worker: the attacks of issue 9, finding 4.

The attacker is a real aiortc peer that completed DTLS with the worker, so it holds SRTP keys
the worker accepts, and it sends through its own DTLS transport whatever RTP and RTCP it likes:
thousands of random SSRCs, or its own stream far over any honest rate. Its sends are paced by
what the worker has taken in (at most ``IN_FLIGHT`` packets ahead), so no packet is lost in a
socket buffer and every count below is exact. An honest meeting on the same worker shows the
others are unaffected. The per-SSRC state is read through ``tests.support.rtc.ssrc_state``: the
router's SSRC table, the receivers' statistics, and libsrtp's own inbound streams.
"""

from __future__ import annotations

import asyncio
import functools
import random
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import aiohttp
import pytest
from aiortc import RTCRtpSender
from aiortc.rtp import RtcpSenderInfo, RtcpSrPacket, RtpPacket

from bot.relay import control
from bot.relay.offers import check_offer
from bot.relay.sfu import DEFAULT_MAX_PACKET_RATE, EXTRA_RTCP_SOURCES, Peer, Relay
from bot.relay.worker import WorkerSession, control_url
from bot.rtc.internals import check_internals, restrict_host_addresses
from bot.rtc.peer import make_peer_connection, prefer_codec
from tests.relay.relay_fakes import LOOPBACK, SECRET, FakeClient, FakeCore, eventually
from tests.support.rtc import ssrc_state

IN_FLIGHT = 50
DELTA_FRAME = bytes([0x90, 0x80, 0x81, 0x11, 0x02, 0x00]) + bytes(200)

StartWorker = Callable[..., Awaitable[tuple[FakeCore, Relay]]]


@pytest.fixture
async def worker() -> AsyncIterator[StartWorker]:
    """A fake core and a worker session in this process, so the test can look at its relay."""
    stops: list[Callable[[], Awaitable[None]]] = []

    async def start(max_packet_rate: float = DEFAULT_MAX_PACKET_RATE) -> tuple[FakeCore, Relay]:
        check_internals()
        restrict_host_addresses(LOOPBACK)
        core = FakeCore(SECRET)
        await core.start()
        http = aiohttp.ClientSession()
        session = WorkerSession(SECRET, "test-1", make_peer_connection, max_packet_rate)
        stop = asyncio.Event()
        serving = asyncio.create_task(session.serve(http, control_url(core.url), stop))

        async def stop_all() -> None:
            for client in core.clients.values():
                await client.close()
            stop.set()
            await asyncio.wait_for(serving, 20)
            await session.close()
            await http.close()
            await core.stop()

        stops.append(stop_all)
        await asyncio.wait_for(core.ready.wait(), 20)
        return core, session.relay

    try:
        yield start
        for stop_all in stops:
            await stop_all()
    finally:
        restrict_host_addresses([])  # process-wide: the next test must not inherit it


def payload_type(sdp: str, kind: str) -> int:
    """The first payload type of the ``kind`` m-line (the preferred codec's)."""
    line = next(x for x in sdp.splitlines() if x.startswith(f"m={kind} "))
    return int(line.split()[3])


async def flood(client: FakeClient, packets: Iterable[bytes], taken: Callable[[], int]) -> int:
    """Send ``packets`` (plain RTP or RTCP) SRTP-protected with the client's own keys.

    ``taken()`` counts what the worker took in of them; sending waits while more than
    ``IN_FLIGHT`` are on their way. Returns how many were sent.
    """
    # The attacker's own aiortc transport: it encrypts whatever it is given with its SRTP keys.
    transport: Any = client.pc.getTransceivers()[0].sender.transport
    start, sent = taken(), 0

    def kept_up(count: int) -> bool:
        return taken() - start >= count

    for data in packets:
        await transport._send_rtp(data)
        sent += 1
        if sent % IN_FLIGHT == 0:
            await eventually(functools.partial(kept_up, sent - IN_FLIGHT), "the worker kept up")
    await eventually(functools.partial(kept_up, sent), "the worker took in the whole flood")
    return sent


async def honest_meeting(core: FakeCore) -> FakeClient:
    """ana publishes to ben in room "honest"; returns ben once he gets ana's video."""
    ana, ben = FakeClient("ana"), FakeClient("ben", publish=False)
    await core.join("honest", ana)
    await core.join("honest", ben)
    await flowing(ben, "ana", 5)
    return ben


async def flowing(subscriber: FakeClient, publisher: str, more: int) -> None:
    got = subscriber.received.get((publisher, "video"))
    before = 0 if got is None else len(got.frames)

    def arrived() -> bool:
        now = subscriber.received.get((publisher, "video"))
        return now is not None and len(now.frames) >= before + more and now.dropped == 0

    await eventually(arrived, f"{subscriber.name} gets {more} more of {publisher}'s video frames")


async def connected_attacker(core: FakeCore, relay: Relay, media: bool) -> Peer:
    mal = FakeClient("mal")
    await core.join("hostile", mal, media=media)
    p = relay.peer("hostile", "mal")
    await eventually(lambda: p.guard.started, "mal's SRTP is set up at the relay")
    return p


async def test_random_ssrcs_leave_no_state_behind(worker: StartWorker) -> None:
    core, relay = await worker()
    ben = await honest_meeting(core)
    mal = await connected_attacker(core, relay, media=True)
    client = core.clients["mal"]
    assert isinstance(client, FakeClient)
    await eventually(lambda: mal.published["video"].tap.media_ssrc is not None, "mal's video")
    offered = check_offer(client.pc.localDescription.sdp)
    allowed = {ssrc for ssrcs in offered.sources.values() for ssrc in ssrcs}
    video_ssrc = offered.sources["video"][0]
    rng = random.Random(4)
    foreign: set[int] = set()
    while len(foreign) < 6000:
        if (ssrc := rng.getrandbits(32)) not in offered.announced:
            foreign.add(ssrc)
    rtp_ssrcs, rtcp_ssrcs = sorted(foreign)[:5000], sorted(foreign)[5000:]
    pt = payload_type(client.pc.localDescription.sdp, "video")
    guard = mal.guard
    foreign_before = guard.foreign

    rtp = (
        RtpPacket(pt, sequence_number=n, timestamp=n * 90, ssrc=s, payload=DELTA_FRAME).serialize()
        for n, s in enumerate(rtp_ssrcs)
    )
    assert await flood(client, rtp, lambda: guard.foreign) == 5000
    info = RtcpSenderInfo(ntp_timestamp=1 << 32, rtp_timestamp=0, packet_count=1, octet_count=9)
    rtcp = (bytes(RtcpSrPacket(ssrc=s, sender_info=info)) for s in rtcp_ssrcs)
    assert await flood(client, rtcp, lambda: guard.foreign + len(guard.rtcp_learned)) == 1000

    # Every random-SSRC packet was dropped before libsrtp, but for the few RTCP sources a
    # connection may have beyond those it announced.
    limit = len(mal.pc.getTransceivers()) + EXTRA_RTCP_SOURCES
    assert guard.foreign - foreign_before == 6000 - len(guard.rtcp_learned)
    assert len(guard.rtcp_learned) <= limit
    state = ssrc_state(mal.pc, foreign | allowed)
    assert state.srtp & foreign == guard.rtcp_learned, "libsrtp streams for random SSRCs"
    assert video_ssrc in state.srtp, "the probe does not see mal's own stream"
    assert state.routed <= allowed, f"router entries for {len(state.routed - allowed)} SSRCs"
    assert state.counted <= allowed, f"statistics for {len(state.counted - allowed)} SSRCs"
    stats = await core.request("stats")
    assert stats["foreign_packets"] == guard.foreign

    # The meeting in the other room on this worker never noticed.
    await flowing(ben, "ana", 10)
    assert relay.peer("honest", "ana").guard.foreign == 0


async def test_an_offer_with_many_lines_or_candidates_starts_nothing(worker: StartWorker) -> None:
    core, relay = await worker()
    threads = {t.ident for t in threading.enumerate()}
    for audio, video in ((40, 40), (1, 3)):
        pc = make_peer_connection()
        try:
            for _ in range(audio):
                prefer_codec(pc.addTransceiver("audio", direction="sendonly"))
            for _ in range(video):
                prefer_codec(pc.addTransceiver("video", direction="sendonly"))
            await pc.setLocalDescription(await pc.createOffer())
            offer = control.sdp("offer", pc.localDescription.sdp)
            result = await core.request("join", room="r", participant="mal", offer=offer)
        finally:
            await pc.close()
        assert not result["ok"] and result["code"] == "media_refused", result
        many, kind = (audio, "audio") if audio > 1 else (video, "video")
        assert f"The offer has {many} {kind} media lines" in result["error"]
        assert "at most one audio and one video line" in result["error"]
        assert (relay.rooms, relay.participants) == (0, 0)
    # Not the codec Conclave's media profile defines: refused the same way.
    h264 = make_peer_connection()
    try:
        line = h264.addTransceiver("video", direction="sendonly")
        line.setCodecPreferences(
            [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/H264"]
        )
        await h264.setLocalDescription(await h264.createOffer())
        offer = control.sdp("offer", h264.localDescription.sdp)
    finally:
        await h264.close()
    refused = await core.request("join", room="r", participant="mal", offer=offer)
    assert not refused["ok"] and refused["code"] == "media_refused", refused
    assert "must offer video/VP8" in refused["error"]
    assert (relay.rooms, relay.participants) == (0, 0)

    # Candidates are addresses the relay would send checks to: a few dozen at most, in an
    # offer or in an answer.
    candidates = "".join(f"a=candidate:{n} 1 udp 1 192.0.2.{n} 9 typ host\r\n" for n in range(99))
    offer = control.sdp("offer", "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 96\r\n" + candidates)
    refused = await core.request("join", room="r", participant="mal", offer=offer)
    assert not refused["ok"] and refused["code"] == "media_refused", refused
    answer = control.sdp("answer", candidates)
    refused = await core.request(
        "answer", room="r", participant="mal", negotiation=1, answer=answer
    )
    assert not refused["ok"] and "99 ICE candidates" in refused["error"], refused
    started = [t.name for t in threading.enumerate() if t.ident not in threads]
    assert started == [], f"threads started for a refused offer: {started}"


async def test_a_publisher_over_the_rate_is_capped_alone(worker: StartWorker) -> None:
    rate = 400.0  # a fifth of the default; the honest fake client sends under 100 a second
    core, relay = await worker(max_packet_rate=rate)
    ben = await honest_meeting(core)
    mal = await connected_attacker(core, relay, media=False)
    client = core.clients["mal"]
    assert isinstance(client, FakeClient)
    offered = check_offer(client.pc.localDescription.sdp)
    pt = payload_type(client.pc.localDescription.sdp, "video")
    ssrc = offered.sources["video"][0]
    guard = mal.guard
    rtp = (
        RtpPacket(pt, sequence_number=n, timestamp=n * 90, ssrc=ssrc, payload=DELTA_FRAME)
        for n in range(4000)
    )
    passed, over = guard.passed, guard.over_rate
    loop = asyncio.get_running_loop()
    began = loop.time()
    sent = await flood(client, (p.serialize() for p in rtp), lambda: guard.passed + guard.over_rate)
    elapsed = loop.time() - began
    passed, over = guard.passed - passed, guard.over_rate - over

    assert sent == 4000 and guard.foreign == 0
    # Every packet was either let through or dropped and counted (mal's own RTCP may add a few).
    assert passed + over >= 4000
    assert over > 0, "nothing was dropped over the rate"
    # The bucket holds one second's worth and refills at the rate, no faster.
    assert passed <= rate * (elapsed + 1) + 1, (passed, elapsed)
    stats = await core.request("stats")
    assert stats["rate_limited_packets"] == guard.over_rate
    # ana shares the worker but has a bucket of her own.
    await flowing(ben, "ana", 10)
    assert relay.peer("honest", "ana").guard.over_rate == 0
    assert relay.peer("honest", "ben").guard.over_rate == 0
