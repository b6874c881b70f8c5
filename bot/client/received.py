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

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from bot.client.keyring import Keyring
from bot.e2ee.media import Codec

# The roster as the signaling server last sent it; only display names are taken from it.
Roster = Callable[[], Sequence[Mapping[str, Any]]]

# No participant has sender index 0 (bot/e2ee/kid.py), so it stands for "nobody verified yet".
NOBODY: Final = 0


class ReceivedTrack:
    """Decrypts (in aiortc's decoder thread) the frames of one received track."""

    def __init__(self, track_id: str, codec: Codec, keyring: Keyring, roster: Roster) -> None:
        self.owner = track_id.rsplit("-", 1)[0]
        self._codec = codec
        self._keyring = keyring
        self._roster = roster
        self.sender_index: int | None = None  # bound once the owner's keys verify, then fixed

    @property
    def name(self) -> str:
        for entry in self._roster():
            if entry.get("participant_id") == self.owner:
                return str(entry.get("name") or "participant")
        return "participant"

    def unprotect(self, data: bytes) -> bytes | None:
        """The owner's decrypted frame, or None (counted by the keyring) for any other."""
        if self.sender_index is None:
            verified = self._keyring.view.peers.get(self.owner)  # keys and index it signed
            self.sender_index = None if verified is None else verified.sender_index
        return self._keyring.unprotect(self._codec, data, self.sender_index or NOBODY)
