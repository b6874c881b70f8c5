"""The core is killed (SIGKILL) in the middle of a meeting and started again on the same
database and port: every client rejoins by itself with its resume token, keeps its place (a
guest the host let out of the lobby is not sent back; one still waiting waits again), and the
three in the meeting negotiate media again and decode each other's video.

Real processes throughout: ``conclave run`` with a local relay worker, ``conclave join`` for
the guests, and for the host the same client with one addition ``conclave join`` lacks, letting
named guests out of the lobby (once each: after the restart nobody is let in again).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import av
import pytest

from tests.support.proc import BotProcess, LineReader, conclave_env

pytestmark = pytest.mark.slow

DM = re.compile(r"^DM to @(?P<who>\w+): (?P<link>\S+)$")
WAIT = 30.0  # a functional bound for each stage, generous for a loaded machine
# How long each client stays. The crash comes once everyone decodes everyone (seconds after
# they start), so this leaves the restart, the rejoins and a stretch of media after them.
DURATION = 32.0
LOBBY_LINE = "Waiting for the host to let you in."
IN_MEETING = ("host", "ana", "ben")

# The host's client: ``conclave join`` (the same session class), plus admitting each guest
# named on the command line the first time it shows up in the lobby, and never again.
HOST = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path

    from bot.client.session import ClientSession, MediaOptions
    from bot.config import load_settings
    from bot.core.links import parse_link
    from bot.rtc.internals import restrict_host_addresses


    async def main(record: str, duration: float, names: list[str]) -> None:
        relay = load_settings().relay
        restrict_host_addresses(relay.host_addresses)
        options = MediaOptions(audio="none", record_dir=Path(record), ice=relay)
        say = lambda line: print(line, flush=True)
        session = ClientSession(parse_link(sys.stdin.readline().strip()), say, options)
        shown = session.handlers["lobby_waiting"]
        pending = set(names)

        async def admit_once(message: dict) -> None:
            await shown(message)
            for guest in message["waiting"]:
                if guest["name"] in pending:
                    pending.discard(guest["name"])
                    await session.send("admit", participant=guest["participant_id"])

        session.handlers["lobby_waiting"] = admit_once
        await session.run(duration)


    asyncio.run(main(sys.argv[1], float(sys.argv[2]), sys.argv[3:]))
    """
)


class Client:
    """One participant's process; its stdout read line by line, its stderr kept in a file."""

    def __init__(self, args: list[str], link: str, env: dict[str, str], tmp: Path, who: str):
        self.who = who
        self._stderr_path = tmp / f"{who}.stderr"
        self._stderr = self._stderr_path.open("w", encoding="utf-8")
        self.proc = subprocess.Popen(
            args,
            env=env,
            cwd=tmp,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            bufsize=1,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        # On standard input, not argv: the link carries the invite key.
        self.proc.stdin.write(link + "\n")
        self.proc.stdin.close()
        self.out = LineReader(self.proc.stdout)

    def said(self) -> list[str]:
        """Every line it has printed so far."""
        with contextlib.suppress(AssertionError):  # read to the end of what is there
            self.out.wait_for(lambda s: False, timeout=0.01)
        return list(self.out.lines)

    def stderr(self) -> str:
        return self._stderr_path.read_text(encoding="utf-8")  # written by the child alone

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.out.join()
        self._stderr.close()


def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def videos(tmp: Path, who: str) -> set[Path]:
    """The video recordings ``who`` has started, one per track it decoded a frame of, named
    ``<name>-<participant id>[-n].video.webm``."""
    return set((tmp / f"rec-{who}").glob("*.video.webm"))


def of_each_other(who: str, found: set[Path], ids: dict[str, str]) -> bool:
    """Whether ``found`` holds a recording of each of the others in the meeting."""
    others = [ids[o] for o in IN_MEETING if o != who]
    return all(any(f"-{pid}." in p.name or f"-{pid}-" in p.name for p in found) for pid in others)


def video_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(container.streams.video[0]))


def only_child(pid: int) -> int:
    (child,) = [
        int(c)
        for t in Path(f"/proc/{pid}/task").iterdir()
        for c in (t / "children").read_text().split()
    ]
    return child


def gone(pid: int) -> bool:
    """Exited (a zombie waiting for its new parent to reap it counts)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def free_port() -> int:
    """A loopback port nothing listens on now.

    Both cores are given it: one started on port 0 binds without SO_REUSEADDR, and the
    connections its death leaves in TIME_WAIT would keep a restart off that port for a minute.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def core(env: dict[str, str], tmp: Path, name: str) -> Iterator[BotProcess]:
    server = BotProcess(["run"], env, tmp, tmp / f"{name}.stderr")
    try:
        yield server
    finally:
        server.close()


