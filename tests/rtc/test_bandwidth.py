"""The REMB a publisher gets (bot.rtc.bandwidth), from packets whose sending and arrival times
the test chooses: aiortc's real estimator measures them, nothing is mocked."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from itertools import pairwise
from typing import Any

from aiortc.rate import RateCounter, RemoteBitrateEstimator
from aiortc.rtp import RtpPacket

from bot.rtc.bandwidth import MAX_PUBLISH_BITRATE, REPEAT_MS, UplinkFeedback
from bot.rtc.internals.estimator import CompactRateCounter, lean_estimator

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


def test_an_uncongested_uplink_keeps_the_ceiling() -> None:
    """800 kbit/s arriving evenly: the estimator measures it, but a REMB of it would only hold
    the publisher near what it chose to send; with no queue seen, the REMB stays the ceiling."""
    uplink = UplinkFeedback()
    said = feed(uplink, packets(8))
    assert uplink.estimate is not None and 700_000 <= uplink.estimate <= 1_400_000
    assert not uplink.congested
    assert {value for _, value in said} == {MAX_PUBLISH_BITRATE}
    assert len(said) == 8  # once a second


def test_the_first_packet_of_either_kind_names_the_whole_publisher() -> None:
    """One feedback per publisher: its first packet, audio without abs-send-time here, sends
    the ceiling at once, about every SSRC the publisher announced, measured or not."""
    uplink = UplinkFeedback(ssrcs=[0xA0D10, SSRC, SSRC + 1])
    audio = RtpPacket(payload_type=111, sequence_number=1, timestamp=960, ssrc=0xA0D10)
    audio.payload = bytes(60)
    assert uplink.add(audio, 1_000_000) == MAX_PUBLISH_BITRATE
    assert uplink.ssrcs == [0xA0D10, SSRC, SSRC + 1]
    assert uplink.estimate is None
    assert uplink.add(audio, 1_000_020) is None  # and not again before REPEAT_MS


def test_the_ceiling_caps_the_estimate() -> None:
    uplink = UplinkFeedback(ceiling=500_000)
    said = feed(uplink, packets(8))
    assert uplink.estimate is not None and uplink.estimate > 500_000
    assert {value for _, value in said} == {500_000}


def test_a_queue_building_up_lowers_the_remb() -> None:
    """From the fifth second each packet arrives 2 ms later than the one before would have:
    a queue is growing on the path. The estimator sees the delay grow and the REMB falls below
    what is being sent, at once, so the publisher slows down before packets are lost."""
    uplink = UplinkFeedback()
    onset = 500  # the 500th packet, at 5 s

    def queueing(n: int) -> float:
        return 2.0 * max(0, n - onset)

    said = feed(uplink, packets(7, delay=queueing))
    before = [value for at, value in said if at < 1_000_000 + 5000]
    later = [(at, value) for at, value in said if at >= 1_000_000 + 5000]
    assert set(before) == {MAX_PUBLISH_BITRATE}, said
    assert later and min(value for _, value in later) < 800_000, said
    assert uplink.congested
    first_cut = next(at for at, value in later if value < MAX_PUBLISH_BITRATE)
    previous = max(at for at, _ in said if at < first_cut)
    assert first_cut - previous < REPEAT_MS, "the cut waited for the next repeat"


def test_after_a_cut_the_remb_climbs_under_the_uplink_then_frees_it() -> None:
    """Congestion at 5 s (a queue grows for a second at 800 kbit/s) cuts the REMB. The
    publisher obeys and sends 500 kbit/s, on time: the REMB climbs from its cut, slowly, near
    the rate the uplink congested at, and stays under the ceiling. From 12 s the uplink carries
    1.6 Mbit/s on time, far beyond that rate: the REMB is the ceiling again."""
    uplink = UplinkFeedback()
    stream = list(packets(16, delay=lambda n: 2.0 * max(0, min(n, 600) - 500)))
    for n, (packet, _) in enumerate(stream):
        packet.payload = bytes(625 if 600 <= n < 1200 else 2000 if n >= 1200 else 1000)
    said = feed(uplink, iter(stream))

    def between(start: float, end: float) -> list[int]:
        return [v for at, v in said if 1_000_000 + start * 1000 <= at < 1_000_000 + end * 1000]

    cut, obeying, freed = between(5, 6), between(7, 12), between(14, 16)
    assert cut and min(cut) < 800_000, said
    assert obeying and obeying == sorted(obeying) and obeying[-1] > obeying[0], said
    assert max(obeying) < MAX_PUBLISH_BITRATE, said
    assert freed and set(freed) == {MAX_PUBLISH_BITRATE}, said
    assert not uplink.congested


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


def test_the_compact_rate_counter_counts_as_aiortcs() -> None:
    """CompactRateCounter gives aiortc's RateCounter's rates, call for call, through bursts,
    quiet spells shorter and longer than the window, and resets; and an estimator using it
    says what aiortc's own says."""
    rng = random.Random(13)
    stock, compact = RateCounter(1000, 8000), CompactRateCounter(1000, 8000)
    now = 5_000
    for _ in range(20_000):
        now += rng.choice([0, 0, 1, 1, 2, 3, 7, 50, 400, 999, 1000, 1001, 5000])
        if rng.random() < 0.001:
            stock.reset()
            compact.reset()
        elif rng.random() < 0.3:
            assert compact.rate(now) == stock.rate(now), now
        else:
            size = rng.randrange(1, 1300)
            stock.add(size, now)
            compact.add(size, now)
    assert compact.rate(now) == stock.rate(now)

    def said(estimator: RemoteBitrateEstimator) -> list[Any]:
        """What the estimator reports for 20 s of packets, a queue building after the 8th."""
        results = []
        for packet, arrival in packets(20, delay=lambda n: 0.3 * max(0, n - 800)):
            assert packet.extensions.abs_send_time is not None
            size = len(packet.payload)
            results.append(estimator.add(arrival, packet.extensions.abs_send_time, size, SSRC))
        return results

    lean = lean_estimator()
    assert isinstance(lean.incoming_bitrate, CompactRateCounter), "RemoteBitrateEstimator moved"
    found = said(lean)
    assert found == said(RemoteBitrateEstimator())
    assert any(f is not None for f in found), "the estimator never reported"
