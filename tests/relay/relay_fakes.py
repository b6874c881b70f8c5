"""A fake core and fake clients for driving a relay worker over loopback with real aiortc.

The fake core is an aiohttp websocket server that speaks the control protocol and nothing
else: it only ever sends SDP. The fake clients publish synthetic "encrypted" VP8-shaped and
Opus frames through the av.Packet path, and decrypt what they receive in the receive transform
into tiny real VP8/Opus frames, so aiortc's decoders run without errors. The relay never holds
the clients' key.
"""

from __future__ import annotations

import asyncio
import fractions
import hashlib
import hmac
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import av
from aiohttp import web
from aiortc import RTCRtpReceiver, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, unpack_remb_fci

from bot.client.received import forwarded_track_ids
from bot.relay import control
from bot.relay.tickets import (
    HEADER,
    BadTicket,
    NonceCache,
    answer_worker_ticket,
)
from bot.rtc.internals import (
    forget_partial_frames,
    install_receive_transform,
    on_keyframe_request,
)
from bot.rtc.peer import make_peer_connection, prefer_codec
from bot.secret import Secret
from tests.support.fakes import listen_on_any_port
from tests.support.rtc import EncodedTrack, tap_receiver_rtp

LOOPBACK = ("127.0.0.1",)
SECRET = Secret("relay-test-secret")
MEDIA_KEY = os.urandom(32)  # the clients' shared "SFrame" key; never given to core or relay
TAG = 16
VIDEO_FPS = 20
AUDIO_FRAME_MS = 20


async def eventually(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Wait (generously) until ``check()`` holds; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.05)


def ended(track: MediaStreamTrack) -> bool:
    return bool(track.readyState == "ended")


def stopped(client: FakeClient, got: Received) -> bool:
    """Whether the relay made the line ``got`` came on inactive (its track ended there; the
    line waits to carry another, ``bot.relay.lines``)."""
    line = next(t for t in client.pc.getTransceivers() if t.receiver is got.receiver)
    return bool(line.currentDirection == "inactive")


# --- tiny real frames the fake decryption yields ----------------------------------------------


@dataclass(frozen=True)
class RealFrames:
    vp8_key: bytes
    vp8_delta: bytes
    opus: bytes


def _encode_real_frames() -> RealFrames:
    vp8 = av.CodecContext.create("libvpx", "w")
    vp8.width = vp8.height = 32
    vp8.pix_fmt = "yuv420p"
    vp8.time_base = fractions.Fraction(1, 90000)
    vp8.framerate = fractions.Fraction(VIDEO_FPS, 1)
    vp8.options = {"deadline": "realtime", "lag-in-frames": "0"}
    encoded: list[bytes] = []
    for i in range(2):
        frame = av.VideoFrame(32, 32, "yuv420p")
        for plane in frame.planes:
            plane.update(bytes([16 + 40 * i]) * plane.buffer_size)
        frame.pts = i * 4500
        encoded += [bytes(p) for p in vp8.encode(frame)]
    encoded += [bytes(p) for p in vp8.encode(None)]
    opus = av.CodecContext.create("libopus", "w")
    opus.sample_rate = 48000
    opus.format = "s16"
    opus.layout = "stereo"
    opus.time_base = fractions.Fraction(1, 48000)
    sound = av.AudioFrame(format="s16", layout="stereo", samples=960)
    sound.planes[0].update(bytes(sound.planes[0].buffer_size))
    sound.sample_rate = 48000
    sound.pts = 0
    packets = [bytes(p) for p in opus.encode(sound)] + [bytes(p) for p in opus.encode(None)]
    assert encoded[0][0] & 1 == 0 and encoded[1][0] & 1 == 1, "libvpx did not give key+delta"
    return RealFrames(encoded[0], encoded[1], packets[0])


REAL = _encode_real_frames()


# --- the clients' fake SFrame: clear prefix, random "ciphertext", HMAC tag ----------------------


def seal(kind: str, key_frame: bool, size: int) -> bytes:
    if kind == "video":
        prefix = (
            bytes([0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A, 0x20, 0x00, 0x20, 0x00])
            if key_frame
            else bytes([0x11, 0x02, 0x00])
        )
    else:
        prefix = b""
    body = os.urandom(size)
    return prefix + body + hmac.new(MEDIA_KEY, prefix + body, hashlib.sha256).digest()[:TAG]


def unseal(kind: str, data: bytes) -> bytes | None:
    """The plaintext frame, or None when the tag does not verify."""
    body, tag = data[:-TAG], data[-TAG:]
    good = hmac.new(MEDIA_KEY, body, hashlib.sha256).digest()[:TAG]
    if not hmac.compare_digest(tag, good):
        return None
    if kind == "audio":
        return REAL.opus
    return REAL.vp8_key if data[0] & 1 == 0 else REAL.vp8_delta


