"""The whole product from a terminal: ``conclave run`` with its console adapter, and
``conclave join`` with the links it hands out, each a real process talking over loopback."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.support.proc import BotProcess, conclave_env, run_bot
from tests.support.secrets_scan import secret_shaped

pytestmark = pytest.mark.slow

DM = re.compile(r"^DM to @(?P<who>[A-Za-z0-9._-]+): (?P<link>\S+)$")


@dataclass(frozen=True)
class Dm:
    who: str
    link: str

    @property
    def room_id(self) -> str:
        path = urlsplit(self.link).path
        assert path.startswith("/j/"), self.link
        return path.removeprefix("/j/")

    @property
    def secret(self) -> str:
        """The part after '.' in the fragment: what must never be logged."""
        fragment = urlsplit(self.link).fragment
        invite_id, dot, secret = fragment.partition(".")
        assert invite_id and dot and secret, "the link has no invite key"
        return secret


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``condition`` until true; AssertionError after ``timeout`` (a guard, not a measure)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def wait_for_dm(server: BotProcess, who: str) -> Dm:
    line = server.stdout.wait_for(lambda s: s.startswith(f"DM to @{who}: "))
    match = DM.match(line)
    assert match is not None, "the DM line is not `DM to @who: <link>` with the link whole"
    return Dm(match["who"], match["link"])


def test_meet_join_end_from_the_console(tmp_path: Path) -> None:
    env = conclave_env(0, tmp_path / "c.db", CONCLAVE_LOGGING_LEVEL="debug")
    server = BotProcess(["run"], env, tmp_path, tmp_path / "server.stderr")
    try:
        # The console greets once the server is listening, naming the port the system chose.
        url = urlsplit(server.wait_for_greeting())
        assert url.hostname == "127.0.0.1" and url.port not in (None, 0), url

        server.send("/meet @ana @ben Sync")
        ana = wait_for_dm(server, "ana")
        ben = wait_for_dm(server, "ben")
        host = wait_for_dm(server, "host")
        room_id = ana.room_id
        assert ben.room_id == room_id == host.room_id
        assert len({ana.secret, ben.secret, host.secret}) == 3
        for dm in (ana, ben, host):
            assert urlsplit(dm.link).netloc == url.netloc
        assert any(room_id in line and "Sync" in line for line in server.stdout.lines)

        joined = run_bot(["join", ana.link, "--duration", "1"], env, tmp_path)
        assert joined.returncode == 0, joined.stderr
        assert re.search(r'^joined "Sync" as ana \(guest\)', joined.stdout, re.MULTILINE)

        again = run_bot(["join", ana.link, "--duration", "1"], env, tmp_path)
        assert again.returncode != 0
        assert re.search(r"already (been )?used", again.stderr), again.stderr
        assert "Traceback" not in again.stderr
        assert "joined" not in again.stdout

        server.send(f"/meet end {room_id}")
        server.stdout.wait_for(lambda s: s.startswith("Ended") and room_id in s)

        revoked = run_bot(["join", ben.link, "--duration", "1"], env, tmp_path)
        assert revoked.returncode != 0
        assert "revoked" in revoked.stderr, revoked.stderr
        assert "Traceback" not in revoked.stderr

        # No secret reached any client's output either.
        client_output = "".join(r.stdout + r.stderr for r in (joined, again, revoked))
        for dm in (ana, ben, host):
            assert dm.secret not in client_output

        assert server.alive(), "the server exited before it was told to"
        assert server.terminate() == 0

        logs = server.stderr_text()
        assert "DEBUG" in logs, "the server did not log at debug level"
        assert room_id in logs  # the logs are about this meeting...
        for dm in (ana, ben, host):
            assert dm.secret not in logs  # ...and never carry its keys
        assert secret_shaped(logs) == []
        assert "Traceback" not in logs
    finally:
        server.close()


def test_the_server_outlives_its_console_input(tmp_path: Path) -> None:
    """With stdin closed (a service, or CI), the console stops but the server keeps serving."""
    # With its relay worker (healthy needs one ready), as `conclave run` starts by default.
    env = conclave_env(0, tmp_path / "c.db", CONCLAVE_RELAY_WORKERS="1")
    server = BotProcess(["run"], env, tmp_path, tmp_path / "server.stderr")
    try:
        url = server.wait_for_greeting()
        server.close_stdin()
        wait_until(lambda: "console input closed" in server.stderr_text())
        assert server.alive()
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"{url}/healthz", timeout=10) as response:
            assert response.status == 200
            assert json.loads(response.read()) == {"status": "ok"}
        assert server.terminate() == 0
        assert "Traceback" not in server.stderr_text()
    finally:
        server.close()
