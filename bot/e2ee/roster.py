"""What a client believes about everyone's keys, from the rosters a possibly lying server shows.

- A peer's keys are usable only when its announcement verifies under the Ed25519 key it carries,
  for this room, that peer's id and its sender index.
- This client's own entry must carry exactly its own keys and index once it shows any.
- Keys, once verified for a participant id, stay that participant's until a roster arrives
  without that id: new keys for an id that never left can only be the server's.
- A sender index belongs to one participant id for the whole meeting (the hub gives each
  participant the next unused one and never reuses it): two entries with one index, an index
  shown for an id other than the one it was first shown for, or a peer with this client's own
  index can only be the server's, which would otherwise show its frames under someone's name
  (the KID names the sender by index) and make that person's own keys be forgotten.
- The security code exists only while every entry (this client's included) has verified keys;
  until then it is pending.

Breaking the second, third or fourth rule is fatal (``KeysTampered``); an entry whose
announcement is missing or does not verify is only unusable, because a participant may not have
announced yet.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bot.e2ee.announce import KeyAnnouncement
from bot.e2ee.code import security_code
from bot.e2ee.errors import E2EEError, KeysTampered, RosterError
from bot.e2ee.identity import PublicKeys, RosterEntry


@dataclass(frozen=True, slots=True)
class ShownEntry:
    """One roster entry as the server showed it; nothing in it is trusted yet."""

    participant_id: str
    sender_index: int
    name: str
    keys: Mapping[str, object] | None  # the entry's ``keys`` object, None if it has none

    @classmethod
    def from_json(cls, entry: Mapping[str, object]) -> ShownEntry:
        pid, index, keys = entry.get("participant_id"), entry.get("sender_index"), entry.get("keys")
        if not isinstance(pid, str) or not isinstance(index, int) or isinstance(index, bool):
            raise RosterError("an entry lacks a participant id or a sender index")
        return cls(
            pid,
            index,
            str(entry.get("name", pid)),
            keys if isinstance(keys, Mapping) else None,
        )

    @property
    def who(self) -> str:
        return f"{self.name} ({self.participant_id})"

    def announcement(self) -> KeyAnnouncement | None:
        if self.keys is None:
            return None
        try:
            return KeyAnnouncement.from_json(self.keys)
        except E2EEError:
            return None


@dataclass(frozen=True, slots=True)
class RosterView:
    peers: dict[str, RosterEntry]  # the others whose keys verified: the only ones keys go to
    waiting: tuple[str, ...]  # others who have announced no keys yet ("name (id)")
    rejected: tuple[str, ...]  # whose keys do not verify ("name (id)")
    code: str | None  # None (pending) until every entry, this client's too, has verified keys


class KeyBook:
    """Checks each roster against the keys this client has already accepted."""

    def __init__(self, room_id: str, participant_id: str, sender_index: int, own: PublicKeys):
        self._room_id = room_id
        self._me = participant_id
        self._index = sender_index
        self._own = own
        self._known: dict[str, tuple[int, PublicKeys]] = {}
        # Every index ever shown, and whose it was ("name (id)" for the sentence); kept for the
        # meeting's life, across this client's rejoins, unlike ``_known``.
        self._owners: dict[int, tuple[str, str]] = {sender_index: (participant_id, "this device")}

    def view(self, shown: Iterable[ShownEntry]) -> RosterView:
        entries = list(shown)
        ids = [e.participant_id for e in entries]
        if len(set(ids)) != len(ids):
            raise KeysTampered("it showed one participant twice in the roster")
        self._check_indexes(entries)
        # An id that is no longer in the roster has left; if it comes back, it may bring new keys.
        self._known = {pid: known for pid, known in self._known.items() if pid in ids}
        peers: dict[str, RosterEntry] = {}
        waiting: list[str] = []
        rejected: list[str] = []
        verified: list[tuple[str, PublicKeys]] = []
        for entry in entries:
            if entry.participant_id == self._me:
                if entry.keys is not None:
                    self._check_own(entry)
                    verified.append((self._me, self._own))
            elif entry.keys is None:
                waiting.append(entry.who)
            elif (keys := self._check_peer(entry)) is None:
                rejected.append(entry.who)
            else:
                peers[entry.participant_id] = RosterEntry(
                    entry.participant_id, entry.sender_index, keys
                )
                verified.append((entry.participant_id, keys))
        complete = len(verified) == len(entries) and self._me in ids
        return RosterView(
            peers, tuple(waiting), tuple(rejected), security_code(verified) if complete else None
        )

    def _check_indexes(self, entries: list[ShownEntry]) -> None:
        indexes = {e.sender_index for e in entries}
        if len(indexes) != len(entries):
            raise KeysTampered("it showed two participants with one sender index")
        for entry in entries:
            owner, who = self._owners.get(entry.sender_index, (entry.participant_id, ""))
            if owner != entry.participant_id:
                raise KeysTampered(
                    f"it gave sender index {entry.sender_index}, which belonged to {who}, "
                    f"to {entry.who}"
                )
        for entry in entries:
            self._owners.setdefault(entry.sender_index, (entry.participant_id, entry.who))

    def _check_own(self, entry: ShownEntry) -> None:
        announced = entry.announcement()
        if announced is None or announced.keys != self._own or entry.sender_index != self._index:
            raise KeysTampered("it shows this device's own entry with keys that are not its own")

    def _check_peer(self, entry: ShownEntry) -> PublicKeys | None:
        """The entry's verified keys; None if unusable; KeysTampered if they replace others."""
        pid = entry.participant_id
        announced = entry.announcement()
        if announced is not None and not announced.verifies(self._room_id, pid, entry.sender_index):
            announced = None
        shown = None if announced is None else (entry.sender_index, announced.keys)
        known = self._known.get(pid)
        if known is not None and shown != known:
            raise KeysTampered(f"it replaced the keys of {entry.who}, who never left the meeting")
        if shown is None:
            return None
        self._known[pid] = shown
        return shown[1]
