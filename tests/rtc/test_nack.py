"""The relay's NACK bookkeeping asks for what aiortc's would, in work bounded per packet."""

from __future__ import annotations

import random
import time

from aiortc.rtcrtpreceiver import NackGenerator
from aiortc.rtp import RTP_HISTORY_SIZE, RtpPacket

from bot.rtc.nack import BoundedNackGenerator


def test_bounded_nack_generator_reports_what_aiortc_does() -> None:
    """Same missing set and same answer as aiortc.rtcrtpreceiver.NackGenerator, packet by
    packet, through losses, reordering, wrap-around and jumps; and a jump costs a bounded walk
    (the stock one takes about 20 ms per 32,767-packet jump, over 20 s for these 1,000)."""
    rng = random.Random(5)
    stock, ours = NackGenerator(), BoundedNackGenerator()
    seq = 65000
    for _ in range(5000):
        # Far jumps are rare: each costs the stock generator some 20 ms.
        far = rng.random() < 0.01
        step = rng.choice([32767, 40000] if far else [1, 1, 1, 2, 3, 5, -1, -3, 40, 129, 1000])
        seq = (seq + step) & 0xFFFF
        expected = stock.add(RtpPacket(sequence_number=seq))
        assert ours.add(seq) == expected and ours.missing == stock.missing, seq
    jumps = BoundedNackGenerator()
    began = time.monotonic()
    for n in range(1000):
        jumps.add(n * 32767 & 0xFFFF)
    assert time.monotonic() - began < 5, "a sequence-number jump walks the whole gap"
    assert len(jumps.missing) <= RTP_HISTORY_SIZE