# --- fake client --------------------------------------------------------------------------------


def record_remb(sender: RTCRtpSender, into: list[tuple[int, list[int]]]) -> None:
    """Note each REMB (bit/s, SSRCs) that reaches ``sender``, before its stock handling.

    Test-only, like tests/support/rtc.py: ``RTCRtpSender._handle_rtcp_packet`` is looked up on
    the instance, and the stock one only passes REMB to an encoder, which a sender of
    already-encoded frames does not have.
    """
    s: Any = sender
    stock = s._handle_rtcp_packet

    async def handle(packet: Any) -> None:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            into.append(unpack_remb_fci(packet.fci))
        await stock(packet)

    s._handle_rtcp_packet = handle


@dataclass
class Received:
    frames: list[bytes] = field(default_factory=list)  # as the receive transform saw them
    rtp_payloads: list[bytes] = field(default_factory=list)
    dropped: int = 0
    decoded: int = 0
    track: MediaStreamTrack | None = None
    receiver: RTCRtpReceiver | None = None


class FakeClient:
    """A participant: publishes sealed frames, answers relay offers, records what arrives."""

    def __init__(self, name: str, publish: bool = True) -> None:
        self.name = name
        self.pc = make_peer_connection()
        self.sent: dict[str, list[bytes]] = {"video": [], "audio": []}
        self.received: dict[tuple[str, str], Received] = {}
        self.keyframe_requests = 0
        self.remb: list[tuple[int, list[int]]] = []  # (bit/s, SSRCs) of each REMB the relay sent
        self._want_keyframe = True
        self.sends_key_frames_asked_for = True  # a test may make it ignore requests
        self._tasks: list[asyncio.Task[None]] = []
        self._tracks: dict[str, EncodedTrack] = {}
        self.joined = asyncio.Event()
        self.negotiating = asyncio.Lock()
        # By mid: [what it carries now (Received), its track id, whether it sends].
        self._lines: dict[str, list[Any]] = {}
        self.reused = 0  # lines the relay gave to another participant's track
        if publish:
            for kind in ("video", "audio"):
                track = EncodedTrack(kind)
                transceiver = self.pc.addTransceiver(track, direction="sendonly")
                prefer_codec(transceiver)
                self._tracks[kind] = track
                if kind == "video":
                    on_keyframe_request(transceiver.sender, self._on_keyframe_request)
                    record_remb(transceiver.sender, self.remb)
        self.pc.on("track", self._on_track)

    def _on_keyframe_request(self) -> None:
        self.keyframe_requests += 1
        self._want_keyframe = self.sends_key_frames_asked_for

    def _on_track(self, track: MediaStreamTrack) -> None:
        owner = track.id.rsplit("-", 1)[0]  # the relay names tracks <owner>-<kind>
        transceiver = next(t for t in self.pc.getTransceivers() if t.receiver.track is track)
        receiver = transceiver.receiver
        got = self.received[(owner, track.kind)] = Received(track=track, receiver=receiver)
        line = self._lines[transceiver.mid or ""] = [got, track.id, True]

        def transform(data: bytes, kind: str = track.kind) -> bytes | None:
            line[0].frames.append(data)
            return unseal(kind, data)

        def dropped() -> None:
            line[0].dropped += 1

        install_receive_transform(receiver, track.kind, transform, dropped)
        tap_receiver_rtp(receiver, lambda p: line[0].rtp_payloads.append(p.payload))
        self._tasks.append(asyncio.create_task(self._consume(track, line)))

    def _follow_reused_lines(self, sdp: str) -> None:
        """A line the relay gave to another track (aiortc fires no new ``track``): what
        arrives on it once it sends again is recorded afresh, under the owner its msid names
        (the same one, for someone who came back)."""
        sending = forwarded_track_ids(sdp)
        for mid, line in self._lines.items():
            track_id = sending.get(mid)
            if track_id is None:
                line[2] = False  # inactive: its track ended
                continue
            if line[2]:
                continue
            old: Received = line[0]
            kind = track_id.rsplit("-", 1)[1]
            owner = track_id.rsplit("-", 1)[0]
            fresh = Received(track=old.track, receiver=old.receiver)
            if old.receiver is not None:
                forget_partial_frames(old.receiver)  # as the client does
            line[0] = self.received[(owner, kind)] = fresh
            line[1], line[2] = track_id, True
            self.reused += 1

    async def _consume(self, track: MediaStreamTrack, line: list[Any]) -> None:
        while True:
            try:
                await track.recv()
            except MediaStreamError:
                return
            line[0].decoded += 1

    def start_media(self) -> None:
        if "video" in self._tracks:
            self._tasks.append(asyncio.create_task(self._video()))
            self._tasks.append(asyncio.create_task(self._audio()))

    async def _video(self) -> None:
        track = self._tracks["video"]
        for n in range(10**9):
            key = self._want_keyframe
            self._want_keyframe = False
            frame = seal("video", key, 2400 if key else 700)
            self.sent["video"].append(frame)
            track.push(frame, n * 90000 // VIDEO_FPS)
            await asyncio.sleep(1 / VIDEO_FPS)

    async def _audio(self) -> None:
        track = self._tracks["audio"]
        for n in range(10**9):
            frame = seal("audio", False, 80)
            self.sent["audio"].append(frame)
            track.push(frame, n * 960)
            await asyncio.sleep(AUDIO_FRAME_MS / 1000)

    async def offer(self) -> dict[str, str]:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return control.sdp("offer", self.pc.localDescription.sdp)

    async def accept_answer(self, answer: dict[str, str]) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))

    async def answer_offer(self, offer: dict[str, str]) -> dict[str, str]:
        await self.pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
        self._follow_reused_lines(offer["sdp"])
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return control.sdp("answer", self.pc.localDescription.sdp)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.pc.close()


