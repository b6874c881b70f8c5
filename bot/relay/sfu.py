"""The forwarding engine: rooms of peer connections whose RTP is copied, never decoded.

Each participant has one RTCPeerConnection with the relay. Its initial offer carries what it
publishes (at most one audio and one video track); the relay answers and then adds one
sendonly transceiver per track of every other participant, and re-offers. After the initial
offer only the relay offers, one negotiation at a time per connection, so offers never cross.

A published packet is copied to each subscriber with the subscriber sender's SSRC, payload type
and mid and a per-subscriber sequence number offset; the payload bytes are not touched. The
relay reads only the VP8 payload descriptor and the first byte of a frame (the clear key-frame
flag) so that a new subscriber's video starts at a key frame. It holds no media keys.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

from aiortc import RTCPeerConnection, RTCRtpTransceiver, RTCSessionDescription
from aiortc import clock as aiortc_clock
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtp import RtpPacket

from bot.errors import ConclaveError
from bot.relay import aiortc_internals as hooks
from bot.relay.control import NEGOTIATION_TIMEOUT_SECONDS

log = logging.getLogger(__name__)

KEYFRAME_REQUEST_INTERVAL: Final = 0.3  # at most one PLI upstream per publisher track per 300 ms

# (room, participant, negotiation number, offer SDP): deliver a relay offer to the client.
SendOffer = Callable[[str, str, int, str], Awaitable[None]]
PeerConnectionFactory = Callable[[], RTCPeerConnection]


class RelayError(ConclaveError):
    code = "relay_error"


class AlreadyJoined(RelayError):
    code = "already_joined"

    def __init__(self, room: str, participant: str) -> None:
        super().__init__(f"Participant {participant} is already in room {room} on this relay.")


class NotJoined(RelayError):
    code = "not_joined"

    def __init__(self, room: str, participant: str) -> None:
        super().__init__(f"Participant {participant} is not in room {room} on this relay.")


class BadSessionDescription(RelayError):
    code = "bad_sdp"


class StaleNegotiation(RelayError):
    code = "stale_negotiation"

    def __init__(self, negotiation: int) -> None:
        super().__init__(
            f"Negotiation {negotiation} is not awaiting an answer (it timed out or was replaced)."
        )


def vp8_starts_key_frame(payload: bytes) -> bool:
    """Whether an RTP payload starts a VP8 key frame (RFC 7741 sections 4.2 and 4.3).

    It must begin partition 0 (S=1, PID=0) and the frame's first byte, which stays in clear
    under Conclave's media profile, must have the inverse key-frame bit P at 0.
    """
    if len(payload) < 2:
        return False
    first = payload[0]
    if not first & 0x10 or first & 0x0F:  # S bit, partition index
        return False
    pos = 1
    if first & 0x80:  # X: extension byte follows
        ext = payload[1]
        pos = 2
        if ext & 0x80:  # I: picture id, one or two bytes
            if len(payload) <= pos:
                return False
            pos += 2 if payload[pos] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            pos += 1
        if ext & 0x30:  # T or K: TID/Y/KEYIDX byte
            pos += 1
    return len(payload) > pos and not payload[pos] & 0x01


@dataclass
class Counters:
    received_packets: int = 0
    forwarded_packets: int = 0


class PublisherClock:
    """One publisher's NTP clock against the relay's, learnt from its first sender report.

    Shared by the publisher's audio and video so the lip-sync mapping (RTP time at an NTP time)
    the relay reports to subscribers is translated with a single offset.
    """

    def __init__(self) -> None:
        self.offset: int | None = None  # relay NTP minus publisher NTP, 32.32 fixed point


class PublishedTrack:
    """One publisher's audio or video, as received by the relay."""

    def __init__(
        self,
        owner: str,
        kind: str,
        transceiver: RTCRtpTransceiver,
        clock: PublisherClock,
        counters: Counters,
    ) -> None:
        self.owner = owner
        self.kind = kind
        self.clock_rate = hooks.VIDEO_CLOCK_RATE if kind == "video" else hooks.AUDIO_CLOCK_RATE
        self.forwards: list[ForwardedTrack] = []
        self._clock = clock
        self._counters = counters
        self._last_report: tuple[int, int] | None = None  # (publisher NTP, RTP) of its last SR
        self._last_keyframe_request = -KEYFRAME_REQUEST_INTERVAL
        self.tap = hooks.ReceiverTap(
            transceiver.receiver, kind, self._on_packet, self._on_sender_report
        )

    def request_keyframe(self) -> None:
        """Ask the publisher for a key frame, at most once per interval (PLI storms hurt)."""
        now = time.monotonic()
        if self.kind != "video" or now - self._last_keyframe_request < KEYFRAME_REQUEST_INTERVAL:
            return
        if self.tap.media_ssrc is None:
            return  # nothing received yet: the first frame is a key frame anyway
        self._last_keyframe_request = now
        self.tap.send_pli()

    def rtp_time_at(self, relay_ntp: int, fallback: int) -> int:
        """The publisher's RTP timestamp that corresponds to ``relay_ntp``, for sender reports."""
        if self._last_report is None or self._clock.offset is None:
            return fallback
        sr_ntp, sr_rtp = self._last_report
        publisher_ntp = relay_ntp - self._clock.offset
        return (sr_rtp + ((publisher_ntp - sr_ntp) * self.clock_rate >> 32)) & 0xFFFFFFFF

    def _on_sender_report(self, ssrc: int, ntp: int, rtp: int) -> None:
        if ssrc != self.tap.media_ssrc:
            return
        if self._clock.offset is None:
            self._clock.offset = _relay_ntp() - ntp
        self._last_report = (ntp, rtp)

    async def _on_packet(self, packet: RtpPacket) -> None:
        self._counters.received_packets += 1
        if not self.forwards:
            return
        # One clock read per packet, shared by every subscriber (it costs more than a send's
        # own arithmetic), so each sender report's NTP and RTP times come from one instant.
        now = _relay_ntp()
        report_time = self.rtp_time_at(now, packet.timestamp)
        for forward in self.forwards:
            await forward.forward(packet, now, report_time)


