"""A participant's end-to-end encryption state, driven by the roster and by key messages.

- Its keys are announced once, signed (``announcement``), and kept for the whole meeting, across
  rejoins, so that the others never see new keys for this participant id.
- Sender keys go only to peers whose announcements verify, and only while this client's own
  roster entry shows its own keys and every entry has verified keys, i.e. while it shows a
  security code: a key that a lying server gets is one whose sender shows a code the honest
  participants do not. Rotations that happen meanwhile are owed and sent once that holds.
- When this client first sees the others, it sends each of them its own (brand-new) key.
- When someone joins later, it ratchets and sends the ratcheted key to the newcomer only; the
  others follow the ratchet by themselves when frames with the next step arrive.
- When someone leaves or is kicked, it draws a fresh key and sends it to everyone who remains.
- A roster that only a lying server can show (``KeysTampered``) ends it: it sends nothing more.
Frames are encrypted in the event loop and decrypted in aiortc's decoder threads, hence the lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from bot.e2ee.announce import announce
from bot.e2ee.attribution import frame_sender_index
from bot.e2ee.errors import E2EEError, KeysTampered
from bot.e2ee.identity import MeetingKeys, RosterEntry
from bot.e2ee.media import Codec, protect, unprotect
from bot.e2ee.roster import KeyBook, RosterView, ShownEntry
from bot.e2ee.senderkeys import SenderKey, SenderKeys
from bot.e2ee.transport import KeyReceiver, message_from_text, message_to_text, seal_sender_key

log = logging.getLogger(__name__)

# Key messages kept from senders whose keys this client has not verified yet (they may arrive
# just before the roster that verifies them): per sender, and in all, the oldest dropped first,
# so that nobody who never announces keys can crowd out everyone else's.
WAITING_PER_SENDER = 8
WAITING_TOTAL = 64


@dataclass(frozen=True)
class Outgoing:
    """A key message for one recipient: the hub's ``key`` envelope fields."""

    to: str
    payload: str


