"""A relay worker process forwarding at a high rate, losing a packet, and serving a stalled peer.

The participants send and read SRTP themselves (``fast_peers.py``), so the test process can
publish thousands of packets a second and see each packet a subscriber gets before any RTP
stack. No timing is asserted: the publisher never runs more than a window ahead of the
subscribers that read, so a loaded machine slows a run down instead of making it lose packets,
and any loss or change is the relay's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.relay.fast_peers import (
    Arrival,
    FastPeer,
    connect,
    pump,
    start_worker,
    udp_drops,
    warm_up,
)
from tests.relay.relay_fakes import SECRET, FakeCore, eventually

pytestmark = pytest.mark.slow

RATE = 3000.0  # packets a second from the one publisher, when the machine keeps up
# Packets the publisher may be ahead of the slowest reading subscriber: well under what the
# worker's socket buffer holds (about 190 such packets), and under the relay's RTP history.
WINDOW = 64
RUN_TIMEOUT = 60.0  # a generous bound on a run of a few seconds


@pytest.fixture
async def core() -> AsyncIterator[FakeCore]:
    """A fake core with a relay worker process connected; the peers it served closed after."""
    fake = FakeCore(SECRET)
    await fake.start()
    worker = await start_worker(fake)
    try:
        yield fake
    finally:
        for peer in fake.clients.values():
            await peer.close()
        worker.terminate()
        await asyncio.wait_for(worker.wait(), 20)
        await fake.stop()


async def run(publisher: FastPeer, first: int, count: int, readers: list[FastPeer]) -> None:
    """Publish ``count`` packets from ``first`` and wait until every reader has the last one."""
    last = first + count - 1
    await asyncio.wait_for(publisher.send(first, count, RATE, readers, WINDOW), RUN_TIMEOUT)
    await eventually(lambda: all(r.highest() == last for r in readers), "the last packet arrived")


def check_exact(sub: FastPeer, sent: dict[int, bytes], first: int, count: int) -> list[Arrival]:
    """``sub``'s packets from ``first`` on: each once, in order, byte for byte as sent, with
    the relay's sequence numbers moving in step with the publisher's."""
    got = [a for a in sub.seen.arrivals if a.number >= first]
    numbers = [a.number for a in got]
    assert numbers == sorted(set(numbers)), f"{sub.name}: reordered or duplicated"
    assert len({a.ssrc for a in got}) == 1, f"{sub.name}: more than one SSRC"
    changed = [a.number for a in got if a.payload != sent[a.number]]
    assert not changed, f"{sub.name}: payloads of packets {changed[:5]} were altered"
    offsets = {(a.seq - a.number) & 0xFFFF for a in got}
    assert len(offsets) == 1, f"{sub.name}: the relay's sequence numbers skip or repeat"
    assert sub.seen.unreadable == 0 and not sub.seen.rtx
    missing = sorted(set(range(first, first + count)) - set(numbers))
    assert not missing, f"{sub.name} lost {len(missing)} packets, e.g. {missing[:5]}"
    return got


async def test_forwarding_at_a_high_rate_is_byte_exact_and_in_order(core: FakeCore) -> None:
    publisher = FastPeer("pub", publish=True)
    subs = [FastPeer("sub1"), FastPeer("sub2")]
    await connect(core, "fast", [publisher, *subs])
    reader = asyncio.create_task(pump([publisher, *subs]))
    try:
        first = await warm_up(publisher, subs)
        before = await core.request("stats")
        await run(publisher, first, 4000, subs)
        after = await core.request("stats")
    finally:
        reader.cancel()
    for sub in subs:
        check_exact(sub, publisher.sent, first, 4000)
    assert after["forwarded_packets"] - before["forwarded_packets"] == 2 * 4000
    assert after["rate_limited_packets"] == 0 and after["foreign_packets"] == 0


async def test_a_packet_lost_to_one_subscriber_is_resent_from_the_relays_history(
    core: FakeCore,
) -> None:
    publisher = FastPeer("pub", publish=True)
    lossy, other = FastPeer("lossy"), FastPeer("other")
    await connect(core, "nack", [publisher, lossy, other])
    reader = asyncio.create_task(pump([publisher, lossy, other]))
    try:
        first = await warm_up(publisher, [lossy, other])
        lost_number = first + 100
        lossy.drop.add(lost_number)
        # Fewer packets after the lost one than the relay keeps (aiortc's history is 128), so
        # the NACK, sent once everything else arrived, asks for one the relay still holds.
        await run(publisher, first, 120, [lossy, other])
        (lost,) = lossy.seen.dropped
        assert lost.number == lost_number
        assert lost_number not in {a.number for a in lossy.seen.arrivals}
        assert lossy.rtx_negotiated, "the relay's offer has no RTX for video"
        lossy.send_nack(lost.ssrc, lost.seq)
        await eventually(lambda: bool(lossy.seen.rtx), "the relay resent over RTX")
        await asyncio.sleep(0.5)  # a second resend, were there one, would show by now
    finally:
        reader.cancel()

    sent = publisher.sent[lost_number]
    ((ssrc, payload),) = lossy.seen.rtx
    assert ssrc != lost.ssrc, "RTX must come on its own SSRC"
    assert int.from_bytes(payload[:2]) == lost.seq, "RTX names another original sequence"
    assert payload[2:] == sent, "the resent payload is not the one that was lost"
    # The other subscriber asked for nothing and got the packet once, and nothing resent.
    got = [a for a in other.seen.arrivals if a.number == lost_number]
    assert [a.payload for a in got] == [sent]
    assert other.seen.rtx == []
    check_exact(other, publisher.sent, first, 120)


async def test_a_subscriber_that_stops_reading_does_not_cost_the_others(
    core: FakeCore,
) -> None:
    publisher = FastPeer("pub", publish=True)
    readers = [FastPeer("sub1"), FastPeer("sub2")]
    stalled = FastPeer("stalled")
    await connect(core, "stall", [publisher, *readers, stalled])
    reader = asyncio.create_task(pump([publisher, *readers, stalled]))
    count = 9000
    try:
        first = await warm_up(publisher, [*readers, stalled])
        stalled.stop_reading(receive_buffer=32 * 1024)
        drops_before = udp_drops(stalled.port())
        before = await core.request("stats")
        sending = asyncio.create_task(run(publisher, first, count, readers))
        # The worker answers its control channel while it forwards into a full socket.
        await eventually(lambda: readers[0].highest() >= first + count // 2, "half the run")
        midway = await core.request("stats")
        await sending
        after = await core.request("stats")
    finally:
        reader.cancel()

    for sub in readers:
        check_exact(sub, publisher.sent, first, count)
    assert midway["ok"] and midway["participants"] == 4
    # The worker sent the stalled subscriber its share too; the kernel dropped it there.
    assert after["forwarded_packets"] - before["forwarded_packets"] == 3 * count
    drops = udp_drops(stalled.port()) - drops_before
    assert drops > count // 2, f"only {drops} of {count} packets were dropped at the stalled peer"
    # Nothing queued up for it in the worker: some 9 MB of packets would have.
    grown = after["rss_bytes"] - before["rss_bytes"]
    assert grown < 4 * 2**20, f"the worker grew by {grown / 2**20:.1f} MiB"