class ForwardedTrack:
    """One published track on its way to one subscriber."""

    def __init__(
        self, track: PublishedTrack, subscriber: Participant, transceiver: RTCRtpTransceiver
    ) -> None:
        self.track = track
        self.subscriber = subscriber
        self.transceiver = transceiver
        self._tap = hooks.SenderTap(transceiver)
        self._counters = track._counters
        self._sequence_offset: int | None = None
        self._awaiting_keyframe = track.kind == "video"
        # A subscriber's PLI/FIR goes upstream, throttled per publisher track.
        hooks.on_keyframe_request(transceiver.sender, track.request_keyframe)

    async def forward(self, packet: RtpPacket, now: int, report_time: int) -> None:
        if not (self._tap.is_ready or self._tap.ready()):
            return  # not negotiated yet
        if self._awaiting_keyframe:
            if not vp8_starts_key_frame(packet.payload):
                self.track.request_keyframe()
                return
            self._awaiting_keyframe = False
        if self._sequence_offset is None:
            # Start in the lower half, like aiortc, so SRTP's rollover guess stays right. Not a
            # security value: SRTP does not rely on unpredictable sequence numbers.
            start = random.randrange(32768)  # noqa: S311
            self._sequence_offset = (start - packet.sequence_number) & 0xFFFF
        sequence_number = (packet.sequence_number + self._sequence_offset) & 0xFFFF
        if await self._tap.send(packet, sequence_number, report_time, now):
            self._counters.forwarded_packets += 1

    async def stop(self) -> None:
        """End the track at the subscriber: RTCP BYE now, an inactive m-line at the next offer."""
        await self.transceiver.sender.stop()
        self.transceiver.direction = "inactive"


@dataclass
class _Pending:
    number: int
    answer: asyncio.Future[str]
    applied: asyncio.Future[None]


