"""One test per aiortc/aioice internal Conclave relies on: the attribute is there AND it works.

When an aiortc upgrade breaks one, the failing test names the attribute. Every test runs real
peer connections on loopback with no ICE servers.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aioice.ice
import aiortc
import pytest
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtp import RtpPacket

from bot.relay import aiortc_internals as hooks
from bot.relay.sfu import vp8_starts_key_frame
from bot.secret import Secret

KEY_FRAME = bytes([0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A]) + os.urandom(2500)


def delta_frame() -> bytes:
    return bytes([0x11, 0x02, 0x00]) + os.urandom(600)


async def eventually(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.02)


@pytest.fixture(autouse=True)
def loopback_only() -> Any:
    hooks.restrict_host_addresses(["127.0.0.1"])
    yield
    hooks.restrict_host_addresses([])


@dataclass
class Pair:
    a: RTCPeerConnection
    b: RTCPeerConnection
    sending: RTCRtpTransceiver
    receiving: list[RTCRtpReceiver] = field(default_factory=list)


@pytest.fixture
async def pair() -> AsyncIterator[Callable[..., Any]]:
    made: list[Pair] = []

    async def connect(
        track: MediaStreamTrack, on_receiver: Callable[[RTCRtpReceiver], None] | None = None
    ) -> Pair:
        a, b = hooks.make_peer_connection(), hooks.make_peer_connection()
        sending = a.addTransceiver(track, direction="sendonly")
        hooks.prefer_codec(sending)
        p = Pair(a, b, sending)
        made.append(p)

        @b.on("track")
        def on_track(remote: MediaStreamTrack) -> None:
            receiver = next(t.receiver for t in b.getTransceivers() if t.receiver.track is remote)
            p.receiving.append(receiver)
            if on_receiver is not None:
                on_receiver(receiver)

        await a.setLocalDescription(await a.createOffer())
        await b.setRemoteDescription(a.localDescription)
        await b.setLocalDescription(await b.createAnswer())
        await a.setRemoteDescription(b.localDescription)
        return p

    yield connect
    for p in made:
        await p.a.close()
        await p.b.close()


async def pump(track: hooks.EncodedTrack, frames: list[bytes], stop: asyncio.Event) -> None:
    """Push a key frame, then delta frames every 20 ms, recording them, until ``stop``."""
    n = 0
    while not stop.is_set():
        frame = KEY_FRAME if n == 0 else delta_frame()
        frames.append(frame)
        track.push(frame, n * 4500)
        n += 1
        await asyncio.sleep(0.02)


async def test_pinned_version_and_start_up_check() -> None:
    assert aiortc.__version__ == hooks.AIORTC_VERSION == "1.16.0", (
        f"aiortc {aiortc.__version__} is installed; the hooks are written for 1.16.0"
    )
    hooks.check_internals()  # raises AiortcMismatch naming what is missing


async def test_make_peer_connection_has_no_default_stun() -> None:
    pc: Any = hooks.make_peer_connection()
    try:
        config = pc._RTCPeerConnection__configuration
        assert config.iceServers == [], "RTCPeerConnection.__configuration.iceServers not empty"
        assert config.bundlePolicy == aiortc.RTCBundlePolicy.MAX_BUNDLE
    finally:
        await pc.close()
    with_turn: Any = hooks.make_peer_connection(["turn:turn.example:3478"], "u", Secret("p"))
    try:
        (server,) = with_turn._RTCPeerConnection__configuration.iceServers
        assert (server.urls, server.username, server.credential) == (
            "turn:turn.example:3478",
            "u",
            "p",
        )
    finally:
        await with_turn.close()


async def test_restrict_host_addresses_patches_aioice() -> None:
    assert callable(aioice.ice.get_host_addresses), "aioice.ice.get_host_addresses is gone"
    assert list(inspect.signature(aioice.ice.get_host_addresses).parameters) == [
        "use_ipv4",
        "use_ipv6",
    ], "aioice.ice.get_host_addresses(use_ipv4, use_ipv6) changed signature"
    pc = hooks.make_peer_connection()
    try:
        pc.addTransceiver("audio", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        candidates = [line for line in pc.localDescription.sdp.splitlines() if "candidate:" in line]
        assert candidates, "no ICE candidates gathered"
        assert all(" 127.0.0.1 " in line for line in candidates), candidates
    finally:
        await pc.close()


async def test_encoded_track_and_receive_transform(pair: Callable[..., Any]) -> None:
    """EncodedTrack frames reach the wire unchanged (Encoder.pack path), and
    RTCRtpReceiver.__decoder_queue.get sees each frame, can replace it and can drop it."""
    seen: list[bytes] = []
    drops: list[int] = []

    def transform(data: bytes) -> bytes | None:
        seen.append(data)
        return None  # drop everything: these are not decodable VP8 frames

    def on_receiver(receiver: RTCRtpReceiver) -> None:
        assert hasattr(receiver, "_RTCRtpReceiver__decoder_queue"), "__decoder_queue is gone"
        assert hasattr(receiver, "_RTCRtpReceiver__decoder_error"), "__decoder_error is gone"
        hooks.install_receive_transform(receiver, "video", transform, lambda: drops.append(1))

    track = hooks.EncodedTrack("video")
    p = await pair(track, on_receiver)
    keyframe_requests: list[int] = []
    hooks.on_keyframe_request(p.sending.sender, lambda: keyframe_requests.append(1))
    sent: list[bytes] = []
    stop = asyncio.Event()
    pumping = asyncio.create_task(pump(track, sent, stop))
    try:
        await eventually(lambda: len(seen) >= 10, "the receive transform saw 10 frames")
        assert seen[0] == KEY_FRAME and all(f in sent for f in seen), "frames altered"
        assert len(drops) >= 10
        # A dropped video frame sets __decoder_error, so the receiver sends a PLI.
        await eventually(lambda: bool(keyframe_requests), "a dropped frame caused a PLI")
    finally:
        stop.set()
        await pumping


async def test_on_keyframe_request_replaces_send_keyframe(pair: Callable[..., Any]) -> None:
    track = hooks.EncodedTrack("video")
    p = await pair(track)
    assert callable(p.sending.sender._send_keyframe), "RTCRtpSender._send_keyframe is gone"
    calls: list[int] = []
    hooks.on_keyframe_request(p.sending.sender, lambda: calls.append(1))
    stop = asyncio.Event()
    pumping = asyncio.create_task(pump(track, [], stop))
    try:
        await eventually(lambda: bool(p.receiving), "the track arrived")
        receiver = p.receiving[0]
        await eventually(lambda: bool(receiver.getSynchronizationSources()), "packets arrived")
        before = len(calls)
        await hooks.request_keyframe(receiver, p.sending.sender._ssrc)
        await eventually(lambda: len(calls) > before, "the PLI reached _send_keyframe")
    finally:
        stop.set()
        await pumping


async def test_receiver_tap_takes_rtp_packets(pair: Callable[..., Any]) -> None:
    """RTCRtpReceiver._handle_rtp_packet (instance attribute) gets RtpPacket objects; the tap
    keeps __remote_streams fed (receiver reports) and can send PLIs via _send_rtcp_pli."""
    got: list[RtpPacket] = []
    reports: list[int] = []
    taps: list[hooks.ReceiverTap] = []

    async def on_packet(packet: RtpPacket) -> None:
        got.append(packet)

    def on_receiver(receiver: RTCRtpReceiver) -> None:
        for name in ("_handle_rtp_packet", "_handle_rtcp_packet", "_send_rtcp_nack"):
            assert callable(getattr(receiver, name, None)), f"RTCRtpReceiver.{name} is gone"
        taps.append(
            hooks.ReceiverTap(receiver, "video", on_packet, lambda s, n, r: reports.append(s))
        )

    track = hooks.EncodedTrack("video")
    p = await pair(track, on_receiver)
    calls: list[int] = []
    hooks.on_keyframe_request(p.sending.sender, lambda: calls.append(1))
    stop = asyncio.Event()
    pumping = asyncio.create_task(pump(track, [], stop))
    try:
        await eventually(lambda: len(got) >= 20, "the tap got 20 packets")
        assert all(isinstance(x, RtpPacket) for x in got)
        assert vp8_starts_key_frame(got[0].payload), "first packet does not start the key frame"
        tap = taps[0]
        assert tap.media_ssrc == p.sending.sender._ssrc
        streams = p.receiving[0]._RTCRtpReceiver__remote_streams
        assert tap.media_ssrc in streams, "RTCRtpReceiver.__remote_streams not fed"
        tap.send_pli()
        await eventually(lambda: bool(calls), "the tap's PLI reached the sender")
        await eventually(lambda: bool(reports), "a sender report came through the RTCP hook")
    finally:
        stop.set()
        await pumping


async def test_sender_tap_sends_foreign_packets(pair: Callable[..., Any]) -> None:
    """RTCRtpSender.__started/__mid/__rtp_header_extensions_map/__rtp_history/counters and
    RTCDtlsTransport._send_rtp let the relay send packets it did not packetize."""
    observed: list[RtpPacket] = []
    p = await pair(
        hooks.SilentTrack("video", "owner-video"),
        lambda r: hooks.tap_receiver_rtp(r, observed.append),
    )
    tap = hooks.SenderTap(p.sending)
    await eventually(tap.ready, "RTCRtpSender.__started became true")
    sender = p.sending.sender
    assert hooks.sender_started(sender)
    assert sender._RTCRtpSender__mid == p.sending.mid, "RTCRtpSender.__mid"
    await eventually(lambda: p.b.connectionState == "connected", "connected")
    payloads = [bytes([0x90, 0x80, 0x81, i]) + KEY_FRAME[:500] for i in range(10)]
    for i, payload in enumerate(payloads):
        source = RtpPacket(payload_type=1, sequence_number=9, timestamp=1000 + i, payload=payload)
        assert await tap.send(source, 100 + i, 1000 + i)
    await eventually(lambda: len(observed) == 10, "the peer got the 10 packets")
    assert [x.payload for x in observed] == payloads, "payload bytes changed"
    assert {x.ssrc for x in observed} == {sender._ssrc}
    assert [x.sequence_number for x in observed] == list(range(100, 110))
    assert sender._RTCRtpSender__packet_count == 10, "RTCRtpSender.__packet_count"
    assert sender._RTCRtpSender__rtp_history[105].payload == payloads[5], "__rtp_history"


async def test_set_stream_id_sets_msid() -> None:
    pc = hooks.make_peer_connection()
    try:
        t = pc.addTransceiver(hooks.SilentTrack("audio", "ana-audio"), direction="sendonly")
        assert isinstance(t.sender, RTCRtpSender) and hasattr(t.sender, "_stream_id")
        hooks.set_stream_id(t.sender, "ana")
        await pc.setLocalDescription(await pc.createOffer())
        assert "a=msid:ana ana-audio" in pc.localDescription.sdp, "RTCRtpSender._stream_id"
    finally:
        await pc.close()
