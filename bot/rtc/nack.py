"""Which video packets to ask a publisher for again (RTCP NACK), in work bounded per packet."""

from __future__ import annotations

from aiortc.rtp import RTP_HISTORY_SIZE
from aiortc.utils import uint16_add, uint16_gt


class BoundedNackGenerator:
    """aiortc's ``NackGenerator`` (the packets to ask again for), in work bounded per packet.

    The stock one walks every sequence number between the highest seen and a newer packet's,
    up to 32,767 steps (about 20 ms of Python) for a packet that jumps ahead, and then keeps
    only the last ``RTP_HISTORY_SIZE`` of them; a publisher sending such jumps could stall the
    worker for every room. This one marks only those last ones to begin with; what it reports
    missing is the same.
    """

    def __init__(self) -> None:
        self.max_seq: int | None = None
        self.missing: set[int] = set()

    def add(self, seq: int) -> bool:
        """Note packet ``seq`` arrived; whether packets before it are now found missing."""
        if self.max_seq is None:
            self.max_seq = seq
            return False
        if not uint16_gt(seq, self.max_seq):
            self.missing.discard(seq)
            return False
        gap = (seq - self.max_seq) & 0xFFFF
        for back in range(1, min(gap, RTP_HISTORY_SIZE + 1)):
            self.missing.add(uint16_add(seq, -back))
        self.max_seq = seq
        oldest = uint16_add(seq, -RTP_HISTORY_SIZE)
        for old in [s for s in self.missing if uint16_gt(oldest, s)]:
            self.missing.discard(old)
        return gap > 1
