"""The participant's media: one peer connection to the room's relay worker.

The client publishes its own audio and video (encrypted before packetization, see
``bot.client.tracks``) with one offer; after that only the relay offers, to add or remove the
other participants' tracks. Every received frame is decrypted between aiortc's jitter buffer
and its decoder; frames that fail, or that are not from the participant the track is shown
under (``bot.client.received``), are counted and dropped, never decoded.

``--record DIR`` writes one file per received track: ``DIR/<name>-<participant>.video.webm``
(VP8) and ``DIR/<name>-<participant>.audio.wav`` (16-bit PCM).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiortc import RTCRtpReceiver, RTCSessionDescription
from aiortc.contrib.media import MediaBlackhole
from aiortc.mediastreams import MediaStreamTrack

from bot.client.keyring import Keyring
from bot.client.received import ReceivedTrack, Roster, forwarded_track_ids
from bot.client.recorder import TrackRecorder
from bot.client.tracks import AudioSource, VideoSource
from bot.ice_servers import IceServer
from bot.rtc.internals import (
    drop_empty_datagrams,
    forget_partial_frames,
    install_receive_transform,
    on_keyframe_request,
)
from bot.rtc.peer import IceSettings, make_peer_connection, prefer_codec
from bot.rtc.profile import PROFILE

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _sink_name(name: str, participant_id: str, kind: str) -> str:
    safe = _UNSAFE.sub("_", name).strip("_") or "participant"
    return f"{safe}-{participant_id}.{'video.webm' if kind == 'video' else 'audio.wav'}"


@dataclass(frozen=True)
class _Line:
    """A received line: what it carries, its receiver and kind, and its recording if any."""

    received: ReceivedTrack
    receiver: RTCRtpReceiver
    kind: str
    recorder: TrackRecorder | None


class MediaSession:
    def __init__(
        self,
        keyring: Keyring,
        *,
        roster: Roster,
        video: str = "testsrc",
        audio: str = "tone",
        record_dir: Path | None = None,
        ice: IceSettings | None = None,
        servers: Sequence[IceServer] = (),
        relay_only: bool = False,
    ) -> None:
        """``servers``: the ICE servers the welcome gave, then ``ice``'s; ``relay_only``: ICE
        through TURN only."""
        self._keyring = keyring
        self._pc = make_peer_connection(ice, servers=servers, relay_only=relay_only)
        self._record_dir = record_dir
        self._roster = roster
        self.stray_datagrams = 0  # empty ones, dropped (bot/rtc/internals/guard.py)
        self._lines: dict[str, _Line] = {}  # by mid
        self._sinks: list[TrackRecorder | MediaBlackhole] = []
        self.sources: dict[str, VideoSource | AudioSource] = {}
        if video != "none":
            self.sources["video"] = VideoSource(self._protector("video"), video)
        if audio != "none":
            self.sources["audio"] = AudioSource(self._protector("audio"), audio)
        self._pc.on("track", self._on_track)

    def _protector(self, kind: str) -> Callable[[bytes], bytes]:
        codec = PROFILE[kind].codec
        return lambda frame: self._keyring.protect(codec, frame)

    async def offer(self) -> dict[str, Any]:
        """The one offer this client makes: what it publishes (or, publishing nothing, a
        receive-only audio line so the relay has a transport to send on)."""
        for kind, source in self.sources.items():
            transceiver = self._pc.addTransceiver(source, direction="sendonly")
            prefer_codec(transceiver)
            if kind == "video":
                assert isinstance(source, VideoSource)
                on_keyframe_request(transceiver.sender, source.request_key_frame)
        if not self.sources:
            prefer_codec(self._pc.addTransceiver("audio", direction="recvonly"))
        await self._pc.setLocalDescription(await self._pc.createOffer())
        # Anyone who can reach the port could end this connection with an empty datagram.
        drop_empty_datagrams(self._pc, self._count_stray)
        return {"type": "offer", "sdp": self._pc.localDescription.sdp}

    @property
    def received(self) -> list[ReceivedTrack]:
        """What each received line carries now."""
        return [line.received for line in self._lines.values()]

    def _count_stray(self) -> None:
        self.stray_datagrams += 1

    async def accept_answer(self, answer: dict[str, Any]) -> None:
        await self._pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))

    async def answer_offer(self, offer: dict[str, Any]) -> dict[str, Any]:
        """The relay renegotiates when people come and go."""
        await self._pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
        self._follow_reused_lines(offer["sdp"])
        await self._pc.setLocalDescription(await self._pc.createAnswer())
        return {"type": "answer", "sdp": self._pc.localDescription.sdp}

    def _follow_reused_lines(self, sdp: str) -> None:
        """The relay gives a line whose track ended to someone else's track
        (``bot.relay.lines``); aiortc fires no new ``track`` for it, so the line's msid in
        the offer says whose it is now. A recording goes on in the new owner's file."""
        named = forwarded_track_ids(sdp)
        for mid, line in self._lines.items():
            track_id, received = named.get(mid), line.received
            if track_id is None or track_id == received.track_id:
                continue
            received.rebind(track_id)
            forget_partial_frames(line.receiver)
            if line.recorder is not None and self._record_dir is not None:
                name = _sink_name(received.name, received.owner, line.kind)
                line.recorder.follow(self._record_dir / name)

    def _on_track(self, track: MediaStreamTrack) -> None:
        profile = PROFILE.get(track.kind)
        transceiver = next(
            (t for t in self._pc.getTransceivers() if t.receiver.track is track), None
        )
        if profile is None or transceiver is None or transceiver.mid is None:
            return
        received = ReceivedTrack(track.id, profile.codec, self._keyring, self._roster)
        install_receive_transform(transceiver.receiver, track.kind, received.unprotect)
        recorder: TrackRecorder | None = None
        if self._record_dir is not None:
            self._record_dir.mkdir(parents=True, exist_ok=True)
            name = _sink_name(received.name, received.owner, track.kind)
            recorder = TrackRecorder(track, self._record_dir / name)
            recorder.start()
            self._sinks.append(recorder)
        else:
            # Decoded frames must still be consumed, or they pile up in the track's queue.
            sink = MediaBlackhole()
            sink.addTrack(track)
            self._sinks.append(sink)
            asyncio.ensure_future(sink.start()).add_done_callback(_log_failure)
        self._lines[transceiver.mid] = _Line(received, transceiver.receiver, track.kind, recorder)

    async def close(self) -> None:
        for source in self.sources.values():
            source.stop()
        for sink in self._sinks:
            with contextlib.suppress(Exception):
                await sink.stop()
        await self._pc.close()


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("recording failed: %s", task.exception())
