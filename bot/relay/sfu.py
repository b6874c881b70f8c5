"""The forwarding engine: rooms of peer connections whose RTP is copied, never decoded.

Each participant has one RTCPeerConnection with the relay. Its initial offer carries what it
publishes (at most one audio and one video track); the relay answers and then adds one
sendonly transceiver per track of every other participant, and re-offers. After the initial
offer only the relay offers, one negotiation at a time per connection, so offers never cross.
How each track's packets are copied is in ``tracks``; what an offer may ask for, in ``offers``.
Each participant's inbound packets pass a ``bot.rtc.inbound.InboundGuard`` first: only the
SSRCs its offer announced, and at most ``max_packet_rate`` packets a second.
A connection that fails (ICE consent lost, DTLS failure) or that the peer closes is dropped as
if its participant had left, and ``report_lost`` tells the core, which has the client publish
again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.exceptions import InvalidStateError
from aiortc.mediastreams import MediaStreamTrack

from bot.relay.control import NEGOTIATION_TIMEOUT_SECONDS
from bot.relay.lines import SendLines
from bot.relay.offers import (
    MAX_CANDIDATES,
    MediaRefused,
    OfferedMedia,
    check_candidates,
    check_offer,
)
from bot.relay.refusals import (
    AlreadyJoined,
    BadSessionDescription,
    NotJoined,
    RelayError,
    StaleNegotiation,
)
from bot.relay.tracks import Counters, ForwardedTrack, PublishedTrack, PublisherClock
from bot.rtc import internals
from bot.rtc.bandwidth import UplinkFeedback
from bot.rtc.inbound import InboundGuard
from bot.rtc.profile import PROFILE

log = logging.getLogger(__name__)

# Per participant, SRTP and SRTCP together. VP8 at 2.5 Mbit/s in 1,200-byte packets is about
# 260 packets a second, Opus 50 and the RTCP of a full room some 100: far below this.
DEFAULT_MAX_PACKET_RATE: Final = 2000.0
# RTCP may come from SSRCs the offer did not announce (receiver reports of a browser's
# receive-only lines, an aiortc client's from SSRCs its answers announce): as many as the
# connection has lines, plus these.
EXTRA_RTCP_SOURCES: Final = 2
# ICE candidates the relay keeps for one connection: those its descriptions may name, and a
# few more learnt from checks arriving from new addresses (peer-reflexive).
MAX_REMOTE_CANDIDATES: Final = MAX_CANDIDATES + 8

# (room, participant, negotiation number, offer SDP): deliver a relay offer to the client.
SendOffer = Callable[[str, str, int, str], Awaitable[None]]
# (room, participant, join id): that participant's connection died without the core asking.
ReportLost = Callable[[str, str, int], Awaitable[None]]
PeerConnectionFactory = Callable[[], RTCPeerConnection]


@dataclass
class _Pending:
    number: int
    answer: asyncio.Future[str]
    applied: asyncio.Future[None]


@dataclass(eq=False)
class Peer:
    """One participant's peer connection with this relay, and what it publishes."""

    room: str
    id: str
    pc: RTCPeerConnection
    guard: InboundGuard
    published: dict[str, PublishedTrack] = field(default_factory=dict)
    negotiation: int = 0
    pending: _Pending | None = None
    dirty: bool = False
    negotiator: asyncio.Task[None] | None = None
    closed: bool = False  # by the relay, or found dead: no state change of it matters now
    join_id: int = 0  # the core's name for this connection (its join request's id)
    lines: SendLines = field(default_factory=SendLines)  # lines whose tracks ended, for reuse


