"""The client's media sources: test patterns and files, encoded by the client itself, handed to
aiortc only through the protect function (nothing leaves a source unprotected)."""

from __future__ import annotations

import fractions
from pathlib import Path

import av
import numpy as np
import pytest

from bot.client.tracks import AudioSource, VideoSource
from bot.e2ee.errors import MediaFrameError


def make_media_file(path: Path) -> None:
    """One second of moving VP8 video and an Opus tone, written with PyAV."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libvpx", rate=10)
        video.width, video.height, video.pix_fmt = 160, 120, "yuv420p"
        audio = out.add_stream("libopus", rate=48000)
        for i in range(10):
            img = np.full((120, 160, 3), i * 20, np.uint8)
            for packet in video.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for i in range(50):
            t = (np.arange(960) + i * 960) / 48000
            tone = (np.sin(2 * np.pi * 330 * t) * 5000).astype(np.int16).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(tone, format="s16", layout="mono")
            frame.sample_rate, frame.pts = 48000, i * 960
            frame.time_base = fractions.Fraction(1, 48000)
            for packet in audio.encode(frame):
                out.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode(None):
                out.mux(packet)


def sealed(frame: bytes) -> bytes:
    return b"SEALED" + frame[::-1]  # stands in for SFrame: anything but the plain frame


@pytest.mark.parametrize("source", ["testsrc", "file"])
async def test_video_source_encodes_vp8_and_hands_over_only_protected_frames(
    source: str, tmp_path: Path
) -> None:
    path = tmp_path / "clip.webm"
    make_media_file(path)
    track = VideoSource(sealed, "testsrc" if source == "testsrc" else str(path))
    track.keep_frames = True
    packets = [bytes(await track.recv()) for _ in range(12)]  # longer than the file: it loops
    track.stop()
    assert packets == track.sent_protected
    assert all(p.startswith(b"SEALED") for p in packets)
    decoder = av.CodecContext.create("vp8", "r")
    pictures = [f for plain in track.sent_plaintext for f in decoder.decode(av.Packet(plain))]
    assert len(pictures) == 12 and pictures[0].width == 320


@pytest.mark.parametrize("source", ["tone", "file"])
async def test_audio_source_encodes_opus(source: str, tmp_path: Path) -> None:
    path = tmp_path / "clip.webm"
    make_media_file(path)
    track = AudioSource(sealed, "tone" if source == "tone" else str(path))
    track.keep_frames = True
    packets = [await track.recv() for _ in range(60)]  # 1.2 s: past the end of the file
    track.stop()
    assert [p.pts for p in packets] == [i * 960 for i in range(60)]
    decoder = av.CodecContext.create("opus", "r")
    samples = sum(f.samples for p in track.sent_plaintext for f in decoder.decode(av.Packet(p)))
    assert samples >= 50 * 960


async def test_a_frame_that_cannot_be_protected_is_skipped_not_sent() -> None:
    calls = 0

    def refuse_first(frame: bytes) -> bytes:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise MediaFrameError("vp8", 1, 10)
        return sealed(frame)

    track = VideoSource(refuse_first, "testsrc")
    first = bytes(await track.recv())
    track.stop()
    assert calls == 2 and first.startswith(b"SEALED")