# --- fake core ----------------------------------------------------------------------------------


class Participant(Protocol):
    """What the fake core drives: a FakeClient, or a browser page (tests/browser)."""

    name: str
    joined: asyncio.Event
    negotiating: asyncio.Lock

    async def offer(self) -> dict[str, str]: ...

    async def accept_answer(self, answer: dict[str, str]) -> None: ...

    async def answer_offer(self, offer: dict[str, str]) -> dict[str, str]: ...

    def start_media(self) -> None: ...

    async def close(self) -> None: ...


class FakeCore:
    """The core's side of the control channel, as a test double over a real websocket."""

    def __init__(self, secret: Secret) -> None:
        self.secret = secret
        self.port = 0  # until ``start`` has it from the system
        self.rejected = 0
        self.ready = asyncio.Event()
        self.sent_to_worker: list[dict[str, Any]] = []
        self.from_worker: list[dict[str, Any]] = []
        self.clients: dict[str, Participant] = {}
        self._nonces = NonceCache()
        self._ws: web.WebSocketResponse | None = None
        self._next_id = 0
        self._results: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        assert self.port, "the fake core is not started"
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/relay", self._relay)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        self.port = await listen_on_any_port(self._runner)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()

    async def _relay(self, request: web.Request) -> web.StreamResponse:
        try:
            ticket = request.headers.get(HEADER, "")
            _, core_ticket = answer_worker_ticket(self.secret, ticket, time.time(), self._nonces)
        except BadTicket:
            self.rejected += 1
            raise web.HTTPUnauthorized() from None
        ws = web.WebSocketResponse(max_msg_size=control.MAX_MESSAGE_BYTES * 4)
        await ws.prepare(request)
        self._ws = ws
        await self._send(
            {
                "type": "welcome",
                "ticket": core_ticket,
            }
        )
        async for message in ws:
            data = control.decode(message.data, control.TO_CORE)
            self.from_worker.append(data)
            if data["type"] == control.READY:
                self.ready.set()
            elif data["type"] == control.RESULT:
                self._results.pop(data["id"]).set_result(data)
            elif data["type"] == control.OFFER:
                task = asyncio.create_task(self._forward_offer(data))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        return ws

    async def _forward_offer(self, event: dict[str, Any]) -> None:
        client = self.clients[event["participant"]]
        # Like the real core, deliver in order: the join's answer before any relay offer.
        await client.joined.wait()
        async with client.negotiating:
            answer = await client.answer_offer(event["offer"])
        result = await self.request(
            "answer",
            room=event["room"],
            participant=event["participant"],
            negotiation=event["negotiation"],
            answer=answer,
        )
        assert result["ok"], result

    async def _send(self, message: dict[str, Any]) -> None:
        assert self._ws is not None
        self.sent_to_worker.append(message)
        await self._ws.send_str(json.dumps(message))

    async def request(self, kind: str, **fields: Any) -> dict[str, Any]:
        self._next_id += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._results[self._next_id] = future
        await self._send({"type": kind, "id": self._next_id, **fields})
        return await asyncio.wait_for(future, 20)

    async def join(self, room: str, client: Participant, media: bool = True) -> None:
        """Join ``client``; with ``media`` it starts sending frames once it has the answer."""
        self.clients[client.name] = client
        result = await self.request(
            "join", room=room, participant=client.name, offer=await client.offer()
        )
        assert result["ok"], result
        await client.accept_answer(result["answer"])
        client.joined.set()
        if media:
            client.start_media()
