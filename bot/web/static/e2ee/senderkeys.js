// Sender keys (RFC 9605 section 5.1; docs/PROTOCOL.md section 3.3): each participant encrypts
// with its own key. The same state machine as bot/e2ee/senderkeys.py:
//
// - On a join, every sender ratchets its key one step and gives the newcomer only the ratcheted
//   key: the ratchet is one-way, so the newcomer cannot decrypt anything sent before. With no
//   key pending, the sender uses the ratcheted key at once: the others follow a ratchet by
//   themselves, and the newcomer decrypts nothing until its key arrives anyway, so waiting would
//   only postpone the newcomer's first frame. With a key pending, it ratchets that one, which
//   keeps its deadline.
// - On a leave or kick, every remaining sender draws a fresh random key (next generation) and
//   gives it only to those who remain: the leaver's old keys say nothing about it.
// - A sender uses a leave's new key only `activationDelay` seconds after creating it, so that
//   peers hold it by then. A newer key that replaces a pending one (a join's ratchet of it, or
//   the next leave's key) keeps the pending one's deadline: the deadline never moves later, so
//   the key a leave calls for (or a newer one) is in use at most one delay after it, however
//   often the roster changes.
// - Receivers that hold an earlier key of the same generation follow a ratchet by themselves
//   when frames with a later step's KID arrive.
// - A receiver keeps a superseded key for `gracePeriod` seconds (frames under it may still be in
//   flight), then deletes it.
//
// Times are passed in as `now`, in monotonic seconds (performance.now() / 1000), by the caller.
// Every public operation runs through one Serial, so each sees and leaves consistent state.

import { equalBytes, randomBytes } from "./bytes.js";
import { KeyConflict, SFrameError, StaleSenderKey } from "./errors.js";
import { decodeHeader } from "./header.js";
import { ratchet } from "./kdf.js";
import { KeyId } from "./kid.js";
import { Serial } from "./serial.js";
import { SFrameContext } from "./sframe.js";
import { DEFAULT_SUITE, suiteName, suiteParams } from "./suites.js";

export const DEFAULT_ACTIVATION_DELAY = 1.0;
export const DEFAULT_GRACE_PERIOD = 10.0;
// How many ratchet steps a receiver follows by itself. A sender ratchets once per join, so this
// bounds joins between two frames of one sender; it also bounds the work a forged KID can cause.
export const DEFAULT_MAX_RATCHET_GAP = 256;

// One sender's base key at one (generation, ratchet step): what travels to a peer.
export class SenderKey {
  constructor(id, suite, baseKey) {
    this.id = id;
    this.suite = suite;
    this.baseKey = baseKey;
    Object.freeze(this);
  }

  get kid() {
    return this.id.kid;
  }

  async ratcheted() {
    return new SenderKey(
      this.id.nextStep(),
      this.suite,
      await ratchet(suiteParams(this.suite), this.baseKey),
    );
  }

  equals(other) {
    return (
      this.id.equals(other.id) &&
      this.suite === other.suite &&
      equalBytes(this.baseKey, other.baseKey)
    );
  }
}

// Who sent `frame` and under which key, from its header; authentic only after decryption.
export function frameKeyId(frame) {
  const keyId = KeyId.parse(decodeHeader(frame).kid);
  if (keyId === null) throw new SFrameError("KID outside Conclave's layout");
  return keyId;
}

class Peer {
  constructor() {
    this.latest = null;
    // Newest key held per generation: ratchets only go forward from it. Older generations keep
    // theirs until its KID expires: a sender may activate a ratchet step of one just as it
    // creates the next generation (a rotation that comes after the pending key's deadline).
    this.bases = new Map(); // generation -> SenderKey
    // Installed KIDs and when they expire (Infinity for the newest one).
    this.expiry = new Map(); // kid -> seconds
  }
}

const DEFAULTS = Object.freeze({
  suite: DEFAULT_SUITE,
  activationDelay: DEFAULT_ACTIVATION_DELAY,
  gracePeriod: DEFAULT_GRACE_PERIOD,
  maxRatchetGap: DEFAULT_MAX_RATCHET_GAP,
  // For tests that need fixed keys; real use keeps crypto.getRandomValues.
  randomBytes,
  // A page reloaded mid-meeting starts above every generation it sent before: the others
  // refuse a key older than one they hold from it (section 4.6, step 7).
  firstGeneration: 0,
});

