"""A meeting through TURN alone, as for people behind firewalls that let nothing else out: the
meeting page in Chromium and `conclave join --relay-only` each use only candidates relayed by
a real coturn (ICE transport policy "relay"), with credentials the core minted for each of
them from coturn's shared secret, and still decode each other. coturn's log shows their
allocations and what they carried. Everything is on 127.0.0.1: coturn listens and relays
there, the relay worker binds its ports of relay.udp_port_range there.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser

from tests.browser.meeting_tabs import open_tab, until
from tests.browser.test_meeting_media import drained
from tests.media.test_three_party import video_frames
from tests.support.coturn import coturn
from tests.support.meeting import make_meeting
from tests.support.ports import free_udp_ports
from tests.support.proc import BotProcess, conclave_env
from tests.support.server import serve

pytestmark = pytest.mark.slow

TURN_SECRET = "a-coturn-shared-secret-for-tests"
JOINED_LINE = re.compile(r"^joined .* participant (\S+)$")
PYTHON_SECONDS = 15
# More than ICE checks and a DTLS handshake make in that time (a few kilobytes): media.
MEDIA_BYTES = 20_000
# Every peer connection the page makes uses relayed candidates only, as a browser whose
# firewall lets only the TURN server through would end up doing; kept for getStats.
FORCE_RELAY = """
(() => {
  const Native = window.RTCPeerConnection;
  const made = [];
  window.RTCPeerConnection = class extends Native {
    constructor(config = {}, ...rest) {
      super({ ...config, iceTransportPolicy: "relay" }, ...rest);
      made.push(this);
    }
  };
  window.relayOnlyConnections = made;
})();
"""
SELECTED_PAIR = """
async () => {
  const pc = window.relayOnlyConnections.at(-1);
  const stats = [...(await pc.getStats()).values()];
  const transport = stats.find((s) => s.type === "transport" && s.selectedCandidatePairId);
  const pair = stats.find((s) => s.id === transport.selectedCandidatePairId);
  const local = stats.find((s) => s.id === pair.localCandidateId);
  const remote = stats.find((s) => s.id === pair.remoteCandidateId);
  return { local: local.candidateType, localAddress: local.address, remote: remote.address };
}
"""


def relay_only_join(folder: Path, link: str) -> BotProcess:
    args = ["join", "-", "--relay-only", "--duration", str(PYTHON_SECONDS)]
    args += ["--audio", "none", "--record", str(folder / "rec")]
    env = conclave_env(0, folder / "unused.db")
    client = BotProcess(args, env, folder, folder / "join.stderr")
    client.send(link)
    client.close_stdin()
    return client


async def test_a_page_and_conclave_join_meet_through_turn_alone(
    browser: Browser, tmp_path: Path
) -> None:
    relay_ports = free_udp_ports(10)
    with coturn(tmp_path / "coturn", TURN_SECRET) as turn:
        env = {
            "CONCLAVE_RELAY_WORKERS": "1",
            "CONCLAVE_RELAY_HOST_ADDRESSES": "127.0.0.1",
            "CONCLAVE_RELAY_ICE_SERVERS": turn.turn_url,
            "CONCLAVE_RELAY_TURN_SECRET": TURN_SECRET,
            "CONCLAVE_RELAY_UDP_PORT_RANGE": f"{relay_ports.start}-{relay_ports.stop - 1}",
        }
        async with serve(tmp_path / "server", env=env) as server:
            meeting = await make_meeting(server, "ben")
            link = meeting.invites["hana"].link.reveal()
            async with open_tab(browser, server.base_url, "hana", link, FORCE_RELAY) as hana:
                await hana.join()
                await hana.until_screen("screen-meeting")
                hana_id = (await hana.report())["participantId"]
                client = relay_only_join(tmp_path, meeting.invites["ben"].link.reveal())
                try:
                    joined = await asyncio.to_thread(
                        client.stdout.wait_for, lambda line: bool(JOINED_LINE.match(line)), 30
                    )
                    found = JOINED_LINE.match(joined)
                    assert found is not None
                    ben_id = found[1]
                    await hana.until_decoding(ben_id, frames=30)
                    config: dict[str, Any] = (await hana.report())["sending"]["config"]
                    pair = await hana.page.evaluate(SELECTED_PAIR)
                    exit_code = await asyncio.to_thread(client.proc.wait, PYTHON_SECONDS + 30)
                    assert exit_code == 0, client.stderr_path.read_text()[-2000:]
                    lines = await asyncio.to_thread(drained, client)
                finally:
                    client.close()
                assert hana.problems() == []

            # Both have left: coturn ends their allocations and logs what each carried (it may
            # have logged a running total earlier, from the first seconds: wait for the media).
            async def logged() -> bool:
                carried = relayed_for(turn.relayed(), (hana_id, ben_id))
                return carried is not None and min(map(sum, carried.values())) > MEDIA_BYTES

            await until(logged, "coturn to log the media both allocations carried")

    # The page was given its own TURN credentials, and used nothing but its relayed address.
    assert config["iceTransportPolicy"] == "relay"
    (given,) = config["iceServers"]
    assert given["urls"] == [turn.turn_url]
    assert re.fullmatch(rf"\d+:{re.escape(hana_id)}", given["username"]), given
    assert TURN_SECRET not in str(config)
    assert pair["local"] == "relay" and pair["localAddress"] == "127.0.0.1", pair
    assert pair["remote"] == "127.0.0.1", pair

    # conclave join decrypted what the page sent, through TURN only.
    assert lines[-1].startswith("frames decrypted: "), lines[-1]
    assert int(lines[-1].split(":")[1].split(",")[0]) > 0, lines[-1]
    (video,) = (tmp_path / "rec").glob("Hana-*.video.webm")
    assert video_frames(video) >= 30, video

    # coturn allocated for both participants, by the usernames minted for them, let them send
    # only to 127.0.0.1, and carried their media: video, not just connectivity checks.
    allocated = turn.allocations()
    users = {username.split(":", 1)[1] for username in allocated.values()}
    assert {hana_id, ben_id} <= users, turn.text()[-3000:]
    peers = turn.peers()
    for who in (hana_id, ben_id):
        sessions = [s for s, username in allocated.items() if username.endswith(f":{who}")]
        assert set().union(*(peers.get(s, set()) for s in sessions)) == {"127.0.0.1"}, who
    carried = relayed_for(turn.relayed(), (hana_id, ben_id))
    # Media, not just connectivity checks (a few hundred bytes), crossed each one's allocation.
    assert carried is not None and min(map(sum, carried.values())) > MEDIA_BYTES, carried


def relayed_for(
    relayed: dict[str, tuple[int, int]], participants: tuple[str, ...]
) -> dict[str, tuple[int, int]] | None:
    """Bytes each participant sent and received through its allocation, once coturn has
    logged all of them."""
    found = {p: n for user, n in relayed.items() for p in participants if user.endswith(f":{p}")}
    return found if len(found) == len(participants) else None