class Relay:
    """All rooms of one worker. The worker feeds it control requests; it calls ``send_offer``."""

    def __init__(
        self,
        send_offer: SendOffer,
        make_pc: PeerConnectionFactory,
        max_packet_rate: float = DEFAULT_MAX_PACKET_RATE,
        report_lost: ReportLost | None = None,
    ) -> None:
        self._send_offer = send_offer
        self._make_pc = make_pc
        self._max_packet_rate = max_packet_rate
        self._report_lost = report_lost
        self._rooms: dict[str, dict[str, Peer]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._losing: set[asyncio.Task[None]] = set()
        self.counters = Counters()

    # --- load ------------------------------------------------------------------------------

    @property
    def rooms(self) -> int:
        return len(self._rooms)

    @property
    def participants(self) -> int:
        return sum(len(r) for r in self._rooms.values())

    def dropped(self) -> tuple[int, int]:
        """Packets dropped before decryption so far: (foreign SSRC, over the packet rate)."""
        live = [p.guard for members in self._rooms.values() for p in members.values()]
        return (
            self.counters.foreign_packets + sum(g.foreign for g in live),
            self.counters.rate_limited_packets + sum(g.over_rate for g in live),
        )

    def peer(self, room: str, participant: str) -> Peer:
        found = self._rooms.get(room, {}).get(participant)
        if found is None:
            raise NotJoined(room, participant)
        return found

    # --- membership --------------------------------------------------------------------------

    async def join(self, room: str, participant: str, offer_sdp: str, join_id: int = 0) -> str:
        """Answer a participant's initial offer; call ``connect`` once the answer is on its way.

        Only VP8 video and Opus audio are accepted: subscribers are offered only those, and the
        end-to-end encryption profile defines the clear prefix for no other codec. An offer with
        more than one line of a kind, or sending streams it does not announce, is refused
        (``offers.MediaRefused``) before any peer connection exists. ``join_id`` names the
        connection in ``report_lost`` if it dies.
        """
        offered = check_offer(offer_sdp)
        async with self._lock(room):
            members = self._rooms.setdefault(room, {})
            if participant in members:
                raise AlreadyJoined(room, participant)
            pc = self._make_pc()
            try:
                joined = await self._answer_offer(room, participant, pc, offer_sdp, offered)
            except BaseException:
                await _close(pc)
                if not members:
                    del self._rooms[room]
                raise
            joined.join_id = join_id
            members[participant] = joined
            self._watch(joined)
            log.info("participant %s joined room %s on the relay", participant, room)
            return str(pc.localDescription.sdp)

    async def _answer_offer(
        self,
        room: str,
        participant: str,
        pc: RTCPeerConnection,
        offer_sdp: str,
        offered: OfferedMedia,
    ) -> Peer:
        tracks: list[MediaStreamTrack] = []
        pc.on("track", tracks.append)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except Exception as exc:
            raise MediaRefused(f"The offer could not be used: {exc}") from exc
        guard = InboundGuard(
            (ssrc for ssrcs in offered.sources.values() for ssrc in ssrcs),
            offered.announced,
            lambda: len(pc.getTransceivers()) + EXTRA_RTCP_SOURCES,
            self._max_packet_rate,
            MAX_REMOTE_CANDIDATES,
        )
        internals.guard_inbound(pc, guard)
        p = Peer(room, participant, pc, guard)
        clock = PublisherClock()
        # One REMB for the publisher's whole connection, sent from its first packet of any kind.
        uplink = UplinkFeedback(ssrcs=[s for found in offered.sources.values() for s in found])
        for transceiver in pc.getTransceivers():
            kind = transceiver.kind
            if transceiver.receiver.track not in tracks or kind in p.published:
                continue  # not sent by the client, or a second track of a kind: not relayed
            mime = internals.negotiated_mime_type(transceiver)
            wanted = PROFILE[kind].mime_type
            if mime != wanted:
                raise MediaRefused(f"The {kind} track must offer {wanted} (got {mime}).")
            ssrcs = offered.sources.get(kind)
            if ssrcs is None:  # check_offer reads directions as aiortc does; never, then
                raise MediaRefused(f"The {kind} line sends but announces no SSRC.")
            p.published[kind] = PublishedTrack(
                participant, kind, transceiver, clock, self.counters, ssrcs, uplink
            )
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

    def _subscribe(self, subscriber: Peer, track: PublishedTrack) -> None:
        if any(f.subscriber is subscriber for f in track.forwards):
            return  # joins that crossed: the other's connect already made this pair
        line, new = subscriber.lines.take(subscriber.pc, track.kind, track.owner)
        if new:
            internals.guard_inbound(subscriber.pc, subscriber.guard)  # a first line: a transport
        # No key frame is asked for yet: the subscriber could not receive it before its answer
        # and DTLS are done (ForwardedTrack.answered asks then, or forward with the first packet
        # after), and one sent before would be lost.
        track.forwards.append(ForwardedTrack(track, subscriber, line))

    async def leave(self, room: str, participant: str) -> None:
        """Remove a participant; the others' tracks from it end, and they are re-offered."""
        async with self._lock(room):
            leaver = self._rooms.get(room, {}).get(participant)
            if leaver is None:
                raise NotJoined(room, participant)
            await self._remove(leaver)
            log.info("participant %s left room %s on the relay", participant, room)

    def _watch(self, p: Peer) -> None:
        """Drop ``p`` once its connection dies on its own (ICE consent lost, DTLS failed or
        closed by the peer); the relay's own closing sets ``closed`` first."""

        def changed() -> None:
            state = p.pc.connectionState
            if state in ("failed", "closed") and not p.closed:
                p.closed = True
                task = asyncio.create_task(self._lose(p, state))
                self._losing.add(task)
                task.add_done_callback(self._losing.discard)

        p.pc.on("connectionstatechange", changed)
        changed()

    async def _lose(self, p: Peer, state: str) -> None:
        if p.room not in self._rooms:
            return  # the room was closed meanwhile
        async with self._lock(p.room):
            if self._rooms.get(p.room, {}).get(p.id) is not p:
                return  # it left meanwhile, at the core's request
            log.warning("the media connection of %s in room %s %s", p.id, p.room, state)
            await self._remove(p)
            if self._report_lost is not None:
                # Under the room's lock: the report goes before the answer to a new join.
                await self._report_lost(p.room, p.id, p.join_id)

    async def _remove(self, leaver: Peer) -> None:
        """Under the room's lock: take ``leaver`` out, end its tracks, re-offer the others."""
        members = self._rooms[leaver.room]
        del members[leaver.id]
        if not members:
            del self._rooms[leaver.room]
        for other in members.values():
            for track in other.published.values():
                track.forwards = [f for f in track.forwards if f.subscriber is not leaver]
        affected: dict[str, Peer] = {}
        for track in leaver.published.values():
            for forward in track.forwards:
                forward.end()
                affected[forward.subscriber.id] = forward.subscriber
            track.forwards = []
        await self._close_peer(leaver)
        for other in affected.values():
            self._renegotiate(other)

    async def close_room(self, room: str) -> None:
        async with self._lock(room):
            members = self._rooms.pop(room, {})
            for p in members.values():
                await self._close_peer(p)
        self._locks.pop(room, None)

    async def close(self) -> None:
        for task in list(self._losing):
            task.cancel()
        await asyncio.gather(*self._losing, return_exceptions=True)
        for room in list(self._rooms):
            await self.close_room(room)

    async def _close_peer(self, p: Peer) -> None:
        p.closed = True
        self.counters.foreign_packets += p.guard.foreign
        self.counters.rate_limited_packets += p.guard.over_rate
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

    def _renegotiate(self, p: Peer) -> None:
        """Re-offer soon; changes made meanwhile ride along in the same offer."""
        p.dirty = True
        if p.negotiator is None or p.negotiator.done():
            p.negotiator = asyncio.create_task(self._negotiate(p))

    async def _negotiate(self, p: Peer) -> None:
        while p.dirty and not p.closed:
            p.dirty = False
            try:
                await self._negotiate_once(p)
            except RelayError as exc:
                # The next membership change re-offers everything still unnegotiated.
                log.warning("renegotiation with %s in room %s failed: %s", p.id, p.room, exc)
                return
            except (ConnectionError, InvalidStateError):
                # The control channel or the connection is closing (aiortc refuses an offer
                # from the moment close() begins, before the state change that drops the peer).
                return

    async def _negotiate_once(self, p: Peer) -> None:
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
        for other in self._rooms.get(p.room, {}).values():
            for track in other.published.values():
                for forward in track.forwards:
                    if forward.subscriber is p:
                        forward.answered()

    async def answer(self, room: str, participant: str, negotiation: int, answer_sdp: str) -> None:
        """Apply a client's answer to the relay's offer number ``negotiation``."""
        check_candidates(answer_sdp)
        p = self.peer(room, participant)
        pending = p.pending
        if pending is None or pending.number != negotiation or pending.answer.done():
            raise StaleNegotiation(negotiation)
        pending.answer.set_result(answer_sdp)
        await asyncio.shield(pending.applied)


async def _close(pc: RTCPeerConnection) -> None:
    # aiortc may already be closing this connection in a task of its own (the peer's DTLS went
    # away); a cancelled await here would cancel the future that task later resolves.
    await asyncio.shield(pc.close())