// One participant's own sending key and the keys it holds for the other senders.
export class SenderKeys {
  static async create(senderIndex, options = {}) {
    const settings = { ...DEFAULTS, ...options };
    const { suite, activationDelay, gracePeriod } = settings;
    if (!(activationDelay >= 0 && activationDelay <= gracePeriod)) {
      // Receivers must keep an old key at least as long as a sender may still use it.
      throw new RangeError("need 0 <= activationDelay <= gracePeriod");
    }
    const params = suiteParams(suite);
    const first = new SenderKey(
      new KeyId(senderIndex, settings.firstGeneration, 0),
      suite,
      settings.randomBytes(params.nh),
    );
    const sending = new SFrameContext(suite);
    await sending.addSendKey(first.kid, first.baseKey);
    return new SenderKeys(settings, params, first, sending);
  }

  // Use SenderKeys.create: the first key needs WebCrypto, which is async.
  constructor(settings, params, first, sending) {
    this._suite = settings.suite;
    this._params = params;
    this._delay = settings.activationDelay;
    this._grace = settings.gracePeriod;
    this._maxGap = settings.maxRatchetGap;
    this._random = settings.randomBytes;
    this._sending = sending;
    this._current = first;
    this._pending = null;
    this._pendingAt = Infinity;
    this._receiving = new SFrameContext(settings.suite);
    this._peers = new Map(); // sender index -> Peer
    this._nextExpiry = Infinity;
    this._serial = new Serial();
  }

  _freshKey() {
    const key = this._random(this._params.nh);
    if (key.length !== this._params.nh) {
      throw new RangeError("the random source gave a key of the wrong length");
    }
    return key;
  }

  get senderIndex() {
    return this._current.id.senderIndex;
  }

  get suite() {
    return this._suite;
  }

  // --- sending ---------------------------------------------------------------------------------

  // The key frames are encrypted with now.
  get currentKey() {
    return this._current;
  }

  // The newest key, pending or in use: the one a (re)connecting peer must receive.
  get latestKey() {
    return this._pending ?? this._current;
  }

  // Ratchet for a newcomer; resolves to the key to send to the newcomer only. With nothing
  // pending, the ratcheted key is in use at once: the others hold the key it ratchets and follow
  // it by themselves, and the newcomer can read nothing before its key arrives anyway, so a
  // delay would only hold back its first frame. A pending key (a leave's) is ratcheted instead
  // and keeps its deadline: the others may not hold it yet, and the key that excludes a leaver
  // must not start later. As bot/e2ee/senderkeys.py.
  onJoin(now) {
    return this._serial.run(async () => {
      // A pending key whose time came with no frame or tick since is current already.
      if (now >= this._pendingAt) await this._activate();
      if (this._pending !== null) return this._schedule(await this._pending.ratcheted(), now);
      const key = await this._current.ratcheted();
      this._pending = key;
      await this._activate();
      return key;
    });
  }

  // Draw the next generation's key; resolves to the key to send to each remaining peer.
  onLeave(now) {
    return this._serial.run(async () => {
      const keyId = this.latestKey.id.nextGeneration();
      return this._schedule(new SenderKey(keyId, this._suite, this._freshKey()), now);
    });
  }

  // After this client was away: the next generation's key, in use at once. Peers that saw it
  // leave forgot the old key, so waiting helps nobody; and someone kicked while it was away
  // still holds the old key, so not one more frame may use it. As bot/e2ee/senderkeys.py.
  restart(now) {
    return this._serial.run(async () => {
      const keyId = this.latestKey.id.nextGeneration();
      const key = await this._schedule(new SenderKey(keyId, this._suite, this._freshKey()), now);
      await this._activate();
      return key;
    });
  }

  async _schedule(key, now) {
    // A newer rotation replaces a pending one: peers holding the pending key can ratchet to it,
    // or were sent the fresh one. It keeps the earlier deadline: were each rotation to restart
    // the delay, churn faster than the delay would keep the pre-kick key in use for as long as
    // the churn lasts.
    if (now >= this._pendingAt) await this._activate(); // its time came with no frame or tick since
    this._pending = key;
    this._pendingAt = Math.min(this._pendingAt, now + this._delay);
    return key;
  }

  // Start using a pending key and delete expired ones; also done by encrypt and decrypt.
  tick(now) {
    return this._serial.run(async () => {
      if (now >= this._pendingAt) await this._activate();
      if (now >= this._nextExpiry) this._expire(now);
    });
  }

  async _activate() {
    const next = this._pending;
    this._sending.removeKey(this._current.kid);
    await this._sending.addSendKey(next.kid, next.baseKey);
    this._current = next;
    this._pending = null;
    this._pendingAt = Infinity;
  }

  encrypt(metadata, plaintext, now) {
    return this._serial.run(async () => {
      if (now >= this._pendingAt) await this._activate();
      return this._sending.encrypt(this._current.kid, metadata, plaintext);
    });
  }

