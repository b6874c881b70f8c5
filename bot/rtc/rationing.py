"""How many retransmissions the NACKs of a subscriber can make a relay worker send."""

from __future__ import annotations

from collections.abc import Iterable


class RetransmissionCredit:
    """Retransmissions never outnumber the packets sent plus one history's worth.

    A NACK asks again for the sequence numbers it lists, duplicates included, so one small RTCP
    packet could cost thousands of sends. A NACK's numbers are deduplicated and each resend
    spends a credit; a packet sent earns one, up to ``limit`` (the sender's history size).
    ``refused`` counts the numbers asked for beyond that.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._credit = limit
        self.refused = 0

    def earn(self, packets: int = 1) -> None:
        self._credit = min(self._limit, self._credit + packets)

    def grant(self, asked: Iterable[int]) -> list[int]:
        """The sequence numbers of ``asked`` to resend, in order, once each."""
        wanted = list(dict.fromkeys(asked))
        granted = wanted[: self._credit]
        self._credit -= len(granted)
        self.refused += len(wanted) - len(granted)
        return granted
