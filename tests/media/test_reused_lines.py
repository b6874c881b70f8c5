"""The relay gives the lines of someone who left to the next newcomer (bot/relay/lines.py), and
`conclave join`, which gets no new track event for such a line, follows the line's new name:
real processes throughout (`conclave run` with a relay worker, `conclave join` for each), on
loopback."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.media.test_three_party import DM, audio_seconds, video_frames
from tests.support.proc import BotProcess, conclave_env

pytestmark = pytest.mark.slow

HOST_SECONDS = 26  # outlasts both visits and the time between them
VISIT_SECONDS = 7
COUNTS = re.compile(r"^frames decrypted: (\d+), dropped \(failed to decrypt\): (\d+), "
                    r"refused \(not from the participant shown\): (\d+)$")  # fmt: skip


def join(
    env: dict[str, str], tmp_path: Path, who: str, link: str, seconds: int
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable, "-m", "bot", "join", link,
            "--duration", str(seconds), "--record", str(tmp_path / f"rec-{who}"),
        ],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def finished(proc: subprocess.Popen[str], who: str, timeout: float) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"{who} failed: {err[-2000:]}"
    return out


def test_the_host_records_each_visitor_under_its_own_name_on_reused_lines(
    tmp_path: Path,
) -> None:
    """ana visits, leaves, then ben visits, while the host stays: ben's tracks come on the
    lines ana's came on. The host records each visitor's audio and video in files under that
    visitor's name, and refuses none of their frames as someone else's."""
    env = conclave_env(0, tmp_path / "c.db", CONCLAVE_RELAY_WORKERS="1")
    server = BotProcess(["run"], env, tmp_path, tmp_path / "server.stderr")
    procs: list[subprocess.Popen[str]] = []
    try:
        server.wait_for_greeting()
        server.send("/meet @ana @ben Visits")
        links = {}
        for who in ("ana", "ben", "host"):
            line = server.stdout.wait_for(lambda s: s.startswith(f"DM to @{who}: "))  # noqa: B023
            match = DM.match(line)
            assert match is not None
            links[who] = match["link"]
        host = join(env, tmp_path, "host", links["host"], HOST_SECONDS)
        procs.append(host)
        time.sleep(3)  # the host is in the meeting
        for who in ("ana", "ben"):
            visitor = join(env, tmp_path, who, links[who], VISIT_SECONDS)
            procs.append(visitor)
            finished(visitor, who, VISIT_SECONDS + 60)
            time.sleep(2)  # the host's lines for this visitor go inactive
        out = finished(host, "host", HOST_SECONDS + 60)
        assert server.alive()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        server.close()

    counts = [COUNTS.match(line) for line in out.splitlines()]
    found = [m for m in counts if m is not None]
    assert found, out
    assert found[-1][3] == "0", f"the host refused frames as someone else's: {found[-1][0]}"
    folder = tmp_path / "rec-host"
    for kind, suffix in (("video", "video.webm"), ("audio", "audio.wav")):
        files = sorted(folder.glob(f"*.{suffix}"))
        assert {p.name.split("-")[0] for p in files} == {"ana", "ben"}, (kind, files)
        for path in files:
            if kind == "video":
                assert video_frames(path) >= 30, path  # two seconds and more at 15 fps
            else:
                assert audio_seconds(path) >= 2.0, path
