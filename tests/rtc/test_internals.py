"""One test per aiortc/aioice internal Conclave relies on: the attribute is there AND it works.

When an aiortc upgrade breaks one, the failing test names the attribute. Every test runs real
peer connections on loopback with no ICE servers.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import random
import socket
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aioice.ice
import aiortc
import pytest
from aioice import stun
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver, clock
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtp import RTCP_RTPFB_NACK, RTP_HISTORY_SIZE, RtcpRtpfbPacket, RtpPacket

from bot.config import RelaySettings
from bot.relay.tracks import vp8_starts_key_frame
from bot.rtc import internals
from bot.rtc.inbound import InboundGuard
from bot.rtc.peer import make_peer_connection, prefer_codec
from bot.rtc.receiving import ReceiverTap
from bot.rtc.sending import SenderTap, SilentTrack
from bot.secret import Secret
from tests.relay.relay_fakes import eventually, record_remb
from tests.support.rtc import EncodedTrack, ssrc_state, tap_receiver_rtp

KEY_FRAME = bytes([0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A]) + os.urandom(2500)


def delta_frame() -> bytes:
    return bytes([0x11, 0x02, 0x00]) + os.urandom(600)


@pytest.fixture(autouse=True)
def loopback_only() -> Any:
    internals.restrict_host_addresses(["127.0.0.1"])
    yield
    internals.restrict_host_addresses([])


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
        track: MediaStreamTrack,
        on_receiver: Callable[[RTCRtpReceiver], None] | None = None,
        before_answer: Callable[[Pair], None] | None = None,
    ) -> Pair:
        a, b = make_peer_connection(), make_peer_connection()
        sending = a.addTransceiver(track, direction="sendonly")
        prefer_codec(sending)
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
        if before_answer is not None:
            before_answer(p)
        await b.setLocalDescription(await b.createAnswer())
        await a.setRemoteDescription(b.localDescription)
        return p

    yield connect
    for p in made:
        await p.a.close()
        await p.b.close()


@asynccontextmanager
async def pumping(track: EncodedTrack, frames: list[bytes] | None = None) -> AsyncIterator[None]:
    """Within the block, push a key frame, then delta frames every 20 ms, into ``frames``."""
    stop = asyncio.Event()
    task = asyncio.create_task(pump(track, [] if frames is None else frames, stop))
    try:
        yield
    finally:
        stop.set()
        await task


async def pump(track: EncodedTrack, frames: list[bytes], stop: asyncio.Event) -> None:
    n = 0
    while not stop.is_set():
        frame = KEY_FRAME if n == 0 else delta_frame()
        frames.append(frame)
        track.push(frame, n * 4500)
        n += 1
        await asyncio.sleep(0.02)


async def test_pinned_version_and_start_up_check() -> None:
    assert aiortc.__version__ == internals.AIORTC_VERSION == "1.16.0", (
        f"aiortc {aiortc.__version__} is installed; the hooks are written for 1.16.0"
    )
    internals.check_internals()  # raises AiortcMismatch naming what is missing


async def test_make_peer_connection_has_no_default_stun() -> None:
    pc: Any = make_peer_connection()
    try:
        config = pc._RTCPeerConnection__configuration
        assert config.iceServers == [], "RTCPeerConnection.__configuration.iceServers not empty"
        assert config.bundlePolicy == aiortc.RTCBundlePolicy.MAX_BUNDLE
    finally:
        await pc.close()
    ice = RelaySettings(
        ice_servers=("turn:turn.example:3478",), ice_username="u", ice_credential=Secret("p")
    )
    with_turn: Any = make_peer_connection(ice)
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
    pc = make_peer_connection()
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
        internals.install_receive_transform(receiver, "video", transform, lambda: drops.append(1))

    track = EncodedTrack("video")
    p = await pair(track, on_receiver)
    keyframe_requests: list[int] = []
    internals.on_keyframe_request(p.sending.sender, lambda: keyframe_requests.append(1))
    sent: list[bytes] = []
    async with pumping(track, sent):
        await eventually(lambda: len(seen) >= 10, "the receive transform saw 10 frames")
        assert seen[0] == KEY_FRAME and all(f in sent for f in seen), "frames altered"
        assert len(drops) >= 10
        # A dropped video frame sets __decoder_error, so the receiver sends a PLI.
        await eventually(lambda: bool(keyframe_requests), "a dropped frame caused a PLI")


async def test_drop_estimator_frees_a_video_receivers_rate_counter(
    pair: Callable[..., Any],
) -> None:
    """RTCRtpReceiver.__remote_bitrate_estimator holds about 1,000 objects for the garbage
    collector to walk. Dropped, aiortc's own receive path (which checks it for None, as it is
    for audio) goes on: every frame still reaches the decoder queue, in order."""
    seen: list[bytes] = []

    def transform(data: bytes) -> bytes | None:
        seen.append(data)
        return None  # not decodable VP8: only that the frames get here matters

    def on_receiver(receiver: RTCRtpReceiver) -> None:
        estimator = getattr(receiver, "_RTCRtpReceiver__remote_bitrate_estimator", None)
        assert estimator is not None, "RTCRtpReceiver.__remote_bitrate_estimator is gone"
        internals.drop_estimator(receiver)
        assert getattr(receiver, "_RTCRtpReceiver__remote_bitrate_estimator", 0) is None
        internals.install_receive_transform(receiver, "video", transform)

    track = EncodedTrack("video")
    p = await pair(track, on_receiver)
    sent: list[bytes] = []
    async with pumping(track, sent):
        await eventually(lambda: len(seen) >= 20, "20 frames through aiortc's receive path")
    assert seen == sent[: len(seen)], "frames lost or reordered without the estimator"
    assert p.b.connectionState == "connected"


async def test_on_keyframe_request_replaces_send_keyframe(pair: Callable[..., Any]) -> None:
    track = EncodedTrack("video")
    p = await pair(track)
    assert callable(p.sending.sender._send_keyframe), "RTCRtpSender._send_keyframe is gone"
    calls: list[int] = []
    internals.on_keyframe_request(p.sending.sender, lambda: calls.append(1))
    async with pumping(track):
        await eventually(lambda: bool(p.receiving), "the track arrived")
        receiver = p.receiving[0]
        await eventually(lambda: bool(receiver.getSynchronizationSources()), "packets arrived")
        before = len(calls)
        await internals.request_keyframe(receiver, p.sending.sender._ssrc)
        await eventually(lambda: len(calls) > before, "the PLI reached _send_keyframe")


async def test_receiver_tap_takes_rtp_packets(pair: Callable[..., Any]) -> None:
    """RTCRtpReceiver._handle_rtp_packet (instance attribute) gets RtpPacket objects; the tap
    keeps __remote_streams fed (receiver reports) and can send PLIs via _send_rtcp_pli."""
    got: list[RtpPacket] = []
    reports: list[int] = []
    taps: list[ReceiverTap] = []

    async def on_packet(packet: RtpPacket) -> None:
        got.append(packet)

    def on_receiver(receiver: RTCRtpReceiver) -> None:
        for name in ("_handle_rtp_packet", "_handle_rtcp_packet", "_send_rtcp_nack"):
            assert callable(getattr(receiver, name, None)), f"RTCRtpReceiver.{name} is gone"
        taps.append(ReceiverTap(receiver, "video", on_packet, lambda s, n, r: reports.append(s)))

    track = EncodedTrack("video")
    p = await pair(track, on_receiver)
    calls: list[int] = []
    internals.on_keyframe_request(p.sending.sender, lambda: calls.append(1))
    async with pumping(track):
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


async def test_take_rtp_gives_arrival_times_and_send_remb_reaches_the_sender(
    pair: Callable[..., Any],
) -> None:
    """take_rtp hands each packet over with its arrival time (aiortc's clock, ms), which the
    REMB estimator needs; RTCRtpReceiver.__rtcp_ssrc and _send_rtcp carry the REMB back."""
    arrivals: list[tuple[int, int]] = []  # (arrival ms, aiortc's clock when handled)

    async def handler(packet: RtpPacket, arrival_time_ms: int) -> None:
        arrivals.append((arrival_time_ms, clock.current_ms()))

    def on_receiver(receiver: RTCRtpReceiver) -> None:
        for name in ("_send_rtcp", "_RTCRtpReceiver__rtcp_ssrc"):
            assert hasattr(receiver, name), f"RTCRtpReceiver.{name} is gone"
        internals.take_rtp(receiver, handler)

    track = EncodedTrack("video")
    p = await pair(track, on_receiver)
    remb: list[tuple[int, list[int]]] = []
    record_remb(p.sending.sender, remb)
    async with pumping(track):
        await eventually(lambda: len(arrivals) >= 10, "packets arrived")
        assert all(0 <= handled - arrived < 5000 for arrived, handled in arrivals), arrivals[:3]
        ssrc = p.sending.sender._ssrc
        await internals.send_remb(p.receiving[0], 1_000_000, [ssrc])
        await eventually(lambda: bool(remb), "the REMB reached the sender")
    assert remb == [(1_000_000, [ssrc])]


async def test_sender_tap_sends_foreign_packets(pair: Callable[..., Any]) -> None:
    """RTCRtpSender.__started/__mid/__rtp_header_extensions_map/__rtp_history/counters and
    RTCDtlsTransport._send_rtp let the relay send packets it did not packetize; the tap's
    RTCRtpSender._handle_rtcp_packet (instance attribute) rations what NACKs make it resend."""
    observed: list[RtpPacket] = []
    p = await pair(
        SilentTrack("video", "owner-video"),
        lambda r: tap_receiver_rtp(r, observed.append),
    )
    tap = SenderTap(p.sending)
    await eventually(tap.ready, "RTCRtpSender.__started became true")
    sender = p.sending.sender
    assert internals.sender_started(sender)
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

    # An honest NACK is answered (over RTX); a hostile one listing the ten packets 300 times
    # over, sent 20 times, gets only what the credit allows: one history's worth in all.
    assert callable(sender._handle_rtcp_packet), "RTCRtpSender._handle_rtcp_packet is gone"
    nacker: Any = p.b.getTransceivers()[0].sender
    observed.clear()
    honest = RtcpRtpfbPacket(RTCP_RTPFB_NACK, nacker._ssrc, sender._ssrc, lost=[103, 105])
    await nacker.transport._send_rtp(bytes(honest))
    await eventually(lambda: len(observed) == 2, "the two retransmissions")
    assert {x.ssrc for x in observed} == {sender._rtx_ssrc}
    fci = struct.pack("!HH", 100, 0x01FF) * 300  # 100 and the next nine, 300 times
    hostile = struct.pack("!BBHLL", 0x81, 205, 2 + len(fci) // 4, nacker._ssrc, sender._ssrc)
    for _ in range(20):
        await nacker.transport._send_rtp(hostile + fci)
    await eventually(
        lambda: tap.refused_retransmissions == 20 * 10 - (RTP_HISTORY_SIZE - 2),
        "the sender ran out of credit",
    )
    source = RtpPacket(payload_type=1, sequence_number=9, timestamp=2000, payload=payloads[0])
    assert await tap.send(source, 110, 2000)
    await eventually(lambda: observed[-1].sequence_number == 110, "the marker arrived")
    assert len(observed) - 1 == RTP_HISTORY_SIZE, "retransmissions beyond the credit"


async def test_set_stream_id_sets_msid() -> None:
    pc = make_peer_connection()
    try:
        t = pc.addTransceiver(SilentTrack("audio", "ana-audio"), direction="sendonly")
        assert isinstance(t.sender, RTCRtpSender) and hasattr(t.sender, "_stream_id")
        internals.set_stream_id(t.sender, "ana")
        await pc.setLocalDescription(await pc.createOffer())
        assert "a=msid:ana ana-audio" in pc.localDescription.sdp, "RTCRtpSender._stream_id"
    finally:
        await pc.close()


async def send_foreign_packets(p: Pair, count: int, seed: int) -> set[int]:
    """Send about ``count`` RTP packets with the sender's payload type, each with a random SSRC
    of its own, through its transport (RTCDtlsTransport._send_rtp protects whatever it gets);
    the SSRCs."""
    rng = random.Random(seed)
    ssrcs = {rng.getrandbits(32) for _ in range(count)} - {p.sending.sender._ssrc}
    payload_type = p.sending._codecs[0].payloadType
    assert payload_type is not None
    packets = [
        RtpPacket(payload_type, sequence_number=n, timestamp=n, ssrc=s, payload=delta_frame())
        for n, s in enumerate(sorted(ssrcs))
    ]
    for packet in packets:
        await p.sending.sender.transport._send_rtp(packet.serialize())
        await asyncio.sleep(0)
    return ssrcs


async def test_inbound_guard_stands_in_for_rx_srtp(pair: Callable[..., Any]) -> None:
    """RTCDtlsTransport._setup_srtp (per instance) and ._rx_srtp let the guard drop RTP with
    other SSRCs before libsrtp; ssrc_state reads RTCDtlsTransport._rtp_router.ssrc_table,
    RTCRtpReceiver.__remote_streams and, through pylibsrtp's Session._srtp, libsrtp's
    srtp_get_stream_roc."""
    guards: list[InboundGuard] = []

    def guard(p: Pair) -> None:
        transport = p.b.getTransceivers()[0].receiver.transport
        assert callable(getattr(transport, "_setup_srtp", None)), "_setup_srtp is gone"
        assert hasattr(transport, "_rx_srtp"), "RTCDtlsTransport._rx_srtp is gone"
        sender = p.sending.sender
        g = InboundGuard([sender._ssrc, sender._rtx_ssrc], [], lambda: 2, 1000, 8)
        internals.guard_inbound(p.b, g)
        guards.append(g)

    track = EncodedTrack("video")
    p = await pair(track, before_answer=guard)
    async with pumping(track):
        await eventually(lambda: bool(p.receiving), "the track arrived")
        receiver = p.receiving[0]
        await eventually(lambda: bool(receiver.getSynchronizationSources()), "media flows")
        g = guards[0]
        assert p.b.getTransceivers()[0].receiver.transport._rx_srtp is g, "_rx_srtp not replaced"
        foreign = await send_foreign_packets(p, 300, seed=1)
        await eventually(lambda: g.foreign == len(foreign), "the guard dropped every one")
        own = p.sending.sender._ssrc
        state = ssrc_state(p.b, foreign | {own})
        assert state.srtp == {own}, "libsrtp streams for dropped SSRCs, or none for the sender"
        assert own in state.routed and own in state.counted
        assert not (state.routed | state.counted) & foreign
        assert g.passed > 0 and g.over_rate == 0


async def test_inbound_guard_drops_the_empty_datagram_that_ends_a_connection(
    pair: Callable[..., Any],
) -> None:
    """aioice's Connection.data_received (per instance) queues every datagram that is not STUN,
    from any address, for aiortc's DTLS transport, whose receive task reads its first byte. A
    stranger's empty UDP datagram ends the unguarded side's transport; the guarded side drops
    and counts it, and its media goes on."""
    guards: list[InboundGuard] = []

    def guard(p: Pair) -> None:
        sender = p.sending.sender
        g = InboundGuard([sender._ssrc, sender._rtx_ssrc], [], lambda: 2, 1000, 8)
        internals.guard_inbound(p.b, g)
        guards.append(g)

    def local_address(pc: RTCPeerConnection) -> tuple[str, int]:
        transport: Any = pc.getTransceivers()[0].receiver.transport
        udp = transport.transport._connection._nominated[1].protocol.transport
        return tuple(udp.get_extra_info("sockname")[:2])

    track = EncodedTrack("video")
    p = await pair(track, before_answer=guard)
    async with pumping(track):
        await eventually(lambda: bool(p.receiving), "the track arrived")
        streams = p.receiving[0]._RTCRtpReceiver__remote_streams
        ssrc = p.sending.sender._ssrc
        await eventually(lambda: ssrc in streams, "media flows")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
            stranger.sendto(b"", local_address(p.b))
            await eventually(lambda: guards[0].malformed == 1, "the guard dropped it")
            before = streams[ssrc].packets_received
            await eventually(lambda: streams[ssrc].packets_received > before + 20, "media goes on")
            assert p.b.connectionState == "connected"
            # The sending side has no guard: the same datagram ends its transport.
            stranger.sendto(b"", local_address(p.a))
            sending: Any = p.sending.sender.transport
            await eventually(lambda: sending.state == "closed", "the unguarded side survived")


def sdp_value(sdp: str, attribute: str) -> str:
    return next(x.split(":", 1)[1] for x in sdp.splitlines() if x.startswith(f"a={attribute}:"))


async def test_inbound_guard_caps_peer_reflexive_candidates(pair: Callable[..., Any]) -> None:
    """RTCIceTransport._connection.check_incoming (per instance) and aioice's
    Connection._remote_candidates: authentic checks from new source addresses stop adding
    candidates at the guard's limit."""
    guards: list[InboundGuard] = []

    def guard(p: Pair) -> None:
        connection = p.b.getTransceivers()[0].receiver.transport.transport._connection
        assert callable(getattr(connection, "check_incoming", None)), "check_incoming is gone"
        assert isinstance(connection._remote_candidates, list), "_remote_candidates is gone"
        limit = len(connection._remote_candidates) + 5
        guards.append(InboundGuard([], [], lambda: 0, 1000, remote_candidates=limit))
        internals.guard_inbound(p.b, guards[0])

    p = await pair(SilentTrack("video", "owner-video"), before_answer=guard)
    await eventually(lambda: p.b.connectionState == "connected", "connected")
    g, connection = guards[0], p.b.getTransceivers()[0].receiver.transport.transport._connection
    before = len(connection._remote_candidates)
    local, remote = p.b.localDescription.sdp, p.a.localDescription.sdp
    candidate = sdp_value(local, "candidate").split()
    target = (candidate[4], int(candidate[5]))
    username = f"{sdp_value(local, 'ice-ufrag')}:{sdp_value(remote, 'ice-ufrag')}"
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(40)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
            check = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
            check.attributes["USERNAME"] = username
            check.attributes["PRIORITY"] = 1
            check.add_message_integrity(sdp_value(local, "ice-pwd").encode())
            check.add_fingerprint()
            sock.sendto(bytes(check), target)
        await eventually(
            lambda: len(connection._remote_candidates) - before + g.ice_refused == 40,
            "every check was handled",
        )
    finally:
        for sock in sockets:
            sock.close()
    assert len(connection._remote_candidates) == g.remote_candidates, "candidates beyond the cap"
    assert g.ice_refused == 40 - (g.remote_candidates - before)


async def test_receiver_tap_keeps_statistics_only_for_its_ssrcs(pair: Callable[..., Any]) -> None:
    """Without the guard aiortc's router learns any SSRC by payload type (the reason for the
    guard); a ReceiverTap given its SSRCs keeps no statistics for, and passes on none of, the
    others."""
    got: list[RtpPacket] = []

    async def on_packet(packet: RtpPacket) -> None:
        got.append(packet)

    def tap(p: Pair) -> None:
        sender = p.sending.sender
        receiver = p.b.getTransceivers()[0].receiver
        ReceiverTap(receiver, "video", on_packet, ssrcs=[sender._ssrc, sender._rtx_ssrc])

    track = EncodedTrack("video")
    p = await pair(track, before_answer=tap)
    async with pumping(track):
        await eventually(lambda: bool(got), "the tap got the sender's packets")
        foreign = await send_foreign_packets(p, 100, seed=2)
        await eventually(
            lambda: foreign <= ssrc_state(p.b, ()).routed, "the router learnt them all"
        )
        state = ssrc_state(p.b, foreign)
        assert state.counted == {p.sending.sender._ssrc}, "statistics for foreign SSRCs"
        assert not {x.ssrc for x in got} & foreign, "the tap passed on foreign packets"