class Keyring:
    def __init__(
        self,
        room_id: str,
        participant_id: str,
        sender_index: int,
        *,
        activation_delay: float = 1.0,
        grace_period: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.room_id = room_id
        self.participant_id = participant_id
        self._clock = clock
        self._identity = MeetingKeys.generate()
        self._announcement = announce(self._identity, room_id, participant_id, sender_index)
        self._book = KeyBook(room_id, participant_id, sender_index, self._identity.public())
        self._keys = SenderKeys(
            sender_index, activation_delay=activation_delay, grace_period=grace_period
        )
        self._receiver = KeyReceiver(
            room_id=room_id, participant_id=participant_id, keys=self._identity
        )
        self._lock = threading.Lock()
        self._roster: dict[str, RosterEntry] = {}
        self._owed: dict[str, SenderKey] = {}  # the newest key each peer is still to be sent
        self._seen_anyone = False
        self._waiting: deque[tuple[str, str]] = deque()  # (sender, payload), oldest first
        self._rejected: set[str] = set()
        self.view = RosterView({}, (), (), None)
        self.tampered: KeysTampered | None = None
        self.rotations = 0
        self.dropped = 0
        self.decrypted = 0
        self.misattributed = 0

    @property
    def sender_keys(self) -> SenderKeys:
        return self._keys

    def announcement(self) -> dict[str, str]:
        """The ``keys`` message's fields: both public keys and their signed statement."""
        return self._announcement.to_json()

    @property
    def code(self) -> str | None:
        """The security code of the last roster; None while it is pending."""
        return self.view.code

    # --- membership ----------------------------------------------------------------------

    def on_roster(self, roster: Iterable[Mapping[str, object]]) -> list[Outgoing]:
        """Apply a roster update; the key messages to send because of it.

        Raises ``KeysTampered`` (and sends nothing, then or later) if the roster shows this
        client keys that are not its own, or replaces a peer's keys while it stays."""
        if self.tampered is not None:
            raise self.tampered
        shown = [ShownEntry.from_json(entry) for entry in roster]
        try:
            view = self._book.view(shown)
        except KeysTampered as err:
            with self._lock:
                self.tampered = err
                self._owed.clear()
            raise
        for who in set(view.rejected) - self._rejected:
            log.warning("the keys shown for %s do not verify; they are not used", who)
        self._rejected = set(view.rejected)
        current = view.peers
        joined = [pid for pid in current if pid not in self._roster]
        left = [pid for pid in self._roster if pid not in current]
        now = self._clock()
        with self._lock:
            for pid in left:
                self._keys.remove_peer(self._roster[pid].sender_index)
            self._roster = current
            self.view = view
            if left:
                key, recipients = self._keys.on_leave(now), list(current)
                self.rotations += 1
            elif joined and self._seen_anyone:
                key, recipients = self._keys.on_join(now), joined
            elif joined:
                # Our first look at the room: our key is new, so everyone may have it as it is.
                key, recipients = self._keys.latest_key, joined
            else:
                key, recipients = None, []
            if current:
                self._seen_anyone = True
            # A newer key replaces an owed one: it is a ratchet of it, or goes to everyone.
            self._owed = {pid: k for pid, k in self._owed.items() if pid in current}
            if key is not None:
                self._owed.update(dict.fromkeys(recipients, key))
            messages = []
            if view.code is not None:
                messages = [self._seal(k, pid) for pid, k in self._owed.items()]
                self._owed = {}
        for sender, payload in self._drain_waiting({e.participant_id for e in shown}):
            self.on_key(sender, payload)
        return messages

    def _seal(self, key: SenderKey, recipient: str) -> Outgoing:
        sealed = seal_sender_key(
            key,
            room_id=self.room_id,
            sender_id=self.participant_id,
            sender_keys=self._identity,
            recipient_id=recipient,
            recipient=self._roster[recipient].keys,
        )
        return Outgoing(recipient, message_to_text(sealed))

    def _drain_waiting(self, present: set[str]) -> list[tuple[str, str]]:
        """The waiting messages whose senders are now verified; those of senders no longer in
        the roster at all are dropped: they left."""
        ready = [(s, p) for s, p in self._waiting if s in self._roster]
        self._waiting = deque(
            (s, p) for s, p in self._waiting if s in present and s not in self._roster
        )
        return ready

    def _wait(self, sender: str, payload: str) -> None:
        mine = [i for i, (s, _) in enumerate(self._waiting) if s == sender]
        if len(mine) >= WAITING_PER_SENDER:
            del self._waiting[mine[0]]
        elif len(self._waiting) >= WAITING_TOTAL:
            self._waiting.popleft()
        self._waiting.append((sender, payload))

    def on_key(self, sender: str, payload: str) -> None:
        """A key message from ``sender``; bad ones are counted and ignored, never fatal."""
        if sender not in self._roster:
            self._wait(sender, payload)
            return
        try:
            with self._lock:
                key = self._receiver.open(message_from_text(payload), self._roster)
                self._keys.add_peer_key(key, self._clock())
        except E2EEError as err:
            log.warning("rejected a key message from %s: %s", sender, err.code)

    def rejoin(self) -> None:
        """After a dropped connection: the others forgot this client's key when it left, and
        may have been joined by people who must not get the old one, so start afresh. The
        identity and what it knows of the others' keys stay: they hold for the whole meeting."""
        with self._lock:
            self._keys.restart(self._clock())
            self._roster = {}
            self._owed = {}
            self._seen_anyone = False
            self.view = RosterView({}, (), (), None)

    # --- frames --------------------------------------------------------------------------

    def protect(self, codec: Codec, frame: bytes) -> bytes:
        now = self._clock()
        with self._lock:
            return protect(codec, frame, lambda md, pt: self._keys.encrypt(md, pt, now))

    def unprotect(self, codec: Codec, data: bytes, sender_index: int | None = None) -> bytes | None:
        """The encoded frame, or None (counted) if it does not decrypt.

        ``sender_index`` is the sender a received track is bound to (the index its owner signed
        in its key announcement): a frame whose KID names another sender is refused before
        decryption and counted apart, as misattributed; a relay put it on a track shown under
        someone else's name.
        """
        if sender_index is not None and frame_sender_index(codec, data) not in (None, sender_index):
            self.misattributed += 1
            return None
        now = self._clock()
        try:
            with self._lock:
                plain = unprotect(codec, data, lambda f, md: self._keys.decrypt(f, md, now))
        except E2EEError:
            self.dropped += 1
            return None
        self.decrypted += 1
        return plain

    def tick(self) -> None:
        with self._lock:
            self._keys.tick(self._clock())
