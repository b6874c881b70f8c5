"""Media sources that encode their own frames and encrypt them before aiortc sees them.

aiortc packetizes whatever a track yields that is not a decoded ``Frame`` (here ``av.Packet``)
without re-encoding it, so these tracks hand over ``clear_prefix || SFrame`` and the plaintext
never leaves this process. Each track paces itself: aiortc sends as soon as ``recv`` returns.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from bot.e2ee.errors import MediaFrameError
from bot.rtc.profile import AUDIO, VIDEO

VIDEO_CLOCK = VIDEO.time_base
AUDIO_CLOCK = AUDIO.time_base
AUDIO_RATE = AUDIO.clock_rate  # Opus's RTP clock; the audio is sampled at the same rate
AUDIO_FRAME = 960  # 20 ms
WIDTH, HEIGHT, FPS = 320, 240, 15
MAX_LAG = 0.1  # seconds a source may run late before it skips ahead

# (encoded frame) -> protected frame; raises MediaFrameError for a frame it cannot send.
Protect = Callable[[bytes], bytes]


class _PacedTrack(MediaStreamTrack):
    def __init__(self, protect: Protect) -> None:
        super().__init__()
        self._protect = protect
        self._start: float | None = None
        self.sent_plaintext: list[bytes] = []  # kept only when ``keep_plaintext`` (tests)
        self.sent_protected: list[bytes] = []
        self.keep_frames = False

    async def _pace(self, seconds: float) -> None:
        """Wait until ``seconds`` into the stream. A source that fell behind (a busy machine)
        starts again from now instead of racing to catch up: a burst of frames would only
        take more CPU from everything else, and late media is worthless."""
        now = time.monotonic()
        if self._start is None or now - (self._start + seconds) > MAX_LAG:
            self._start = now - seconds
        wait = self._start + seconds - now
        if wait > 0:
            await asyncio.sleep(wait)

    def _packet(
        self, data: bytes, pts: int, time_base: fractions.Fraction
    ) -> av.Packet[Any] | None:
        try:
            protected = self._protect(data)
        except MediaFrameError:
            return None  # never sent in clear; the next frame goes instead
        if self.keep_frames:
            self.sent_plaintext.append(data)
            self.sent_protected.append(protected)
        packet = av.Packet(protected)
        packet.pts = pts
        packet.time_base = time_base
        return packet


def _test_pattern(n: int) -> av.VideoFrame:
    """Moving bars: cheap to make, and changes every frame so the encoder has work."""
    y = np.full((HEIGHT, WIDTH), 40, np.uint8)
    x = (n * 6) % WIDTH
    y[:, x : x + 24] = 220
    y[(n * 3) % HEIGHT, :] = 128
    img = np.empty((HEIGHT * 3 // 2, WIDTH), np.uint8)
    img[:HEIGHT] = y
    img[HEIGHT:] = 128
    return av.VideoFrame.from_ndarray(img, format="yuv420p")


def _file_frames(path: Path) -> Iterator[av.VideoFrame]:
    while True:  # loop the file for as long as the meeting lasts
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaStreamError(f"{path} has no video stream")
            for frame in container.decode(video=0):
                yield frame.reformat(width=WIDTH, height=HEIGHT, format="yuv420p")


class VideoSource(_PacedTrack):
    kind = "video"

    def __init__(self, protect: Protect, source: str) -> None:
        super().__init__(protect)
        self._frames = None if source == "testsrc" else _file_frames(Path(source))
        codec: Any = av.CodecContext.create("libvpx", "w")
        codec.width, codec.height = WIDTH, HEIGHT
        codec.pix_fmt = "yuv420p"
        codec.time_base = VIDEO_CLOCK
        codec.framerate = fractions.Fraction(FPS, 1)
        codec.bit_rate = 300_000
        codec.gop_size = 10 * FPS  # a key frame now and then, and on every request
        codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
        # One thread: libvpx's worker threads spin on each other when the machine is busy,
        # and a small picture gains nothing from them.
        codec.thread_count = 1
        self._codec = codec
        self._n = 0
        self._key_frame_wanted = True

    def request_key_frame(self) -> None:
        """Called when a receiver asks for a key frame (RTCP PLI/FIR reaches our sender)."""
        self._key_frame_wanted = True

    async def recv(self) -> av.Packet[Any]:
        while True:
            await self._pace(self._n / FPS)
            frame = next(self._frames) if self._frames is not None else _test_pattern(self._n)
            frame.pts = self._n * (VIDEO.clock_rate // FPS)
            frame.time_base = VIDEO_CLOCK
            if self._key_frame_wanted:
                self._key_frame_wanted = False
                frame.pict_type = av.video.frame.PictureType.I
            self._n += 1
            data = b"".join(bytes(p) for p in self._codec.encode(frame))
            if data and (packet := self._packet(data, frame.pts, VIDEO_CLOCK)) is not None:
                return packet


def _tone() -> Iterator[np.ndarray[Any, Any]]:
    n = 0
    while True:
        t = (np.arange(AUDIO_FRAME) + n) / AUDIO_RATE
        mono = (np.sin(2 * math.pi * 440.0 * t) * 6000).astype(np.int16)
        yield np.repeat(mono, 2).reshape(1, -1)
        n += AUDIO_FRAME


def _file_audio(path: Path) -> Iterator[np.ndarray[Any, Any]]:
    resampler = av.AudioResampler(format="s16", layout="stereo", rate=AUDIO_RATE)
    fifo = av.AudioFifo()
    while True:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise MediaStreamError(f"{path} has no audio stream")
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    out.pts = None  # each loop of the file restarts its clock; ours runs on
                    fifo.write(out)
                while (chunk := fifo.read(AUDIO_FRAME)) is not None:
                    yield chunk.to_ndarray()


class AudioSource(_PacedTrack):
    kind = "audio"

    def __init__(self, protect: Protect, source: str) -> None:
        super().__init__(protect)
        self._samples = _tone() if source == "tone" else _file_audio(Path(source))
        codec: Any = av.CodecContext.create("libopus", "w")
        codec.bit_rate = 48_000
        codec.sample_rate = AUDIO_RATE
        codec.format = "s16"
        codec.layout = "stereo"
        codec.time_base = AUDIO_CLOCK
        self._codec = codec
        self._in = 0
        self._out = 0

    async def recv(self) -> av.Packet[Any]:
        while True:
            await self._pace(self._out / AUDIO_RATE)
            frame = av.AudioFrame.from_ndarray(next(self._samples), format="s16", layout="stereo")
            frame.sample_rate = AUDIO_RATE
            frame.pts = self._in
            frame.time_base = AUDIO_CLOCK
            self._in += AUDIO_FRAME
            for encoded in self._codec.encode(frame):
                pts = self._out
                self._out += AUDIO_FRAME
                if (packet := self._packet(bytes(encoded), pts, AUDIO_CLOCK)) is not None:
                    return packet