  // --- receiving -------------------------------------------------------------------------------

  // Hold a key another sender sent us (after transport verified it).
  addPeerKey(key, now) {
    return this._serial.run(async () => {
      const index = key.id.senderIndex;
      if (index === this.senderIndex) {
        throw new KeyConflict(key.kid, "it carries this client's own sender index");
      }
      if (key.suite !== this._suite) {
        throw new KeyConflict(key.kid, `it is for cipher suite ${suiteName(key.suite)}`);
      }
      let peer = this._peers.get(index);
      if (peer === undefined) this._peers.set(index, (peer = new Peer()));
      if (peer.latest !== null && key.id.compare(peer.latest) <= 0) {
        const held = peer.bases.get(key.id.generation);
        if (
          held !== undefined &&
          held.equals(key) &&
          key.id.generation === peer.latest.generation
        ) {
          return; // the same key again, e.g. re-sent after a reconnect
        }
        throw new StaleSenderKey(index);
      }
      if (!this._receiving.hasReceiveKey(key.kid)) {
        await this._receiving.addReceiveKey(key.kid, key.baseKey);
      }
      this._commit(peer, key, now);
    });
  }

  _commit(peer, key, now) {
    const expires = now + this._grace;
    for (const [kid, when] of peer.expiry) {
      if (when === Infinity) {
        peer.expiry.set(kid, expires);
        this._nextExpiry = Math.min(this._nextExpiry, expires);
      }
    }
    peer.expiry.set(key.kid, Infinity);
    peer.latest = key.id;
    peer.bases.set(key.id.generation, key);
  }

  // A ratchet step, followed, of a generation older than the newest held: it lives only as long
  // as that generation's key would have.
  _keepOlder(peer, key, now) {
    const base = peer.bases.get(key.id.generation);
    const expires = peer.expiry.get(base.kid) ?? now + this._grace;
    peer.expiry.set(key.kid, expires);
    this._nextExpiry = Math.min(this._nextExpiry, expires);
    peer.bases.set(key.id.generation, key);
  }

  // Forget a sender that left: its frames are no longer accepted.
  removePeer(senderIndex) {
    return this._serial.run(async () => {
      const peer = this._peers.get(senderIndex);
      if (peer === undefined) return;
      this._peers.delete(senderIndex);
      for (const kid of peer.expiry.keys()) this._receiving.removeKey(kid);
    });
  }

  // KIDs this client can decrypt right now (without ratcheting further).
  heldKids() {
    return this._receiving.receiveKids();
  }

  decrypt(frame, metadata, now) {
    return this._serial.run(async () => {
      if (now >= this._nextExpiry) this._expire(now);
      const { kid } = decodeHeader(frame);
      if (this._receiving.hasReceiveKey(kid)) return this._receiving.decrypt(frame, metadata);
      const { peer, candidate } = await this._followRatchet(kid);
      let plaintext;
      try {
        plaintext = await this._receiving.decrypt(frame, metadata);
      } catch (error) {
        this._receiving.removeKey(kid); // forged KIDs must leave nothing behind
        throw error;
      }
      if (peer.latest !== null && candidate.id.compare(peer.latest) < 0) {
        this._keepOlder(peer, candidate, now);
      } else {
        this._commit(peer, candidate, now);
      }
      return plaintext;
    });
  }

  async _followRatchet(kid) {
    const keyId = KeyId.parse(kid);
    const peer = keyId === null ? undefined : this._peers.get(keyId.senderIndex);
    if (peer === undefined) throw new SFrameError(`no key for KID ${kid}`);
    const base = peer.bases.get(keyId.generation);
    if (base === undefined) {
      throw new SFrameError(`no key for generation ${keyId.generation} of that sender`);
    }
    const gap = keyId.ratchetStep - base.id.ratchetStep;
    if (gap <= 0) throw new SFrameError("that key was superseded and deleted");
    if (gap > this._maxGap) throw new SFrameError("ratchet step too far ahead");
    let candidate = base;
    for (let i = 0; i < gap; i++) candidate = await candidate.ratcheted();
    await this._receiving.addReceiveKey(kid, candidate.baseKey);
    return { peer, candidate };
  }

  _expire(now) {
    let upcoming = Infinity;
    for (const peer of this._peers.values()) {
      for (const [kid, when] of [...peer.expiry]) {
        if (when <= now) {
          peer.expiry.delete(kid);
          this._receiving.removeKey(kid);
        } else {
          upcoming = Math.min(upcoming, when);
        }
      }
      for (const [generation, key] of [...peer.bases]) {
        if (!peer.expiry.has(key.kid)) peer.bases.delete(generation);
      }
    }
    this._nextExpiry = upcoming;
  }
}
