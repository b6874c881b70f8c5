"""The REMB a publisher gets (bot.rtc.bandwidth), from packets whose sending and arrival times
the test chooses: aiortc's real estimator measures them, nothing is mocked."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import pairwise

from aiortc.rtp import RtpPacket

from bot.rtc.bandwidth import MAX_PUBLISH_BITRATE, REPEAT_MS, UplinkFeedback

SSRC = 0x1234
PAYLOAD = bytes(1000)  # 100 packets a second of these: 800 kbit/s


def steady(n: int) -> float:
    return 0.0


def packets(
    seconds: float, rate: int = 100, stamped: bool = True, delay: Callable[[int], float] = steady
) -> Iterator[tuple[RtpPacket, int]]:
    """``rate`` packets a second for ``seconds``, each with its arrival time in ms: sent every
    1/rate s (abs-send-time, 6.18 fixed point seconds), arriving ``delay(n)`` ms later."""
    for n in range(int(seconds * rate)):
        sent = n / rate
        packet = RtpPacket(
            payload_type=96, sequence_number=n & 0xFFFF, timestamp=n * 900, ssrc=SSRC
        )
        packet.payload = PAYLOAD
        if stamped:
            packet.extensions.abs_send_time = int(sent * (1 << 18)) & 0xFFFFFF
        yield packet, 1_000_000 + round(sent * 1000 + 20 + delay(n))


def feed(uplink: UplinkFeedback, stream: Iterator[tuple[RtpPacket, int]]) -> list[tuple[int, int]]:
    """Every (arrival ms, bit/s) the feedback said to send."""
    said: list[tuple[int, int]] = []
    for packet, arrival in stream:
        value = uplink.add(packet, arrival)
        if value is not None:
            said.append((arrival, value))
    return said


def test_the_ceiling_at_once_then_repeated_each_second() -> None:
    """Before it has measured anything (and without abs-send-time, never), the REMB is the
    relay's ceiling, sent with the first packet and repeated every REPEAT_MS."""
    uplink = UplinkFeedback()
    said = feed(uplink, packets(3.5, stamped=False))
    assert [value for _, value in said] == [MAX_PUBLISH_BITRATE] * 4
    gaps = [b - a for (a, _), (b, _) in pairwise(said)]
    assert all(REPEAT_MS <= gap <= REPEAT_MS + 10 for gap in gaps), gaps  # 10 ms between packets
    assert uplink.estimate is None
    assert uplink.ssrcs == [SSRC]


def test_the_measured_uplink_replaces_the_ceiling() -> None:
    """800 kbit/s arriving evenly: once the estimator has measured it, the REMB follows what the
    uplink was seen to carry, far under the ceiling, and says so without waiting a second."""
    uplink = UplinkFeedback()
    said = feed(uplink, packets(8))
    assert said[0][1] == MAX_PUBLISH_BITRATE
    measured = [(at, value) for at, value in said if value < MAX_PUBLISH_BITRATE]
    assert measured, f"no estimate reported: {said}"
    assert all(700_000 <= value <= 1_400_000 for _, value in measured), measured
    before = max(at for at, value in said if value == MAX_PUBLISH_BITRATE)
    assert measured[0][0] - before < REPEAT_MS, "the drop waited for the next repeat"


def test_the_ceiling_caps_the_estimate() -> None:
    uplink = UplinkFeedback(ceiling=500_000)
    said = feed(uplink, packets(8))
    assert uplink.estimate is not None and uplink.estimate > 500_000
    assert {value for _, value in said} == {500_000}


def test_a_queue_building_up_lowers_the_remb() -> None:
    """From the fifth second each packet arrives 2 ms later than the one before would have:
    a queue is growing on the path. The estimator sees the delay grow and the REMB falls below
    what is being sent, so the publisher slows down before packets are lost."""
    uplink = UplinkFeedback()
    onset = 500  # the 500th packet, at 5 s

    def queueing(n: int) -> float:
        return 2.0 * max(0, n - onset)

    said = feed(uplink, packets(7, delay=queueing))
    settled = [value for at, value in said if at < 1_000_000 + 5000 and value < MAX_PUBLISH_BITRATE]
    later = [value for at, value in said if at >= 1_000_000 + 5000]
    assert settled and later, said
    assert min(later) < 0.9 * settled[-1] and min(later) < 800_000, said


def test_a_see_sawing_publisher_gets_at_most_five_rembs_a_second() -> None:
    """A publisher whose packets, every 2 s, shrink from 1,200 bytes to 10 while each arrives
    1 ms later than the last, then start over: its throughput keeps falling while a queue
    seems to grow, so each new estimate is lower than the last (over a hundred REMBs in 10 s
    without the gap). The relay sends at most one REMB per 200 ms, never above the ceiling."""
    rate, cycle = 500, 1000
    uplink = UplinkFeedback()
    stream = list(packets(10, rate=rate, delay=lambda n: 1.0 * (n % cycle)))
    for n, (packet, _) in enumerate(stream):
        packet.payload = bytes(max(10, 1200 - 1190 * (n % cycle) // cycle))
    said = feed(uplink, iter(stream))
    assert len(said) <= 10 * 5 + 1, len(said)
    assert all(b - a >= 200 for (a, _), (b, _) in pairwise(said))
    assert all(0 < value <= MAX_PUBLISH_BITRATE for _, value in said)
