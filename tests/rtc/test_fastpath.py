"""The relay's fast path (``internals.fastpath``): what subscribers get is what aiortc's
sender would have sent (header, extensions, SR counts, NACK repair over RTX); what a tap takes
straight off the socket comes in order, with RTCP left to aiortc; and both work through TURN
allocations, where aioice's transport has no socket and sends each datagram later, in a task.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aioice import stun
from aioice.turn import TurnTransport
from aiortc import RTCPeerConnection, RTCRtpReceiver
from aiortc.rtp import RTCP_RTPFB_NACK, RtcpRtpfbPacket, RtcpSrPacket, RtpPacket

from bot.config import RelaySettings
from bot.ice_servers import ice_servers_for
from bot.rtc.internals import fastpath
from bot.rtc.peer import make_peer_connection, prefer_codec
from bot.rtc.receiving import ReceiverTap
from bot.rtc.sending import SenderTap, SilentTrack
from bot.secret import Secret
from tests.relay.relay_fakes import eventually, record_remb
from tests.rtc.test_internals import KEY_FRAME, Pair, loopback_only, pair  # noqa: F401
from tests.support.coturn import coturn
from tests.support.rtc import tap_receiver_rtp

TURN_SECRET = "a-coturn-shared-secret-for-fast-path-tests"


def _recording(observed: list[RtpPacket], reports: list[Any]) -> Callable[[Any], None]:
    def on_receiver(receiver: Any) -> None:
        tap_receiver_rtp(receiver, observed.append)
        stock = receiver._handle_rtcp_packet

        async def handle(packet: Any) -> None:
            reports.append(packet)
            await stock(packet)

        receiver._handle_rtcp_packet = handle

    return on_receiver


async def test_fast_forward_header_rtx_and_sender_report(pair: Callable[..., Any]) -> None:  # noqa: F811
    observed: list[RtpPacket] = []
    reports: list[Any] = []
    p = await pair(SilentTrack("video", "owner-video"), _recording(observed, reports))
    tap = SenderTap(p.sending)
    await eventually(tap.ready, "the sender started")
    await eventually(lambda: p.b.connectionState == "connected", "connected")
    fast, sender = tap.fast, p.sending.sender
    assert fast is not None
    payloads = [bytes([0x90, 0x80, 0x81, i]) + KEY_FRAME[:500] for i in range(10)]
    ntp = 0x1234567890ABCDEF
    for i, payload in enumerate(payloads):
        source = RtpPacket(payload_type=1, sequence_number=9, timestamp=1000 + i, payload=payload)
        source.marker = i % 2
        seq = (65530 + i) & 0xFFFF  # across the wrap
        assert fast.forward(source, seq, None, b"\x01\x02\x03", ntp + i, 7000 + i)
    await eventually(lambda: len(observed) == 10, "the peer got the 10 packets")
    assert [x.payload for x in observed] == payloads, "payload bytes changed"
    assert {x.ssrc for x in observed} == {sender._ssrc}
    assert {x.payload_type for x in observed} == {tap._payload_type}
    assert [x.sequence_number for x in observed] == [(65530 + i) & 0xFFFF for i in range(10)]
    assert [(x.timestamp, x.marker) for x in observed] == [(1000 + i, i % 2) for i in range(10)]
    assert {x.extensions.mid for x in observed} == {p.sending.mid}
    assert {x.extensions.abs_send_time for x in observed} == {0x010203}

    # A NACK is answered over RTX from the fast path's own history (across the wrap too).
    nacker: Any = p.b.getTransceivers()[0].sender
    observed.clear()
    for lost in (65533, 2):
        nack = RtcpRtpfbPacket(RTCP_RTPFB_NACK, nacker._ssrc, sender._ssrc, lost=[lost])
        await nacker.transport._send_rtp(bytes(nack))
        await eventually(lambda: bool(observed), "a retransmission")
    await eventually(lambda: len(observed) == 2, "the two retransmissions")
    assert {x.ssrc for x in observed} == {sender._rtx_ssrc}
    assert [struct.unpack("!H", x.payload[:2])[0] for x in observed] == [65533, 2]
    assert [x.payload[2:] for x in observed] == [payloads[3], payloads[8]]

    # The sender's next SR carries the fast path's counts and its last time mapping.
    def fast_report() -> RtcpSrPacket | None:
        found = [r for r in reports if isinstance(r, RtcpSrPacket)]
        return next((r for r in found if r.sender_info.packet_count == 10), None)

    await eventually(lambda: fast_report() is not None, "an SR with the fast path's counts")
    report = fast_report()
    assert report is not None
    assert report.sender_info.octet_count == sum(len(x) for x in payloads)
    assert (report.sender_info.ntp_timestamp, report.sender_info.rtp_timestamp) == (ntp + 9, 7009)


async def test_fast_forward_audio_level(pair: Callable[..., Any]) -> None:  # noqa: F811
    observed: list[RtpPacket] = []
    p = await pair(SilentTrack("audio", "owner-audio"), _recording(observed, []))
    tap = SenderTap(p.sending)
    await eventually(tap.ready, "the sender started")
    await eventually(lambda: p.b.connectionState == "connected", "connected")
    assert tap.fast is not None
    for i, level in enumerate([0x80 | 30, None, 90]):
        source = RtpPacket(payload_type=1, sequence_number=9, timestamp=960 * i, payload=b"op" * 40)
        assert tap.fast.forward(source, 10 + i, level, b"\x00\x00\x01", 0, 0)
    await eventually(lambda: len(observed) == 3, "the 3 packets")
    assert [x.extensions.audio_level for x in observed] == [(True, 30), None, (False, 90)]
    assert {x.extensions.mid for x in observed} == {p.sending.mid}
    assert [x.payload for x in observed] == [b"op" * 40] * 3


def _direct_tap(
    receiver: RTCRtpReceiver,
    ssrcs: list[int],
    got: list[tuple[int, bytes, Any]],
    late: Callable[[int], None] | None = None,
) -> ReceiverTap:
    """A video tap taking its packets off the socket, noting (sequence number, payload, the
    task that handled it: None for a socket's callback)."""

    def on_packet(packet: RtpPacket) -> None:
        got.append((packet.sequence_number, packet.payload, asyncio.current_task()))

    return ReceiverTap(receiver, "video", on_packet, ssrcs=ssrcs, direct=True, late=late)


def _key_packet(seq: int) -> RtpPacket:
    payload = KEY_FRAME[:1100]
    return RtpPacket(payload_type=1, sequence_number=seq, timestamp=seq * 3000, payload=payload)


async def _tapped_pair(
    make_pair: Callable[..., Any],
    got: list[tuple[int, bytes, Any]],
    late: Callable[[int], None] | None = None,
    remb: list[tuple[int, list[int]]] | None = None,
) -> tuple[Pair, SenderTap, Any]:
    """A connected pair whose receiving side's video is a ``_direct_tap`` noting in ``got``,
    with the sender's fast path (and its REMBs in ``remb``); packets 1000 to 1009 sent and
    taken."""

    def tap(p: Pair) -> None:
        sender = p.sending.sender
        receiver = p.b.getTransceivers()[0].receiver
        _direct_tap(receiver, [sender._ssrc, sender._rtx_ssrc], got, late)

    p = await make_pair(SilentTrack("video", "owner-video"), before_answer=tap)
    sending = SenderTap(p.sending)
    if remb is not None:
        record_remb(p.sending.sender, remb)
    await eventually(sending.ready, "the sender started")
    await eventually(lambda: p.b.connectionState == "connected", "connected")
    fast = sending.fast
    assert fast is not None
    for seq in range(1000, 1010):
        assert fast.forward(_key_packet(seq), seq, None, b"\x00\x00\x01", 0, 0)
    await eventually(lambda: len(got) == 10, "the tap got the first 10 packets")
    return p, sending, fast


async def test_take_srtp_reads_media_off_the_socket_after_what_aiortc_holds(
    pair: Callable[..., Any],  # noqa: F811
) -> None:
    """Each local socket's StunProtocol.datagram_received (instance attribute) hands the tap's
    SRTP to it in the socket's callback, decrypted with RTCDtlsTransport._rx_srtp, but not
    while Connection._queue still holds datagrams for aiortc's receive task: those come first.
    RTCP stays with aiortc, and the tap's REMB reaches the sender."""
    got: list[tuple[int, bytes, Any]] = []
    remb: list[tuple[int, list[int]]] = []
    p, sending, _ = await _tapped_pair(pair, got, remb=remb)
    assert [(seq, task) for seq, _, task in got] == [(s, None) for s in range(1000, 1010)]
    assert {payload for _, payload, _ in got} == {KEY_FRAME[:1100]}
    await eventually(lambda: bool(remb), "the tap's REMB reached the sender")

    # One datagram waits in the connection's queue (as when the takeover came while aiortc
    # had not read it yet); the next one read off the socket must not overtake it.
    connection = p.b.getTransceivers()[0].receiver.transport.transport._connection
    nominated = connection._nominated[1]
    tx = p.a.getTransceivers()[0].sender.transport._tx_srtp
    header = RtpPacket(payload_type=sending._payload_type, ssrc=p.sending.sender._ssrc)

    def srtp(seq: int) -> bytes:
        header.sequence_number, header.payload = seq, bytes([0x10, seq & 0xFF])
        return bytes(tx.protect(header.serialize()))

    connection.data_received(srtp(1010), 1)
    nominated.protocol.datagram_received(srtp(1011), nominated.remote_addr)
    assert len(got) == 10, "a packet overtook the one aiortc had queued"
    await eventually(lambda: len(got) == 12, "both reached the tap")
    assert [seq for seq, _, _ in got[10:]] == [1010, 1011]
    assert all(task is not None for _, _, task in got[10:]), "not through aiortc's task"
    # With the queue empty again, a datagram is handled as it is read.
    nominated.protocol.datagram_received(srtp(1012), nominated.remote_addr)
    assert [seq for seq, _, _ in got[12:]] == [1012]
    # What a hostile peer may send instead raises nothing in the socket's callback and reaches
    # no one: a bare header, and the tap's SSRC with a forged tag. (An empty datagram goes on to
    # aiortc, which the relay's InboundGuard protects from it: test_internals.)
    forged = bytearray(srtp(1013))
    forged[-1] ^= 0xFF
    for hostile in (srtp(1014)[:12], bytes(forged)):
        nominated.protocol.datagram_received(hostile, nominated.remote_addr)
    assert len(got) == 13

    # Sender reports still reach the receiver (its RTCP task answers them in its reports).
    receiver: Any = p.b.getTransceivers()[0].receiver
    ssrc = p.sending.sender._ssrc
    await eventually(
        lambda: (
            receiver._RTCRtpReceiver__remote_streams[ssrc].packets_received >= 13
            and ssrc in receiver._RTCRtpReceiver__lsr
        ),
        "statistics of the tap's packets and a sender report",
    )


async def test_a_socket_fallen_behind_is_drained_stale_media_dropped_stun_answered(
    pair: Callable[..., Any],  # noqa: F811
) -> None:
    """A worker that falls behind finds a socket's receive queue deep: media that waited there
    past MAX_WAIT_NS is dropped unread and counted, while a STUN request queued behind it (a
    consent check wants its answer within 0.5 s) and fresh media are handled at once. Here the
    loop is held (a blocking sleep) while 150 packets, a STUN request and 5 more queue up."""
    got: list[tuple[int, bytes, Any]] = []
    late: list[int] = []
    p, _, fast = await _tapped_pair(pair, got, late.append)

    receiving = p.b.getTransceivers()[0].receiver.transport.transport._connection
    address = receiving._nominated[1].protocol.transport.get_extra_info("sockname")[:2]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        probe.setblocking(False)
        request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
        stale = range(2000, 2150)
        for seq in stale:
            assert fast.forward(_key_packet(seq), seq, None, b"\x00\x00\x01", 0, 0)
        probe.sendto(bytes(request), address)
        time.sleep((fastpath.MAX_WAIT_NS + 50_000_000) / 1e9)  # the loop is held: they wait
        fresh = range(2150, 2155)
        for seq in fresh:
            assert fast.forward(_key_packet(seq), seq, None, b"\x00\x00\x01", 0, 0)

        await eventually(lambda: {seq for seq, _, _ in got} >= set(fresh), "the fresh packets")
        answer = stun.parse_message(probe.recv(2048))  # raises if nothing came back
        assert answer.transaction_id == request.transaction_id
        handled = [seq for seq, _, _ in got[10:] if seq in stale]
        # Only those read before the queue was next measured got through; the rest were dropped.
        assert len(handled) < fastpath.CHECK_EVERY
        assert sum(late) == len(stale) - len(handled)
        assert [seq for seq, _, _ in got[10:]] == [*handled, *fresh]


async def test_fast_path_through_turn_allocations(tmp_path: Path) -> None:
    """Both peers relay-only: the selected pairs' protocols write to aioice's TurnTransport,
    which keeps what it is given until its task sends it. A burst of packets forwarded in one
    go (one shared buffer) arrives byte for byte, and take_srtp reads what the allocation
    relays (TurnClientUdpProtocol calls the StunProtocol's datagram_received)."""
    got: list[tuple[int, bytes, Any]] = []
    with coturn(tmp_path / "coturn", TURN_SECRET) as turn:
        settings = RelaySettings(ice_servers=(turn.turn_url,), turn_secret=Secret(TURN_SECRET))
        servers = ice_servers_for(settings, "fast", time.time())

        def on_answerer(b: RTCPeerConnection) -> None:
            sender: Any = a_sender[0]
            _direct_tap(b.getTransceivers()[0].receiver, [sender._ssrc, sender._rtx_ssrc], got)

        a_sender: list[Any] = []
        a = make_peer_connection(servers=servers, relay_only=True)
        b = make_peer_connection(servers=servers, relay_only=True)
        try:
            sending = a.addTransceiver(SilentTrack("video", "owner-video"), direction="sendonly")
            prefer_codec(sending)
            a_sender.append(sending.sender)
            await a.setLocalDescription(await a.createOffer())
            await b.setRemoteDescription(a.localDescription)
            on_answerer(b)
            await b.setLocalDescription(await b.createAnswer())
            await a.setRemoteDescription(b.localDescription)
            tap = SenderTap(sending)
            await eventually(tap.ready, "the sender started")
            await eventually(lambda: b.connectionState == "connected", "connected", 30)
            for pc in (a, b):
                transport: Any = pc.getTransceivers()[0].sender.transport
                protocol = transport.transport._connection._nominated[1].protocol
                assert isinstance(protocol.transport, TurnTransport), "not through TURN"
            assert tap.fast is not None
            payloads = [bytes([0x10, i]) + KEY_FRAME[: 300 + i] for i in range(20)]
            for i, payload in enumerate(payloads):
                packet = RtpPacket(payload_type=1, sequence_number=i, timestamp=0, payload=payload)
                assert tap.fast.forward(packet, 500 + i, None, b"\x00\x00\x01", 0, 0)
            await eventually(lambda: len(got) == 20, "the 20 packets, through TURN")
        finally:
            await a.close()
            await b.close()
    assert [(seq, payload) for seq, payload, _ in got] == [
        (500 + i, payload) for i, payload in enumerate(payloads)
    ]
    assert {task for _, _, task in got} == {None}, "not read off the socket"
