"""A subscriber's send lines, each reused for a new track once the one it carried has ended.

Everyone who joins adds an audio and a video line to every other participant's connection, and
aiortc never drops a negotiated m-section nor recycles its slot. Left at that, every offer and
answer in a meeting grows by some 1.2 kB per person who ever joined, until the descriptions
outgrow what signaling carries (about 80 people's lines) and the people still there are cut off.
So a line whose track ended goes ``inactive`` and waits, and the next track of its kind for the
same subscriber takes it under the new owner's msid, as other SFUs do.

A line is reused only once the subscriber has answered the offer that made it inactive: a
browser then sees it come back as a new track (``track`` event, new stream) rather than a
stream whose id changes under a playing track. It is not stopped (no RTCP BYE): aiortc ends a
receiver for good on a BYE. Its numbering goes on from the last packet it sent, since the SSRC
and so the subscriber's SRTP rollover counter stay the same.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiortc import RTCPeerConnection, RTCRtpTransceiver

from bot.rtc import internals
from bot.rtc.peer import prefer_codec
from bot.rtc.sending import SenderTap, SilentTrack


@dataclass(eq=False)
class SendLine:
    """A transceiver the relay sends one publisher's track on, with its writer."""

    transceiver: RTCRtpTransceiver
    tap: SenderTap

    @property
    def next_sequence(self) -> int | None:
        """Where a reused line's sequence numbers go on; None for a line that never sent."""
        fast = self.tap.fast
        return None if fast is None or fast.sequence < 0 else (fast.sequence + 1) & 0xFFFF


class SendLines:
    """One subscriber's lines whose tracks ended, waiting to carry another."""

    def __init__(self) -> None:
        self._idle: list[SendLine] = []

    def take(self, pc: RTCPeerConnection, kind: str, owner: str) -> tuple[SendLine, bool]:
        """A line for ``owner``'s ``kind`` track, and whether it is new (an m-line more)."""
        named = SilentTrack(kind, f"{owner}-{kind}")  # its id is the msid's track id
        for line in self._idle:
            transceiver = line.transceiver
            if transceiver.kind == kind and transceiver.currentDirection == "inactive":
                self._idle.remove(line)
                transceiver.sender.replaceTrack(named)
                internals.set_stream_id(transceiver.sender, owner)
                transceiver.direction = "sendonly"
                return line, False
        transceiver = pc.addTransceiver(named, direction="sendonly")
        internals.set_stream_id(transceiver.sender, owner)  # a=msid:<owner> <owner>-<kind>
        prefer_codec(transceiver)
        return SendLine(transceiver, SenderTap(transceiver)), True

    def give_back(self, line: SendLine) -> None:
        """``line``'s track ended: inactive at the next offer, then free for another."""
        internals.on_keyframe_request(line.transceiver.sender, _nobody)
        line.transceiver.direction = "inactive"
        self._idle.append(line)


def _nobody() -> None:
    """A key frame asked for on a line that carries nothing goes to nobody."""
