"""Three people meet through `conclave run`, each with `conclave join`: real processes, real
aiortc peers, a real relay worker, loopback only."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import av
import pytest

from tests.support.proc import BotProcess, conclave_env

pytestmark = pytest.mark.slow

DM = re.compile(r"^DM to @(?P<who>\w+): (?P<link>\S+)$")
CODE = re.compile(r"^security code: (\d{5} \d{5} \d{5} \d{5} \d{5} \d{5})$")
MEETING_SECONDS = 12


def video_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(container.streams.video[0]))


def audio_seconds(path: Path) -> float:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        return sum(f.samples for f in container.decode(stream)) / stream.rate


def test_three_clients_record_each_other_and_agree_on_the_code(tmp_path: Path) -> None:
    env = conclave_env(0, tmp_path / "c.db", CONCLAVE_RELAY_WORKERS="1")
    server = BotProcess(["run"], env, tmp_path, tmp_path / "server.stderr")
    clients: dict[str, subprocess.Popen[str]] = {}
    try:
        server.wait_for_greeting()
        server.send("/meet @ana @ben Sync")
        links = {}
        for who in ("ana", "ben", "host"):
            prefix = f"DM to @{who}: "
            line = server.stdout.wait_for(lambda s: s.startswith(prefix))  # noqa: B023
            match = DM.match(line)
            assert match is not None
            links[who] = match["link"]
        for who, link in links.items():
            clients[who] = subprocess.Popen(
                [
                    sys.executable, "-m", "bot", "join", link,
                    "--duration", str(MEETING_SECONDS),
                    "--record", str(tmp_path / f"rec-{who}"),
                ],
                env=env,
                cwd=tmp_path,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
        outputs = {}
        for who, proc in clients.items():
            out, err = proc.communicate(timeout=MEETING_SECONDS + 60)
            assert proc.returncode == 0, f"{who} failed: {err[-2000:]}"
            outputs[who] = out
        assert server.alive()
    finally:
        for proc in clients.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        server.close()

    # Everyone saw everyone, and while all three were there all three showed the same code.
    full_codes = {}
    for who, out in outputs.items():
        size = 0
        for line in out.splitlines():
            if line.startswith("roster: "):
                size = line.count("(")
            elif (match := CODE.match(line)) and size == 3:
                full_codes[who] = match[1]
        assert who in full_codes, f"{who} never showed a code for all three:\n{out}"
    assert len(set(full_codes.values())) == 1, full_codes

    # Each recorded decodable audio and video from each of the other two.
    for who in clients:
        folder = tmp_path / f"rec-{who}"
        videos = sorted(folder.glob("*.video.webm"))
        audios = sorted(folder.glob("*.audio.wav"))
        others = {o for o in clients if o != who}  # console names are the @handles
        assert {p.name.split("-")[0] for p in videos} == others, (who, videos)
        assert {p.name.split("-")[0] for p in audios} == others, (who, audios)
        for path in videos:
            assert video_frames(path) >= 30, path  # two seconds and more at 15 fps
        for path in audios:
            assert audio_seconds(path) >= 2.0, path
