"""A track the relay forwards, bound to the participant it is shown under.

The relay names each forwarded track ``<participant>-<kind>`` (its msid) and the client shows
and records the track under that participant's name; but the relay could name any track after
anyone. What it cannot change is a frame's SFrame KID, which carries the sender index of the
key the frame is encrypted under, and each participant signs its sender index in its key
announcement. So the track is bound to the sender index that its named owner's verified
announcement states, and a frame whose KID names anyone else is refused before it is decrypted
or decoded, counted as ``Keyring.misattributed``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from aiortc.sdp import SessionDescription

from bot.client.keyring import Keyring
from bot.e2ee.media import Codec
from bot.rtc.profile import PROFILE

# The roster as the signaling server last sent it; only display names are taken from it.
Roster = Callable[[], Sequence[Mapping[str, Any]]]

SENDING: Final = ("sendonly", "sendrecv")  # the relay's side: lines it sends media on
# No participant has sender index 0 (bot/e2ee/kid.py), so it stands for "nobody verified yet".
NOBODY: Final = 0


class ReceivedTrack:
    """Decrypts (in aiortc's decoder thread) the frames of one received track."""

    def __init__(self, track_id: str, codec: Codec, keyring: Keyring, roster: Roster) -> None:
        self._codec = codec
        self._keyring = keyring
        self._roster = roster
        self._binding = threading.Lock()
        self.rebind(track_id)

    def rebind(self, track_id: str) -> None:
        """Show the track under the owner ``track_id`` names: at first, and again when the
        relay reuses the line for someone else's track (``bot.relay.lines``). The new owner's
        frames come only after the client's answer naming it, so none is lost to the old
        binding; one of the old owner's still being decoded is refused as misattributed."""
        with self._binding:  # the decoder thread binds the index, see unprotect
            self.track_id = track_id
            # Whose it is and, once that owner's keys verify, the sender index it signed.
            self._bound: tuple[str, int | None] = (track_id.rsplit("-", 1)[0], None)

    @property
    def owner(self) -> str:
        return self._bound[0]

    @property
    def sender_index(self) -> int | None:
        return self._bound[1]

    @property
    def name(self) -> str:
        for entry in self._roster():
            if entry.get("participant_id") == self.owner:
                return str(entry.get("name") or "participant")
        return "participant"

    def unprotect(self, data: bytes) -> bytes | None:
        """The owner's decrypted frame, or None (counted by the keyring) for any other."""
        bound = self._bound
        owner, index = bound
        if index is None:
            verified = self._keyring.view.peers.get(owner)  # keys and index it signed
            if verified is not None:
                index = verified.sender_index
                with self._binding:
                    if self._bound is bound:  # not named again meanwhile
                        self._bound = (owner, index)
        return self._keyring.unprotect(self._codec, data, index or NOBODY)


def forwarded_track_ids(sdp: str) -> dict[str, str]:
    """A relay offer's lines that carry a track, by mid: the track id its msid names."""
    description = SessionDescription.parse(sdp)
    found = {}
    for media in description.media:
        track_id = description.webrtc_track_id(media) if media.kind in PROFILE else None
        if track_id is not None and media.rtp.muxId and media.direction in SENDING:
            found[media.rtp.muxId] = track_id
    return found