@dataclass(eq=False)
class Participant:
    room: str
    id: str
    pc: RTCPeerConnection
    published: dict[str, PublishedTrack] = field(default_factory=dict)
    negotiation: int = 0
    pending: _Pending | None = None
    dirty: bool = False
    negotiator: asyncio.Task[None] | None = None
    closed: bool = False


class Relay:
    """All rooms of one worker. The worker feeds it control requests; it calls ``send_offer``."""

    def __init__(self, send_offer: SendOffer, make_pc: PeerConnectionFactory) -> None:
        self._send_offer = send_offer
        self._make_pc = make_pc
        self._rooms: dict[str, dict[str, Participant]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.counters = Counters()

    # --- load ------------------------------------------------------------------------------

    @property
    def rooms(self) -> int:
        return len(self._rooms)

    @property
    def participants(self) -> int:
        return sum(len(r) for r in self._rooms.values())

    def participant(self, room: str, participant: str) -> Participant:
        found = self._rooms.get(room, {}).get(participant)
        if found is None:
            raise NotJoined(room, participant)
        return found

    # --- membership --------------------------------------------------------------------------

    async def join(self, room: str, participant: str, offer_sdp: str) -> str:
        """Answer a participant's initial offer; call ``connect`` once the answer is on its way.

        Only VP8 video and Opus audio are accepted: subscribers are offered only those, and the
        end-to-end encryption profile defines the clear prefix for no other codec.
        """
        async with self._lock(room):
            members = self._rooms.setdefault(room, {})
            if participant in members:
                raise AlreadyJoined(room, participant)
            pc = self._make_pc()
            try:
                joined = await self._answer_offer(room, participant, pc, offer_sdp)
            except BaseException:
                await _close(pc)
                if not members:
                    del self._rooms[room]
                raise
            members[participant] = joined
            log.info("participant %s joined room %s on the relay", participant, room)
            return str(pc.localDescription.sdp)

    async def _answer_offer(
        self, room: str, participant: str, pc: RTCPeerConnection, offer_sdp: str
    ) -> Participant:
        tracks: list[MediaStreamTrack] = []
        pc.on("track", tracks.append)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except Exception as exc:
            raise BadSessionDescription(f"The offer could not be used: {exc}") from exc
        p = Participant(room, participant, pc)
        clock = PublisherClock()
        for transceiver in pc.getTransceivers():
            kind = transceiver.kind
            if transceiver.receiver.track not in tracks or kind in p.published:
                continue  # not sent by the client, or a second track of a kind: not relayed
            mime = hooks.negotiated_mime_type(transceiver)
            if mime != hooks.PREFERRED_CODEC[kind]:
                raise BadSessionDescription(
                    f"The {kind} track must offer {hooks.PREFERRED_CODEC[kind]} (got {mime})."
                )
            p.published[kind] = PublishedTrack(participant, kind, transceiver, clock, self.counters)
        await pc.setLocalDescription(await pc.createAnswer())
        return p

    async def connect(self, room: str, participant: str) -> None:
        """Subscribe a newcomer to everyone and everyone to the newcomer, then re-offer."""
        async with self._lock(room):
            members = self._rooms.get(room, {})
            newcomer = members.get(participant)
            if newcomer is None:
                return  # left meanwhile
            for other in members.values():
                if other is newcomer:
                    continue
                for track in other.published.values():
                    self._subscribe(newcomer, track)
                for track in newcomer.published.values():
                    self._subscribe(other, track)
                if newcomer.published:
                    self._renegotiate(other)
            self._renegotiate(newcomer)

    def _subscribe(self, subscriber: Participant, track: PublishedTrack) -> None:
        transceiver = subscriber.pc.addTransceiver(
            hooks.SilentTrack(track.kind, f"{track.owner}-{track.kind}"), direction="sendonly"
        )
        hooks.set_stream_id(transceiver.sender, track.owner)  # a=msid:<owner> <owner>-<kind>
        hooks.prefer_codec(transceiver)
        track.forwards.append(ForwardedTrack(track, subscriber, transceiver))
        track.request_keyframe()

    async def leave(self, room: str, participant: str) -> None:
        """Remove a participant; the others' tracks from it end, and they are re-offered."""
        async with self._lock(room):
            members = self._rooms.get(room, {})
            leaver = members.pop(participant, None)
            if leaver is None:
                raise NotJoined(room, participant)
            if not members:
                del self._rooms[room]
            for other in members.values():
                for track in other.published.values():
                    track.forwards = [f for f in track.forwards if f.subscriber is not leaver]
            affected: dict[str, Participant] = {}
            for track in leaver.published.values():
                for forward in track.forwards:
                    await forward.stop()
                    affected[forward.subscriber.id] = forward.subscriber
                track.forwards = []
            await self._close_participant(leaver)
            for other in affected.values():
                self._renegotiate(other)
            log.info("participant %s left room %s on the relay", participant, room)

    async def close_room(self, room: str) -> None:
        async with self._lock(room):
            members = self._rooms.pop(room, {})
            for p in members.values():
                await self._close_participant(p)
        self._locks.pop(room, None)

    async def close(self) -> None:
        for room in list(self._rooms):
            await self.close_room(room)

    async def _close_participant(self, p: Participant) -> None:
        p.closed = True
        if p.negotiator is not None:
            p.negotiator.cancel()
        pending, p.pending = p.pending, None
        if pending is not None and pending.answer.done() and not pending.applied.done():
            pending.applied.set_exception(NotJoined(p.room, p.id))
        await _close(p.pc)
        if p.negotiator is not None:
            await asyncio.gather(p.negotiator, return_exceptions=True)

    def _lock(self, room: str) -> asyncio.Lock:
        return self._locks.setdefault(room, asyncio.Lock())

    # --- renegotiation -----------------------------------------------------------------------

    def _renegotiate(self, p: Participant) -> None:
        """Re-offer soon; changes made meanwhile ride along in the same offer."""
        p.dirty = True
        if p.negotiator is None or p.negotiator.done():
            p.negotiator = asyncio.create_task(self._negotiate(p))

    async def _negotiate(self, p: Participant) -> None:
        while p.dirty and not p.closed:
            p.dirty = False
            try:
                await self._negotiate_once(p)
            except RelayError as exc:
                # The next membership change re-offers everything still unnegotiated.
                log.warning("renegotiation with %s in room %s failed: %s", p.id, p.room, exc)
                return
            except ConnectionError:
                return

    async def _negotiate_once(self, p: Participant) -> None:
        await p.pc.setLocalDescription(await p.pc.createOffer())
        p.negotiation += 1
        loop = asyncio.get_running_loop()
        pending = _Pending(p.negotiation, loop.create_future(), loop.create_future())
        p.pending = pending
        try:
            await self._send_offer(p.room, p.id, pending.number, str(p.pc.localDescription.sdp))
            try:
                answer_sdp = await asyncio.wait_for(
                    asyncio.shield(pending.answer), NEGOTIATION_TIMEOUT_SECONDS
                )
            except TimeoutError:
                raise RelayError(
                    f"no answer to negotiation {pending.number} within "
                    f"{NEGOTIATION_TIMEOUT_SECONDS:.0f} s"
                ) from None
        finally:
            if p.pending is pending:
                p.pending = None
        try:
            await p.pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))
        except Exception as exc:
            error = BadSessionDescription(f"The answer could not be used: {exc}")
            pending.applied.set_exception(error)
            raise error from exc
        pending.applied.set_result(None)

    async def answer(self, room: str, participant: str, negotiation: int, answer_sdp: str) -> None:
        """Apply a client's answer to the relay's offer number ``negotiation``."""
        p = self.participant(room, participant)
        pending = p.pending
        if pending is None or pending.number != negotiation or pending.answer.done():
            raise StaleNegotiation(negotiation)
        pending.answer.set_result(answer_sdp)
        await asyncio.shield(pending.applied)


def _relay_ntp() -> int:
    return aiortc_clock.current_ntp_time()


async def _close(pc: RTCPeerConnection) -> None:
    # aiortc may already be closing this connection in a task of its own (the peer's DTLS went
    # away); a cancelled await here would cancel the future that task later resolves.
    await asyncio.shield(pc.close())
