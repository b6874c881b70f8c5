"""Slack slash commands under load: how fast they are acknowledged and how soon the DMs go out.

Starts the real bot (``python -m bot run`` in Slack HTTP mode, a separate process so its peak
memory can be read) against a local fake Slack Web API that adds 50 ms to every call, then fires
50 concurrent signed ``/meet`` commands, each inviting 5 people, at ``/slack/events``. Prints the
ack latency p50/p99, the time from the last ack until every DM was posted (250 to invitees, plus
each host's own), and the bot's peak resident memory (VmHWM).

Targets: ack p99 under 300 ms; all 250 invitee DMs within 2 s of the last ack.

    python bench/command_bench.py [commands] [invitees_per_command]
"""

from __future__ import annotations

import asyncio
import os
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# Run as a script from anywhere: make the repository root importable.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import aiohttp

from bench.procstats import peak_rss_kib, percentile, stop_process
from tests.support.fake_slack import BOT_TOKEN, FakeSlack, form, signed_headers, slash_command

ROOT = Path(__file__).resolve().parent.parent
SIGNING_SECRET = "bench-signing-secret"
LATENCY = 0.05
ACK_P99_TARGET_MS = 300.0
DMS_TARGET_S = 2.0
START_TIMEOUT = 30.0
DONE_TIMEOUT = 60.0


@dataclass(frozen=True)
class Figures:
    commands: int
    invitees: int
    ack_p50_ms: float
    ack_p99_ms: float
    invitee_dms_after_last_ack_s: float
    all_dms_after_last_ack_s: float
    peak_rss_kib: int


# The bot's log line once it listens; with ``server.port = 0`` it is what names the port.
LISTENING = re.compile(r"listening on \S+; links use (?P<url>\S+)$")
# Below warning: read only so that the pipe never fills and stalls the bot.
QUIET = re.compile(r"^\S+ \S+ (?:DEBUG|INFO)\s")


async def wait_listening(proc: asyncio.subprocess.Process) -> str:
    """The URL the bot serves, from its log; what it logs first is passed on as it comes."""
    assert proc.stderr is not None
    stream = proc.stderr

    async def scan() -> str:
        while line := await stream.readline():
            text = line.decode(errors="replace").rstrip("\n")
            if match := LISTENING.search(text):
                return match["url"]
            if not QUIET.match(text):
                print(text, file=sys.stderr)
        raise SystemExit(f"the bot exited with {await proc.wait()} before it was listening")

    try:
        return await asyncio.wait_for(scan(), START_TIMEOUT)
    except TimeoutError:
        raise SystemExit("the bot did not start listening in time") from None


async def pass_on_warnings(proc: asyncio.subprocess.Process) -> None:
    assert proc.stderr is not None
    while line := await proc.stderr.readline():
        text = line.decode(errors="replace").rstrip("\n")
        if not QUIET.match(text):
            print(text, file=sys.stderr)


