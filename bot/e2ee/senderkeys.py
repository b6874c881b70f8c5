"""Sender keys (RFC 9605 section 5.1): each participant encrypts with its own key.

- On a join, every sender ratchets its key one step and gives the newcomer only the ratcheted
  key: the ratchet is one-way, so the newcomer cannot decrypt anything sent before. With no key
  pending, the sender uses the ratcheted key at once: the others follow a ratchet by themselves,
  and the newcomer decrypts nothing until its key arrives anyway, so waiting would only postpone
  the newcomer's first frame. With a key pending, it ratchets that one, which keeps its deadline.
- On a leave or kick, every remaining sender draws a fresh random key (next generation) and gives
  it only to those who remain: the leaver's old keys say nothing about it.
- A sender uses a leave's new key only ``activation_delay`` seconds after creating it, so that
  peers hold it by then. A newer key that replaces a pending one (a join's ratchet of it, or the
  next leave's key) keeps the pending one's deadline, so the key a leave calls for (or a newer
  one) is in use at most ``activation_delay`` after it, however joins and leaves interleave.
- Receivers that already hold an earlier key of the same generation follow a ratchet by
  themselves when frames with the next step's KID arrive.
- A receiver keeps a superseded key for ``grace_period`` seconds (frames under it may still be in
  flight), then deletes it.

Times are passed in as ``now``, in monotonic seconds, by the caller.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from bot.e2ee.errors import KeyConflict, SFrameError, StaleSenderKey
from bot.e2ee.header import decode_header
from bot.e2ee.kdf import ratchet
from bot.e2ee.kid import KeyId
from bot.e2ee.secretkey import SecretKey
from bot.e2ee.sframe import SFrameContext
from bot.e2ee.suites import DEFAULT_SUITE, CipherSuite, suite_params

DEFAULT_ACTIVATION_DELAY: Final = 1.0
DEFAULT_GRACE_PERIOD: Final = 10.0
# How many ratchet steps a receiver follows by itself. A sender ratchets once per join, so this
# bounds joins between two frames of one sender; it also bounds the work a forged KID can cause.
DEFAULT_MAX_RATCHET_GAP: Final = 256


@dataclass(frozen=True, slots=True)
class SenderKey:
    """One sender's base key at one (generation, ratchet step): what travels to a peer."""

    id: KeyId
    suite: CipherSuite
    base_key: SecretKey

    @property
    def kid(self) -> int:
        return self.id.kid

    def ratcheted(self) -> SenderKey:
        params = suite_params(self.suite)
        return SenderKey(
            self.id.next_step(), self.suite, SecretKey(ratchet(params, self.base_key.reveal()))
        )


def frame_key_id(frame: bytes) -> KeyId:
    """Who sent ``frame`` and under which key, from its header; authentic only after decrypt."""
    key_id = KeyId.parse(decode_header(frame)[0])
    if key_id is None:
        raise SFrameError("KID outside Conclave's layout")
    return key_id


@dataclass(slots=True)
class _Peer:
    latest: KeyId | None = None
    # Newest key held per generation: ratchets only go forward from it. Older generations keep
    # theirs until its KID expires: a sender may activate a ratchet step of one just as it
    # creates the next generation (a rotation that comes after the pending key's deadline).
    bases: dict[int, SenderKey] = field(default_factory=dict)
    # Installed KIDs and when they expire (infinity for the newest one).
    expiry: dict[int, float] = field(default_factory=dict)