def invite_links(server: BotProcess, *who: str) -> dict[str, str]:
    links = {}
    for name in who:
        line = server.stdout.wait_for(lambda s: s.startswith(f"DM to @{name}: "))  # noqa: B023
        match = DM.match(line)
        assert match is not None
        links[name] = match["link"]
    return links


def start_clients(tmp: Path, env: dict[str, str], links: dict[str, str]) -> dict[str, Client]:
    """The host, who lets Ana and Ben in; Ana and Ben with media; Cy, left in the lobby."""
    (tmp / "host.py").write_text(HOST, encoding="utf-8")
    join = [
        sys.executable,
        "-m",
        "bot",
        "join",
        "-",
        "--audio",
        "none",
        "--duration",
        str(DURATION),
    ]
    host = [sys.executable, str(tmp / "host.py"), str(tmp / "rec-host"), str(DURATION)]
    clients = {"host": Client([*host, "ana", "ben"], links["host"], env, tmp, "host")}
    for who in ("ana", "ben"):
        clients[who] = Client(
            [*join, "--record", str(tmp / f"rec-{who}")], links[who], env, tmp, who
        )
    clients["cy"] = Client([*join, "--no-media"], links["cy"], env, tmp, "cy")
    return clients


def test_a_meeting_outlives_a_sigkill_of_the_core(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    port = free_port()
    env = conclave_env(port, db, CONCLAVE_RELAY_WORKERS="1")
    clients: dict[str, Client] = {}
    worker = 0
    try:
        with core(env, tmp_path, "core-1") as first:
            assert urlsplit(first.wait_for_greeting()).port == port
            first.send("/meet @ana @ben @cy Sync lobby")
            clients = start_clients(tmp_path, env, invite_links(first, "ana", "ben", "cy", "host"))
            ids = {}
            for who, client in clients.items():
                joined = client.out.wait_for(lambda s: s.startswith("joined "), WAIT)
                ids[who] = joined.rsplit("participant ", 1)[1]
            for who in IN_MEETING:
                wait_until(
                    lambda: of_each_other(who, videos(tmp_path, who), ids),  # noqa: B023
                    f"{who} to decode the others' video before the crash",
                )
            clients["cy"].out.wait_for(lambda s: s == LOBBY_LINE, WAIT)

            worker = only_child(first.proc.pid)
            os.kill(first.proc.pid, signal.SIGKILL)
            assert first.proc.wait(timeout=10) == -signal.SIGKILL
        before = {who: videos(tmp_path, who) for who in IN_MEETING}
        heard = {who: len(c.said()) for who, c in clients.items()}

        with core(env, tmp_path, "core-2") as again:
            assert urlsplit(again.wait_for_greeting()).port == port
            # The old relay worker died with its core rather than linger holding its ports
            # (or offer itself to the new core).
            wait_until(lambda: gone(worker), "the old relay worker to exit", 15.0)
            for client in clients.values():
                client.out.wait_for(lambda s: s == "rejoined", WAIT)
            for who in IN_MEETING:
                wait_until(
                    lambda: of_each_other(who, videos(tmp_path, who) - before[who], ids),  # noqa: B023
                    f"{who} to decode the others' video after the restart",
                )
            # Cy waits again, and the host is told so.
            clients["cy"].out.wait_for(lambda s: s == LOBBY_LINE, WAIT)
            clients["host"].out.wait_for(lambda s: s.startswith("waiting in the lobby: cy ("), WAIT)
            for client in clients.values():
                client.proc.wait(timeout=DURATION + WAIT)
            assert again.alive()
            assert "Traceback" not in again.stderr_text()
        said = {who: c.said() for who, c in clients.items()}
    finally:
        for client in clients.values():
            client.close()
        if worker and not gone(worker) and b"relay" in Path(f"/proc/{worker}/cmdline").read_bytes():
            os.kill(worker, signal.SIGKILL)

    for who, client in clients.items():
        # Each stayed its whole time and left on its own: no rejoin ran out of attempts.
        assert client.proc.returncode == 0, f"{who}: {client.stderr()[-2000:]}"
        assert "Traceback" not in client.stderr()
    for who in ("ana", "ben"):
        # Straight back into the meeting: never told to wait, never let in a second time.
        after = said[who][heard[who] :]
        assert "rejoined" in after
        assert LOBBY_LINE not in after, after
        assert said[who].count("the host let you in") == 1
    assert "the host let you in" not in said["cy"]
    # Each decoded the others before the crash, and again after it: a new recording of each
    # of the others, which went on gathering frames.
    for who in IN_MEETING:
        assert all(video_frames(path) >= 1 for path in before[who]), before[who]
        for path in videos(tmp_path, who) - before[who]:
            assert video_frames(path) >= 15, path
    # The admissions on record are the two made before the crash: nobody was let in again.
    with contextlib.closing(sqlite3.connect(db)) as conn:
        (admitted,) = conn.execute(
            "SELECT count(*) FROM audit WHERE event = 'participant_admitted'"
        ).fetchone()
    assert admitted == 2
