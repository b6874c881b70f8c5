"""A real coturn TURN server for a test: Debian's ``turnserver``, on 127.0.0.1 only.

It runs with a generated config as a self-hoster's would (``use-auth-secret``: credentials made
from a shared secret, see ``bot.ice_servers``), except that it listens and relays on loopback
and lets its allocations reach loopback peers, so that no packet leaves the machine. Its log
(``verbose``) names every allocation with its username and what it carried.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.ports import free_udp_ports

TURNSERVER = "/usr/bin/turnserver"
REALM = "conclave.test"
START_TIMEOUT = 15.0
# One line per allocation: "session <id>: new, realm=<...>, username=<expiry:user>, ..."
ALLOCATED = re.compile(r"session (\d+): new, realm=<[^>]*>, username=<([^>]*)>")
# Now and then, and at a session's end, what it carried: "session <id>: usage: realm=<...>,
# username=<...>, rp=N, rb=N, sp=N, sb=N" for the client's side (rb: bytes the client sent
# through it), "session <id>: peer usage: ..." for the peers' (rb: bytes relayed to the client).
USAGE = re.compile(r"session (\d+): (usage|peer usage): .*?username=<([^>]*)>, rp=\d+, rb=(\d+)")
# A peer the allocation may send to, by permission ("peer 127.0.0.1 lifetime updated: 300") or
# channel ("peer 127.0.0.1:40001 lifetime updated: 600").
PEER = re.compile(r"session (\d+): peer ([0-9.]+|[0-9a-f:]+?)(?::\d+)? lifetime updated")


@dataclass
class Coturn:
    port: int
    log: Path
    relay_ports: range

    @property
    def turn_url(self) -> str:
        return f"turn:127.0.0.1:{self.port}?transport=udp"

    @property
    def stun_url(self) -> str:
        return f"stun:127.0.0.1:{self.port}"

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def allocations(self) -> dict[str, str]:
        """Session id -> the username that allocated it."""
        return dict(ALLOCATED.findall(self.text()))

    def peers(self) -> dict[str, set[str]]:
        """Session id -> every peer address its allocation was allowed to send to."""
        found: dict[str, set[str]] = {}
        for session, host in PEER.findall(self.text()):
            found.setdefault(session, set()).add(host)
        return found

    def relayed(self) -> dict[str, tuple[int, int]]:
        """Username -> (bytes its clients sent through its allocations, bytes relayed to them),
        as coturn has reported them so far: each session's latest report (they are running
        totals, logged now and then and at the session's end), summed over a user's sessions."""
        latest: dict[tuple[str, str, str], int] = {}  # (session, side, user) -> bytes
        for session, side, user, count in USAGE.findall(self.text()):
            latest[(session, side, user)] = int(count)
        sent: dict[str, int] = {}
        received: dict[str, int] = {}
        for (_, side, user), count in latest.items():
            into = sent if side == "usage" else received
            into[user] = into.get(user, 0) + count
        return {user: (sent[user], received[user]) for user in sent.keys() & received.keys()}


def _free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (coturn listens on both)."""
    for _ in range(50):
        port = free_udp_ports(1).start
        with socket.socket() as tcp:
            try:
                tcp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port for coturn")


@contextmanager
def coturn(folder: Path, secret: str) -> Iterator[Coturn]:
    """coturn on 127.0.0.1 with ``static-auth-secret = secret``, until the block ends."""
    if shutil.which(TURNSERVER) is None:
        pytest.fail(f"{TURNSERVER} is missing: apt-get install -y coturn (.ci/run does it)")
    folder.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    relay_ports = free_udp_ports(20)
    log = folder / "turnserver.log"
    config = folder / "turnserver.conf"
    config.write_text(
        "\n".join(
            [
                "listening-ip=127.0.0.1",
                "relay-ip=127.0.0.1",
                f"listening-port={port}",
                f"min-port={relay_ports.start}",
                f"max-port={relay_ports.stop - 1}",
                "use-auth-secret",
                f"static-auth-secret={secret}",
                f"realm={REALM}",
                # Only because the relay and the clients are on loopback here: never in production.
                "allow-loopback-peers",
                "no-multicast-peers",
                "no-tls",
                "no-dtls",
                "no-tcp-relay",
                "no-cli",
                "fingerprint",
                f"userdb={folder / 'turndb'}",
                f"pidfile={folder / 'turnserver.pid'}",
                f"log-file={log}",
                "simple-log",
                "verbose",
                "no-stdout-log",
                "",
            ]
        ),
        encoding="utf-8",
    )
    proc = subprocess.Popen(
        [TURNSERVER, "-c", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        listening = f"UDP listener opened on: 127.0.0.1:{port}"
        deadline = time.monotonic() + START_TIMEOUT
        while not (log.exists() and listening in log.read_text(errors="replace")):
            assert proc.poll() is None, f"turnserver exited with {proc.returncode}; see {log}"
            assert time.monotonic() < deadline, f"turnserver did not listen within 15 s; see {log}"
            time.sleep(0.05)
        yield Coturn(port, log, relay_ports)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
