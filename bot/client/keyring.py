"""A participant's end-to-end encryption state, driven by the roster and by key messages.

- When this client first sees the others, it sends each of them its own (brand-new) key.
- When someone joins later, it ratchets and sends the ratcheted key to the newcomer only; the
  others follow the ratchet by themselves when frames with the next step arrive.
- When someone leaves or is kicked, it draws a fresh key and sends it to everyone who remains.
Frames are encrypted in the event loop and decrypted in aiortc's decoder threads, hence the lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bot.e2ee.code import security_code
from bot.e2ee.errors import E2EEError
from bot.e2ee.identity import MeetingKeys, PublicKeys, RosterEntry
from bot.e2ee.media import Codec, protect, unprotect
from bot.e2ee.senderkeys import SenderKey, SenderKeys
from bot.e2ee.transport import KeyReceiver, message_from_text, message_to_text, seal_sender_key

log = logging.getLogger(__name__)


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
    ) -> None:
        self.room_id = room_id
        self.participant_id = participant_id
        self._identity = MeetingKeys.generate()
        self._keys = SenderKeys(
            sender_index, activation_delay=activation_delay, grace_period=grace_period
        )
        self._receiver = KeyReceiver(
            room_id=room_id, participant_id=participant_id, keys=self._identity
        )
        self._lock = threading.Lock()
        self._roster: dict[str, RosterEntry] = {}
        self._seen_anyone = False
        self._waiting: list[tuple[str, str]] = []  # key messages from senders not yet rostered
        self.rotations = 0
        self.dropped = 0
        self.decrypted = 0

    @property
    def sender_keys(self) -> SenderKeys:
        return self._keys

    def public_keys(self) -> dict[str, str]:
        return self._identity.public().to_json()

    # --- membership ----------------------------------------------------------------------

    def security_code(self, roster: Iterable[dict[str, Any]]) -> str | None:
        """The code over everyone's (id, Ed25519 key); None until everyone announced keys."""
        pairs = []
        for entry in roster:
            keys = _public_keys(entry)
            if keys is None:
                return None
            pairs.append((str(entry["participant_id"]), keys.ed25519))
        return security_code(pairs) if pairs else None

    def on_roster(self, roster: Iterable[dict[str, Any]]) -> list[Outgoing]:
        """Apply a roster update; the key messages to send because of it."""
        current: dict[str, RosterEntry] = {}
        for entry in roster:
            pid = str(entry["participant_id"])
            keys = _public_keys(entry)
            if pid == self.participant_id or keys is None:
                continue
            current[pid] = RosterEntry(pid, int(entry["sender_index"]), keys)
        joined = [pid for pid in current if pid not in self._roster]
        left = [pid for pid in self._roster if pid not in current]
        now = time.monotonic()
        with self._lock:
            for pid in left:
                self._keys.remove_peer(self._roster[pid].sender_index)
            self._roster = current
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
            messages = [self._seal(key, pid) for pid in recipients] if key else []
        for sender, payload in self._drain_waiting():
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

    def _drain_waiting(self) -> list[tuple[str, str]]:
        ready = [(s, p) for s, p in self._waiting if s in self._roster]
        self._waiting = [(s, p) for s, p in self._waiting if s not in self._roster]
        return ready

    def on_key(self, sender: str, payload: str) -> None:
        """A key message from ``sender``; bad ones are counted and ignored, never fatal."""
        if sender not in self._roster:
            if len(self._waiting) < 64:
                self._waiting.append((sender, payload))
            return
        try:
            with self._lock:
                key = self._receiver.open(message_from_text(payload), self._roster)
                self._keys.add_peer_key(key, time.monotonic())
        except E2EEError as err:
            log.warning("rejected a key message from %s: %s", sender, err.code)

    def rejoin(self) -> None:
        """After a dropped connection: the others forgot this client's key when it left, and
        may have been joined by people who must not get the old one, so start afresh."""
        with self._lock:
            self._keys.on_leave(time.monotonic())
            self._roster = {}
            self._seen_anyone = False

    # --- frames --------------------------------------------------------------------------

    def protect(self, codec: Codec, frame: bytes) -> bytes:
        now = time.monotonic()
        with self._lock:
            return protect(codec, frame, lambda md, pt: self._keys.encrypt(md, pt, now))

    def unprotect(self, codec: Codec, data: bytes) -> bytes | None:
        """The encoded frame, or None (counted) if it does not decrypt."""
        now = time.monotonic()
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
            self._keys.tick(time.monotonic())


def _public_keys(entry: dict[str, Any]) -> PublicKeys | None:
    """An entry's announced keys; None until announced, or if they do not parse (the hub
    checks them, but a client must not fall over because a server sent it garbage)."""
    keys = entry.get("keys")
    if not isinstance(keys, dict):
        return None
    try:
        return PublicKeys.from_json(keys)
    except E2EEError:
        log.warning("ignoring unusable public keys of %s", entry.get("participant_id"))
        return None
