"""A lying relay shows Ana's video under Ben's name and Ben's under Ana's (finding 5 of issue 9).

Hana, Ana and Ben meet through a real relay worker process whose control channel passes
through a proxy. Then Oscar joins, and the proxy swaps Ana's and Ben's participant ids in the
msids of every offer the relay sends him. Oscar's client must refuse every frame on those two
tracks (their KIDs name the other sender), record nothing under either name, and still show
Hana's video as Hana's; the three honest clients see nothing wrong.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import av
import pytest

from bot.client.session import ClientSession, MediaOptions
from bot.core.links import parse_link
from bot.rtc.internals import restrict_host_addresses
from tests.support.fakes import user
from tests.support.proxied_relay import proxied_worker
from tests.support.relay_proxy import RecordingProxy
from tests.support.server import serve

pytestmark = pytest.mark.slow

SECRET = "test-relay-secret-" + "r" * 20
WAIT = 40.0
MSID = re.compile(r"a=msid:(\S+) (\S+)-(audio|video)(?=\s)")


def counts(c: ClientSession) -> tuple[int, int, int]:
    """Frames decrypted, dropped (failed to decrypt) and refused (not the shown participant's)."""
    k = c.keyring
    return (0, 0, 0) if k is None else (k.decrypted, k.dropped, k.misattributed)


async def until(
    condition: Callable[[], bool], what: str, clients: dict[str, ClientSession]
) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        seen = {who: counts(c) for who, c in clients.items()}
        assert time.monotonic() < deadline, f"timed out waiting for {what}; counts: {seen}"
        await asyncio.sleep(0.1)


def video_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(container.streams.video[0]))


def offered_to(proxy: RecordingProxy, client: ClientSession) -> bool:
    if client.welcome is None:
        return False
    offers = (json.loads(raw) for raw in proxy.to_core)
    return any(
        m["type"] == "offer" and m["participant"] == client.welcome.participant_id for m in offers
    )


def swap_msids(swap: dict[str, str], honest: set[str], lied: list[str]) -> Callable[[str], str]:
    """A relay's lie: in offers to anyone not in ``honest``, each msid of a participant in
    ``swap`` names the other one instead."""

    def rewrite(text: str) -> str:
        message = json.loads(text)
        if message.get("type") != "offer" or message.get("participant") in honest:
            return text
        message["offer"]["sdp"], n = MSID.subn(
            lambda m: f"a=msid:{swap.get(m[1], m[1])} {swap.get(m[2], m[2])}-{m[3]}",
            message["offer"]["sdp"],
        )
        lied.extend([message["participant"]] * n)
        return json.dumps(message)

    return rewrite


async def test_a_relay_that_swaps_msids_gets_no_frame_shown_under_the_wrong_name(
    tmp_path: Path,
) -> None:
    restrict_host_addresses(["127.0.0.1"])
    env = {"CONCLAVE_RELAY_SECRET": SECRET, "CONCLAVE_RELAY_WORKERS": "0"}
    clients: dict[str, ClientSession] = {}
    tasks: dict[str, asyncio.Future[None]] = {}
    try:
        async with (
            serve(tmp_path, env=env) as server,
            proxied_worker(server, SECRET, WAIT) as proxy,
        ):
            made = await server.app.service.create_room(
                user("hana"), [user("ana"), user("ben"), user("oscar")], "Sync"
            )
            links = {
                "hana": made.host_invite.link.reveal(),
                "ana": made.invites[0].link.reveal(),
                "ben": made.invites[1].link.reveal(),
            }
            honest = MediaOptions(
                video="testsrc", audio="none", activation_delay=0.3, grace_period=2.0
            )
            for who, link in links.items():
                client = ClientSession(parse_link(link), lambda _: None, honest)
                clients[who], tasks[who] = client, asyncio.ensure_future(client.run(None))
                # One at a time, as people arrive: the next joins once the relay has connected
                # this one to the room.
                connected = partial(offered_to, proxy, client)
                await until(connected, f"the relay to connect {who}", clients)
            ids = {w: c.welcome.participant_id for w, c in clients.items() if c.welcome}
            index = {w: c.welcome.sender_index for w, c in clients.items() if c.welcome}

            lied: list[str] = []
            proxy.rewrite = swap_msids(
                {ids["ana"]: ids["ben"], ids["ben"]: ids["ana"]}, set(ids.values()), lied
            )
            record = tmp_path / "rec-oscar"
            oscar = ClientSession(
                parse_link(made.invites[2].link.reveal()),
                lambda _: None,
                MediaOptions(video="none", audio="none", record_dir=record),
            )
            clients["oscar"] = oscar
            tasks["oscar"] = asyncio.ensure_future(oscar.run(None))

            await until(lambda: counts(oscar)[2] > 30, "Oscar to refuse relabelled frames", clients)
            await until(lambda: counts(oscar)[0] > 30, "Oscar to decrypt Hana's frames", clients)
            before = {w: counts(c) for w, c in clients.items()}
            await until(
                lambda: all(counts(clients[w])[0] > before[w][0] + 30 for w in links),
                "the honest clients to keep decrypting",
                clients,
            )

            # The attack ran: Oscar was offered Ana's and Ben's tracks under each other's ids.
            assert oscar.welcome is not None and lied
            assert set(lied) == {oscar.welcome.participant_id}
            assert oscar.media is not None
            bound = {r.owner: r.sender_index for r in oscar.media.received}
            # Each track is bound to the participant it is shown under, whatever it carries.
            assert bound == {ids[w]: index[w] for w in links}, bound
            # The honest clients refused nothing.
            for who in links:
                assert counts(clients[who])[2] == 0, who
            leaving = tasks.pop("oscar")
            leaving.cancel()  # Oscar leaves: his recorders finish and close their files
            await asyncio.gather(leaving, return_exceptions=True)
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        restrict_host_addresses([])

    # Nothing of Ana's or Ben's was decrypted, decoded or recorded under either name; Hana's
    # video, which the relay left alone, was.
    decrypted, _, refused = counts(oscar)
    files = sorted(record.glob("*.video.webm"))
    assert [p.name.split("-")[0] for p in files] == ["Hana"], files
    assert video_frames(files[0]) >= 15
    assert refused > 30 and decrypted > 30
