"""A relay worker against a fake core, with real aiortc clients on loopback (relay_fakes.py).

The relay never holds the clients' key.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from bot.config import RelaySettings
from bot.relay import control
from bot.relay.tracks import vp8_starts_key_frame
from bot.relay.worker import run_worker
from bot.rtc.bandwidth import MAX_PUBLISH_BITRATE
from bot.rtc.internals import request_keyframe
from bot.secret import Secret
from tests.relay.relay_fakes import (
    LOOPBACK,
    MEDIA_KEY,
    SECRET,
    FakeClient,
    FakeCore,
    Received,
    eventually,
    stopped,
)

Stopper = Callable[[], Awaitable[None]]


@pytest.fixture
async def started() -> AsyncIterator[Callable[[Secret], Awaitable[FakeCore]]]:
    """Start a fake core and an in-process worker with a given secret; tear both down."""
    cleanup: list[Stopper] = []

    async def start(worker_secret: Secret) -> FakeCore:
        core = FakeCore(SECRET)
        await core.start()
        stop = asyncio.Event()
        settings = RelaySettings(secret=worker_secret, host_addresses=LOOPBACK)
        worker = asyncio.create_task(run_worker(core.url, "test-1", settings, stop=stop))

        async def stop_all() -> None:
            for client in core.clients.values():
                await client.close()
            stop.set()
            await asyncio.wait_for(worker, 20)
            await core.stop()

        cleanup.append(stop_all)
        return core

    yield start
    for stop_all in cleanup:
        await stop_all()


# --- tests --------------------------------------------------------------------------------------


async def test_wrong_secret_gets_401_and_never_ready(
    started: Callable[[Secret], Awaitable[FakeCore]],
) -> None:
    core = await started(Secret("not-the-secret"))
    await eventually(lambda: core.rejected >= 2, "the worker retried after a 401")
    assert not core.ready.is_set(), "a worker with the wrong secret became ready"
    assert core.sent_to_worker == []


async def test_meeting_through_the_relay(
    started: Callable[[Secret], Awaitable[FakeCore]],
) -> None:
    core = await started(SECRET)
    await asyncio.wait_for(core.ready.wait(), 20)
    ready = core.from_worker[0]
    assert ready == {"type": "ready", "worker_id": "test-1", "rooms": 0, "participants": 0}

    ana, ben, cy = FakeClient("ana"), FakeClient("ben"), FakeClient("cy")
    await core.join("r1", ana)
    await core.join("r1", ben)

    def flowing(sub: FakeClient, pub: str, kind: str, frames: int = 10) -> bool:
        got = sub.received.get((pub, kind))
        return got is not None and len(got.frames) >= frames and got.decoded > 0

    for sub, pub in ((ana, "ben"), (ben, "ana")):
        for kind in ("video", "audio"):
            await eventually(
                functools.partial(flowing, sub, pub, kind), f"{sub.name} gets {pub}'s {kind}"
            )

    # A third joiner: everyone renegotiates, and cy's video from each starts at a key frame.
    await core.join("r1", cy)
    for sub, pub in ((cy, "ana"), (cy, "ben"), (ana, "cy"), (ben, "cy")):
        for kind in ("video", "audio"):
            await eventually(
                functools.partial(flowing, sub, pub, kind), f"{sub.name} gets {pub}'s {kind}"
            )
    for pub in ("ana", "ben"):
        first_payload = cy.received[(pub, "video")].rtp_payloads[0]
        assert vp8_starts_key_frame(first_payload), "cy's first video packet is not a key frame"
        assert cy.received[(pub, "video")].frames[0][0] & 1 == 0, "first frame is not a key frame"

    # Byte-identical: every frame and audio payload a subscriber got is one its publisher sent.
    clients = {c.name: c for c in (ana, ben, cy)}
    for sub in clients.values():
        assert len(sub.received) == 4, f"{sub.name} receives {sorted(sub.received)}"  # 2 x 2
        for (pub, kind), got in sub.received.items():
            sent = set(clients[pub].sent[kind])
            assert all(frame in sent for frame in got.frames), f"{sub.name}<-{pub} {kind} altered"
            assert got.dropped == 0, f"{sub.name}<-{pub} {kind}: frames failed to verify"
            if kind == "audio":
                assert all(p in sent for p in got.rtp_payloads), "audio RTP payload altered"

    # A subscriber's PLI reaches the publisher's sender (through the relay, throttled).
    got = ben.received[("ana", "video")]
    assert got.receiver is not None
    relay_ssrc = got.receiver.getSynchronizationSources()[0].source
    before = ana.keyframe_requests
    await request_keyframe(got.receiver, relay_ssrc)
    await eventually(lambda: ana.keyframe_requests > before, "ben's PLI reached ana")

    # Stats.
    stats = await core.request("stats")
    assert stats["ok"] and stats["rooms"] == 1 and stats["participants"] == 3
    assert stats["forwarded_packets"] > 0 and stats["received_packets"] > 0
    assert stats["rss_bytes"] > 10 * 2**20

    # ben leaves: ana's and cy's tracks from ben end (their lines go inactive).
    result = await core.request("leave", room="r1", participant="ben")
    assert result["ok"], result
    for sub in (ana, cy):
        for kind in ("video", "audio"):
            got = sub.received[("ben", kind)]
            await eventually(functools.partial(stopped, sub, got), f"{sub.name}'s ben {kind} ends")
    count = len(cy.received[("ana", "video")].frames)
    await eventually(
        lambda: len(cy.received[("ana", "video")].frames) > count + 5, "ana still seen"
    )

    # Load reports followed each change.
    loads = [(m["rooms"], m["participants"]) for m in core.from_worker if m["type"] == "load"]
    assert loads[:3] == [(1, 1), (1, 2), (1, 3)] and loads[-1] == (1, 2), loads

    result = await core.request("close_room", room="r1")
    assert result["ok"]
    await eventually(lambda: ana.pc.connectionState in ("failed", "closed"), "ana's pc fails")

    # The worker only ever received control messages of the spec, carrying SDP: no key.
    assert {m["type"] for m in core.sent_to_worker} <= {"welcome", *control.REQUESTS}
    wire = json.dumps(core.sent_to_worker)
    for encoding in (MEDIA_KEY.hex(), MEDIA_KEY.hex().upper()):
        assert encoding not in wire


async def test_subscriber_without_media_and_bad_requests(
    started: Callable[[Secret], Awaitable[FakeCore]],
) -> None:
    core = await started(SECRET)
    await asyncio.wait_for(core.ready.wait(), 20)
    ana, watcher = FakeClient("ana"), FakeClient("watcher", publish=False)
    await core.join("r2", ana)
    await core.join("r2", watcher)  # an offer with no m-lines at all
    await eventually(
        lambda: len(watcher.received.get(("ana", "video"), Received()).frames) > 5,
        "a participant that publishes nothing receives video",
    )

    # A second join of the same participant, an unknown room, a stale answer: refused, kept.
    again = await core.request("join", room="r2", participant="ana", offer=await ana.offer())
    assert not again["ok"] and "already" in again["error"]
    gone = await core.request("leave", room="nowhere", participant="ana")
    assert not gone["ok"] and "not in room" in gone["error"]
    stale = await core.request(
        "answer", room="r2", participant="ana", negotiation=999, answer=control.sdp("answer", "")
    )
    assert not stale["ok"] and "999" in stale["error"]

    # Malformed, unknown and oversized messages get an error and the connection stays up.
    assert core._ws is not None
    await core._ws.send_str("{not json")
    await core._ws.send_str(json.dumps({"type": "explode", "id": 77}))
    await core._ws.send_str(json.dumps({"type": "stats", "id": 78, "pad": "x" * 300_000}))
    await eventually(
        lambda: sum(m["type"] == "error" for m in core.from_worker) >= 3, "three errors"
    )
    errors = [m for m in core.from_worker if m["type"] == "error"]
    assert "JSON" in errors[0]["message"] and errors[1]["id"] == 77
    assert "limit" in errors[2]["message"]
    stats = await core.request("stats")
    assert stats["ok"] and stats["participants"] == 2


async def test_joins_that_cross_subscribe_each_pair_once(
    started: Callable[[Secret], Awaitable[FakeCore]],
) -> None:
    """Two joins answered before either's subscriptions are made: each connect sees both
    members, and a pair must still be subscribed once, not once per connect (a duplicate
    track carries the same frames twice, and the receiver drops the copies as replays)."""
    core = await started(SECRET)
    await asyncio.wait_for(core.ready.wait(), 20)
    ana, ben = FakeClient("ana"), FakeClient("ben")
    await asyncio.gather(core.join("r1", ana), core.join("r1", ben))
    for sub, pub in ((ana, "ben"), (ben, "ana")):
        for kind in ("video", "audio"):
            await eventually(
                functools.partial(_frames_from, sub, pub, kind, 10),
                f"{sub.name} gets {pub}'s {kind}",
            )
    for client in (ana, ben):
        receiving = [t for t in client.pc.getTransceivers() if t.direction == "recvonly"]
        assert len(receiving) == 2, f"{client.name} was subscribed {len(receiving)} times"
        assert len(client.received) == 2  # the other's video and audio
        assert all(got.dropped == 0 for got in client.received.values())


def _frames_from(sub: FakeClient, pub: str, kind: str, frames: int) -> bool:
    got = sub.received.get((pub, kind))
    return got is not None and len(got.frames) >= frames


async def test_a_publisher_gets_remb_from_the_relay(
    started: Callable[[Secret], Awaitable[FakeCore]],
) -> None:
    """The relay's answer negotiates goog-remb and abs-send-time, and it sends the publisher
    REMB: its ceiling at once, then repeated, and (loopback does not congest) never less
    (aiortc's client sends ~100 kbit/s of video here, whatever the REMB says). Without it a
    browser's camera climbs from its start rate only slowly (tests/browser/...bandwidth.py).
    Each REMB names all of the publisher's SSRCs: one feedback covers its audio and video."""
    core = await started(SECRET)
    await asyncio.wait_for(core.ready.wait(), 20)
    ana, watcher = FakeClient("ana"), FakeClient("watcher", publish=False)
    await core.join("r3", ana)
    await core.join("r3", watcher)
    answer = ana.pc.remoteDescription.sdp
    video = answer[answer.index("m=video") :]
    assert re.search(r"^a=rtcp-fb:\d+ goog-remb\r?$", video, re.M), video
    assert re.search(r"^a=extmap:\d+ \S+/abs-send-time\r?$", video, re.M), video

    senders = {t.kind: t.sender for t in ana.pc.getTransceivers()}
    announced = {senders["audio"]._ssrc, senders["video"]._ssrc, senders["video"]._rtx_ssrc}
    await eventually(lambda: len(ana.remb) >= 5, "five REMBs reached ana's senders")
    assert {value for value, _ in ana.remb} == {MAX_PUBLISH_BITRATE}, ana.remb
    assert all(set(ssrcs) == announced for _, ssrcs in ana.remb), (ana.remb, announced)


async def test_a_new_subscribers_key_frame_is_asked_for_once_it_can_receive_it(
    started: Callable[[Secret], Awaitable[FakeCore]],
) -> None:
    """ana sends a key frame only when asked. When ben joins, the relay asks her once ben's
    transport is connected, not when it makes his subscription: a key frame asked for then
    would reach the relay before ben could receive it and be lost, and the request that
    mattered would wait out her 300 ms throttle. So every key frame she sends for his join
    reaches him, the first thing he gets from her."""
    core = await started(SECRET)
    await asyncio.wait_for(core.ready.wait(), 20)
    ana, ben = FakeClient("ana"), FakeClient("ben")
    await core.join("r5", ana)
    await eventually(lambda: bool(ana.sent["video"]), "ana sends")
    ana_keys_before = sum(1 for f in ana.sent["video"] if f[0] & 1 == 0)
    await core.join("r5", ben)
    await eventually(lambda: _frames_from(ben, "ana", "video", 10), "ben gets ana's video")

    keys_for_ben = [f for f in ana.sent["video"] if f[0] & 1 == 0][ana_keys_before:]
    got = ben.received[("ana", "video")].frames
    assert keys_for_ben, "ana was never asked for a key frame"
    assert got[0] == keys_for_ben[0], "ben's first frame is not the key frame asked for him"
    assert all(frame in got for frame in keys_for_ben), "a key frame asked for ben was lost"


async def test_a_line_whose_track_ended_carries_the_next_visitors_track(
    started: Callable[[Secret], Awaitable[FakeCore]],
) -> None:
    """ana stays while visitors come and go one after another. Her connection keeps one audio
    and one video line for them, not two more per visitor: without reuse every description
    grows by a line pair per person who ever joined, until a long meeting's outgrow what
    signaling carries and the people still there are cut off. Each visitor's frames reach her
    on the reused lines under the visitor's own name, starting at a key frame, every one a
    frame that visitor sent; nothing of an earlier visitor's arrives under a later one's."""
    core = await started(SECRET)
    await asyncio.wait_for(core.ready.wait(), 20)
    ana = FakeClient("ana")
    await core.join("r7", ana)
    visitors = [f"v{n}" for n in range(4)]
    sent: dict[str, set[bytes]] = {}
    for name in visitors:
        visitor = FakeClient(name)
        await core.join("r7", visitor)
        for kind in ("video", "audio"):
            await eventually(
                functools.partial(_frames_from, ana, name, kind, 10), f"ana gets {name}'s {kind}"
            )
        got = ana.received[(name, "video")]
        assert got.frames[0][0] & 1 == 0, f"{name}.s first frame on the line is not a key frame"
        result = await core.request("leave", room="r7", participant=name)
        assert result["ok"], result
        sent[name] = set(visitor.sent["video"]) | set(visitor.sent["audio"])
        del core.clients[name]
        await visitor.close()
        for kind in ("video", "audio"):
            await eventually(
                functools.partial(stopped, ana, ana.received[(name, kind)]),
                f"{name}'s {kind} line goes inactive for ana",
            )
    lines = ana.pc.getTransceivers()
    assert len(lines) == 4, f"ana's connection has {len(lines)} lines after 4 visitors"
    assert ana.reused == 6  # the three later visitors' audio and video
    for name in visitors:
        for kind in ("video", "audio"):
            got = ana.received[(name, kind)]
            assert got.dropped == 0
            assert all(frame in sent[name] for frame in got.frames), f"{name} {kind}: not theirs"


async def test_a_key_frame_asked_for_within_the_throttle_is_asked_for_at_its_end(
    started: Callable[[Secret], Awaitable[FakeCore]],
) -> None:
    """The relay asks a publisher for at most one key frame per 300 ms, and drops none: one
    asked for within the interval goes when it ends, unless a key frame comes first. (A browser
    whose first key frame came under a key it did not have yet asks again at once; dropped, that
    ask left it waiting for its own next one.) Asks ben makes three at a time: while ana sends
    no key frame, she is asked once at once and once at the interval's end; while she answers
    each ask with one, once."""
    core = await started(SECRET)
    await asyncio.wait_for(core.ready.wait(), 20)
    ana, ben = FakeClient("ana"), FakeClient("ben")
    await core.join("r8", ana)
    await core.join("r8", ben)
    await eventually(lambda: _frames_from(ben, "ana", "video", 10), "ben gets ana's video")
    receiver = ben.received[("ana", "video")].receiver
    assert receiver is not None
    ssrc = receiver.getSynchronizationSources()[0].source

    async def ask_three_times() -> int:
        await asyncio.sleep(0.4)  # past the interval of any earlier ask
        before = ana.keyframe_requests
        for _ in range(3):
            await request_keyframe(receiver, ssrc)
        return before

    ana.sends_key_frames_asked_for = False
    before = await ask_three_times()
    await eventually(lambda: ana.keyframe_requests == before + 2, "asked again at the end")
    await asyncio.sleep(0.7)
    assert ana.keyframe_requests == before + 2, "three asks at once are one, and one later"

    ana.sends_key_frames_asked_for = True
    before = await ask_three_times()
    await eventually(lambda: ana.keyframe_requests == before + 1, "asked at once")
    await asyncio.sleep(0.7)
    assert ana.keyframe_requests == before + 1, "her key frame answered the later asks"
