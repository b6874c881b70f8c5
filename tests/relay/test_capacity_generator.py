"""The capacity bench's load generator (bench/capacity) against a real relay worker process.

The generator's participants negotiate with aiortc and then send and receive SRTP themselves;
these tests show that what it reports is true: every payload a subscriber counts is the exact
bytes its publisher sent, and a packet the publisher skips on purpose shows up as exactly one
lost packet at each subscriber, not zero and not more. No timing is asserted.
"""

from __future__ import annotations

import pytest

from bench.capacity import wire
from bench.capacity.core import REPO
from bench.capacity.session import Case, Session

pytestmark = pytest.mark.slow

RATE = 60.0  # video packets a second per publisher: far below any limit


async def test_payloads_arrive_byte_exact_and_a_dropped_packet_is_one_loss_per_subscriber() -> None:
    # One publisher (audio and video) and two subscribers; with two generator processes the
    # publisher shares its process with one subscriber and not with the other.
    case = Case("fanout", "1 x 2", 1, 1, 2, ("video", "audio"))
    session = Session(case, REPO, workers=1, generators=2)
    try:
        await session.open(verify=True)
        await session.set_rates(RATE)
        await session.wait_flowing()
        video = wire.stream_number(session.members[0].number, "video")
        step = await session.measure(RATE, 2.0, drop={video: 10})
    finally:
        await session.close()

    assert step.missing_flows == 0
    assert step.delivered_per_s > 0
    # Every packet received was rebuilt from its index and compared byte for byte.
    assert step.mismatched == 0
    assert step.verified > 2 * RATE  # both subscribers, at least a second of video
    # The one skipped video packet is missing at each of the two subscribers; audio is whole.
    assert step.lost == 2
    assert 0 < step.loss_pct < 5


def test_a_changed_byte_is_not_the_payload_that_was_sent() -> None:
    for video, payload in (
        (True, wire.video_payload(3, 10, True, 123)),  # a key frame's first packet
        (True, wire.video_payload(3, 12, False, 123)),
        (False, wire.audio_payload(2, 7, 456)),
    ):
        assert wire.payload_matches(video, payload)
        for at in (0, len(payload) // 2, len(payload) - 1):
            changed = bytearray(payload)
            changed[at] ^= 0x01
            assert not wire.payload_matches(video, bytes(changed)), (video, at)
        assert not wire.payload_matches(video, payload + b"\x00")
        assert not wire.payload_matches(video, payload[:-1])
