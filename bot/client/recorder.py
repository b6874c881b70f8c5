"""Write what one received track decodes to a file: VP8 in WebM for video, PCM in WAV for audio.

aiortc's ``MediaRecorder`` encodes video with libvpx at its slowest settings; on a small
machine that starves the meeting itself, so video here is re-encoded in real-time mode.

The file is made when the first frame is decoded: a track none of whose frames decrypt (or
whose frames are refused as someone else's, see ``bot.client.received``) leaves no file under
its owner's name, and two tracks shown under one name get two files.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
from pathlib import Path
from typing import Any

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

log = logging.getLogger(__name__)


def _fresh(path: Path) -> Path:
    """``path``, or ``name-2.ext`` and so on when it is taken (media restarted, or the relay
    showed two tracks under one name)."""
    n = 1
    candidate = path
    while candidate.exists():
        n += 1
        stem, _, ext = path.name.partition(".")
        candidate = path.with_name(f"{stem}-{n}.{ext}")
    return candidate


class TrackRecorder:
    def __init__(self, track: MediaStreamTrack, path: Path) -> None:
        self._track = track
        self._path = path
        self._task: asyncio.Task[None] | None = None
        self._switch = False

    def follow(self, path: Path) -> None:
        """The track now carries someone else's media (the relay reused its line): what
        comes next goes in a file of its own at ``path``."""
        self._path = path
        self._switch = True

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        container: Any = None
        stream: Any = None
        try:
            while True:
                try:
                    frame = await self._track.recv()
                except MediaStreamError:
                    return
                if self._switch and container is not None:
                    _finish(container, stream)
                    container = None
                self._switch = False
                if container is None:
                    container = av.open(str(_fresh(self._path)), mode="w")
                    stream = self._open_stream(container, frame)
                    # Writes the header now, so the next recorder to start sees the name taken.
                    container.start_encoding()
                if self._track.kind == "video":
                    frame.pts = None  # let the encoder number frames at the stream's rate
                for packet in stream.encode(frame):
                    container.mux(packet)
        finally:
            if container is not None:
                _finish(container, stream)

    def _open_stream(self, container: Any, frame: Any) -> Any:
        if self._track.kind == "audio":
            stream = container.add_stream("pcm_s16le", rate=frame.sample_rate)
            stream.layout = frame.layout.name
            return stream
        stream = container.add_stream("libvpx", rate=15)
        stream.width, stream.height = frame.width, frame.height
        stream.pix_fmt = "yuv420p"
        stream.time_base = fractions.Fraction(1, 15)
        stream.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
        stream.codec_context.thread_count = 1  # see VideoSource: threads only contend here
        return stream

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


def _finish(container: Any, stream: Any) -> None:
    """Flush the encoder and close the file."""
    with contextlib.suppress(Exception):
        for packet in stream.encode(None):
            container.mux(packet)
    container.close()