class SenderKeys:
    """One participant's own sending key and the keys it holds for the other senders."""

    def __init__(
        self,
        sender_index: int,
        *,
        suite: int = DEFAULT_SUITE,
        activation_delay: float = DEFAULT_ACTIVATION_DELAY,
        grace_period: float = DEFAULT_GRACE_PERIOD,
        max_ratchet_gap: int = DEFAULT_MAX_RATCHET_GAP,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        if not 0 <= activation_delay <= grace_period:
            # Receivers must keep an old key at least as long as a sender may still use it.
            raise ValueError("need 0 <= activation_delay <= grace_period")
        self._suite = CipherSuite(suite)
        self._params = suite_params(suite)
        self._delay = activation_delay
        self._grace = grace_period
        self._max_gap = max_ratchet_gap
        self._random = random_bytes
        first = SenderKey(KeyId(sender_index, 0, 0), self._suite, self._fresh_key())
        self._sending = SFrameContext(self._suite)
        self._sending.add_send_key(first.kid, first.base_key)
        self._current = first
        self._pending: SenderKey | None = None
        self._pending_at = math.inf
        self._receiving = SFrameContext(self._suite)
        self._peers: dict[int, _Peer] = {}
        self._next_expiry = math.inf

    def __repr__(self) -> str:
        return f"SenderKeys(sender_index={self.sender_index}, current={self._current.id})"

    def _fresh_key(self) -> SecretKey:
        return SecretKey(self._random(self._params.nh))

    @property
    def sender_index(self) -> int:
        return self._current.id.sender_index

    @property
    def suite(self) -> CipherSuite:
        return self._suite

    # --- sending ------------------------------------------------------------------------------

    @property
    def current_key(self) -> SenderKey:
        """The key frames are encrypted with now."""
        return self._current

    @property
    def latest_key(self) -> SenderKey:
        """The newest key, pending or in use: the one a (re)connecting peer must receive."""
        return self._pending or self._current

    def on_join(self, now: float) -> SenderKey:
        """Ratchet for a newcomer; return the key to send to the newcomer only.

        With nothing pending, the ratcheted key is in use at once: the others hold the key it
        ratchets and follow it by themselves, and the newcomer can read nothing before its key
        arrives anyway, so a delay would only hold back its first frame. A pending key (a
        leave's) is ratcheted instead and keeps its deadline: the others may not hold it yet,
        and the key that excludes a leaver must not start later."""
        if now >= self._pending_at:
            self._activate()  # its time came with no frame sent or tick since: it is current
        if self._pending is not None:
            return self._schedule(self._pending.ratcheted(), now)
        key = self._current.ratcheted()
        self._pending = key
        self._activate()
        return key

    def on_leave(self, now: float) -> SenderKey:
        """Draw the next generation's key; return the key to send to each remaining peer."""
        key_id = self.latest_key.id.next_generation()
        return self._schedule(SenderKey(key_id, self._suite, self._fresh_key()), now)

    def restart(self, now: float) -> SenderKey:
        """After this client was away: the next generation's key, in use at once. Peers that
        saw it leave forgot the old key, so waiting helps nobody; and someone kicked while it
        was away still holds the old key, so not one more frame may use it."""
        key = self.on_leave(now)
        self._activate()
        return key

    def _schedule(self, key: SenderKey, now: float) -> SenderKey:
        # A newer rotation replaces a pending one: peers holding the pending key can ratchet to
        # it, or were sent the fresh one. It keeps the earlier deadline: were each rotation to
        # restart the delay, churn faster than the delay would keep the pre-kick key in use
        # for as long as the churn lasts.
        if now >= self._pending_at:
            self._activate()  # its time came with no frame sent or tick since: it is current
        self._pending = key
        self._pending_at = min(self._pending_at, now + self._delay)
        return key

    def tick(self, now: float) -> None:
        """Start using a pending key and delete expired ones; also done by encrypt and decrypt."""
        if now >= self._pending_at:
            self._activate()
        if now >= self._next_expiry:
            self._expire(now)

    def _activate(self) -> None:
        new = self._pending
        assert new is not None
        self._sending.remove_key(self._current.kid)
        self._sending.add_send_key(new.kid, new.base_key)
        self._current = new
        self._pending = None
        self._pending_at = math.inf

    def encrypt(self, metadata: bytes, plaintext: bytes, now: float) -> bytes:
        if now >= self._pending_at:
            self._activate()
        return self._sending.encrypt(self._current.kid, metadata, plaintext)

    # --- receiving ----------------------------------------------------------------------------

    def add_peer_key(self, key: SenderKey, now: float) -> None:
        """Hold a key another sender sent us (after transport verified it)."""
        index = key.id.sender_index
        if index == self.sender_index:
            raise KeyConflict(key.kid, "it carries this client's own sender index")
        if key.suite is not self._suite:
            raise KeyConflict(key.kid, f"it is for cipher suite {key.suite.name}")
        peer = self._peers.setdefault(index, _Peer())
        if peer.latest is not None and key.id <= peer.latest:
            held = peer.bases.get(key.id.generation)
            if held == key and key.id.generation == peer.latest.generation:
                return  # the same key again, e.g. re-sent after a reconnect
            raise StaleSenderKey(index)
        if not self._receiving.has_receive_key(key.kid):
            self._receiving.add_receive_key(key.kid, key.base_key)
        self._commit(peer, key, now)

    def _commit(self, peer: _Peer, key: SenderKey, now: float) -> None:
        expires = now + self._grace
        for kid, when in peer.expiry.items():
            if when == math.inf:
                peer.expiry[kid] = expires
                self._next_expiry = min(self._next_expiry, expires)
        peer.expiry[key.kid] = math.inf
        peer.latest = key.id
        peer.bases[key.id.generation] = key

    def _keep_older(self, peer: _Peer, key: SenderKey, now: float) -> None:
        """A ratchet step, followed, of a generation older than the newest held: it lives only
        as long as that generation's key would have."""
        base = peer.bases[key.id.generation]
        expires = peer.expiry.get(base.kid, now + self._grace)
        peer.expiry[key.kid] = expires
        self._next_expiry = min(self._next_expiry, expires)
        peer.bases[key.id.generation] = key

    def remove_peer(self, sender_index: int) -> None:
        """Forget a sender that left: its frames are no longer accepted."""
        peer = self._peers.pop(sender_index, None)
        if peer is not None:
            for kid in peer.expiry:
                self._receiving.remove_key(kid)

    def held_kids(self) -> frozenset[int]:
        """KIDs this client can decrypt right now (without ratcheting further)."""
        return self._receiving.receive_kids()

    def decrypt(self, frame: bytes, metadata: bytes, now: float) -> bytes:
        if now >= self._next_expiry:
            self._expire(now)
        kid = decode_header(frame)[0]
        if self._receiving.has_receive_key(kid):
            return self._receiving.decrypt(frame, metadata)
        peer, candidate = self._follow_ratchet(kid)
        try:
            plaintext = self._receiving.decrypt(frame, metadata)
        except SFrameError:
            # Forged KIDs must leave nothing behind.
            self._receiving.remove_key(kid)
            raise
        if peer.latest is not None and candidate.id < peer.latest:
            self._keep_older(peer, candidate, now)
        else:
            self._commit(peer, candidate, now)
        return plaintext

    def _follow_ratchet(self, kid: int) -> tuple[_Peer, SenderKey]:
        key_id = KeyId.parse(kid)
        peer = self._peers.get(key_id.sender_index) if key_id else None
        if key_id is None or peer is None:
            raise SFrameError(f"no key for KID {kid}")
        base = peer.bases.get(key_id.generation)
        if base is None:
            raise SFrameError(f"no key for generation {key_id.generation} of that sender")
        gap = key_id.ratchet_step - base.id.ratchet_step
        if gap <= 0:
            raise SFrameError("that key was superseded and deleted")
        if gap > self._max_gap:
            raise SFrameError("ratchet step too far ahead")
        key = base
        for _ in range(gap):
            key = key.ratcheted()
        self._receiving.add_receive_key(kid, key.base_key)
        return peer, key

    def _expire(self, now: float) -> None:
        upcoming = math.inf
        for peer in self._peers.values():
            for kid, when in list(peer.expiry.items()):
                if when <= now:
                    del peer.expiry[kid]
                    self._receiving.remove_key(kid)
                else:
                    upcoming = min(upcoming, when)
            peer.bases = {g: k for g, k in peer.bases.items() if k.kid in peer.expiry}
        self._next_expiry = upcoming