async def wait_healthy(url: str, proc: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise SystemExit(f"the bot exited with {proc.returncode} before it was ready")
            try:
                async with http.get(f"{url}/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit("the bot did not become healthy in time")


async def send(http: aiohttp.ClientSession, url: str, body: str) -> float:
    """One signed slash command; the seconds until its ack."""
    headers = signed_headers(SIGNING_SECRET, body)
    started = time.perf_counter()
    async with http.post(f"{url}/slack/events", data=body, headers=headers) as response:
        await response.read()
        assert response.status == 200, response.status
    return time.perf_counter() - started


async def run(commands: int = 50, invitees: int = 5) -> Figures:
    fake = FakeSlack(latency=LATENCY)
    hosts = [f"UHOST{i:04d}" for i in range(commands)]
    guests = [[f"UGUEST{i:04d}{j:02d}" for j in range(invitees)] for i in range(commands)]
    for user_id in hosts + [g for group in guests for g in group]:
        fake.add_user(user_id, user_id.title())
    await fake.start()
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONCLAVE_")}
        env.update(
            CONCLAVE_SERVER_PORT="0",  # any free port: the bot logs the one it got
            CONCLAVE_STORAGE_PATH=str(Path(tmp) / "bench.db"),
            CONCLAVE_SLACK_MODE="http",
            CONCLAVE_SLACK_BOT_TOKEN=BOT_TOKEN,
            CONCLAVE_SLACK_SIGNING_SECRET=SIGNING_SECRET,
            CONCLAVE_SLACK_API_URL=fake.api_url,
            CONCLAVE_LOGGING_LEVEL="info",  # for the "listening on" line
            CONCLAVE_RELAY_WORKERS="0",  # no media in this benchmark
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", env=env, cwd=ROOT,
            stdin=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        draining: asyncio.Task[None] | None = None
        try:
            url = await wait_listening(proc)
            draining = asyncio.create_task(pass_on_warnings(proc))
            await wait_healthy(url, proc)
            await fake.wait_for(lambda: bool(fake.called("auth.test")), START_TIMEOUT)
            async with aiohttp.ClientSession() as http:
                # One command first, unmeasured: Bolt checks the token once, on its first request.
                await send(http, url, form(slash_command(fake, "Warm-up", hosts[0], "warm")))
                await fake.wait_responses(1, DONE_TIMEOUT)
                fake.calls.clear()
                fake.responses.clear()
                bodies = [
                    form(
                        slash_command(
                            fake,
                            " ".join(f"<@{g}>" for g in guests[i]) + f" Bench {i}",
                            hosts[i],
                            f"c{i}",
                        )
                    )
                    for i in range(commands)
                ]
                acks = await asyncio.gather(*(send(http, url, b) for b in bodies))
            last_ack = time.monotonic()
            everyone = {g for group in guests for g in group}

            def invitees_done() -> bool:
                return everyone <= set(fake.dms())

            await fake.wait_for(invitees_done, DONE_TIMEOUT)
            invitees_at = time.monotonic()
            await fake.wait_for(lambda: len(fake.dms()) == len(everyone) + commands, DONE_TIMEOUT)
            all_at = time.monotonic()
            await fake.wait_responses(commands, DONE_TIMEOUT)
            rss = peak_rss_kib(proc.pid)
        finally:
            await stop_process(proc)
            if draining is not None:
                await draining  # the pipe ends with the process
            await fake.stop()
    ack_ms = [a * 1000 for a in acks]
    return Figures(
        commands=commands,
        invitees=commands * invitees,
        ack_p50_ms=statistics.median(ack_ms),
        ack_p99_ms=percentile(ack_ms, 0.99),
        invitee_dms_after_last_ack_s=max(0.0, invitees_at - last_ack),
        all_dms_after_last_ack_s=max(0.0, all_at - last_ack),
        peak_rss_kib=rss,
    )


def main() -> int:
    commands = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    invitees = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    f = asyncio.run(run(commands, invitees))
    ack_ok = f.ack_p99_ms < ACK_P99_TARGET_MS
    dms_ok = f.invitee_dms_after_last_ack_s < DMS_TARGET_S
    print(
        f"{f.commands} concurrent /meet commands, {f.invitees} invitees, "
        f"{LATENCY * 1000:.0f} ms per API call"
    )
    print(f"ack latency p50     {f.ack_p50_ms:8.1f} ms")
    print(
        f"ack latency p99     {f.ack_p99_ms:8.1f} ms   "
        f"(target < {ACK_P99_TARGET_MS:.0f} ms: {'ok' if ack_ok else 'MISSED'})"
    )
    print(
        f"{f.invitees} invitee DMs   {f.invitee_dms_after_last_ack_s:8.2f} s after the last ack "
        f"(target < {DMS_TARGET_S:.0f} s: {'ok' if dms_ok else 'MISSED'})"
    )
    print(
        f"all {f.invitees + f.commands} DMs       {f.all_dms_after_last_ack_s:8.2f} s after the "
        "last ack (hosts' own links included)"
    )
    print(f"bot peak RSS        {f.peak_rss_kib / 1024:8.1f} MiB (VmHWM)")
    return 0 if ack_ok and dms_ok else 1


if __name__ == "__main__":
    sys.exit(main())
