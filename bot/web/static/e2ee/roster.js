// What a client believes about everyone's keys, from the rosters a possibly lying server shows
// (docs/PROTOCOL.md section 4.7). The same rules, checks, order and sentences as
// bot/e2ee/roster.py:
//
// - A peer's keys are usable only when its announcement verifies under the Ed25519 key it
//   carries, for this room, that peer's id and its sender index.
// - This client's own entry must carry exactly its own keys and index once it shows any.
// - Keys, once verified for a participant id, stay that participant's until a roster arrives
//   without that id: new keys for an id that never left can only be the server's.
// - A sender index belongs to one participant id for the whole meeting (the hub never reuses
//   one): two entries with one index, an index shown for an id other than the one it was first
//   shown for, or a peer with this client's own index can only be the server's, which would
//   otherwise show its frames under someone's name (the KID names the sender by index).
// - The security code exists only while every entry (this client's included) has verified
//   keys; until then it is pending (null).
//
// Breaking the second, third or fourth rule throws KeysTampered (the client must leave); an
// entry whose announcement is missing or does not verify is only unusable, because a
// participant may not have announced yet.

import { KeyAnnouncement } from "./announce.js";
import { securityCode } from "./code.js";
import { E2EEError, KeysTampered, RosterError } from "./errors.js";
import { RosterEntry } from "./keys.js";
import { Serial } from "./serial.js";

function isObject(value) {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

// One roster entry as the server showed it; nothing in it is trusted yet.
export class ShownEntry {
  constructor(participantId, senderIndex, name, keys) {
    this.participantId = participantId;
    this.senderIndex = senderIndex;
    this.name = name;
    this.keys = keys; // the entry's `keys` object, null if it has none
    Object.freeze(this);
  }

  static fromJson(entry) {
    const { participant_id: pid, sender_index: index, keys } = isObject(entry) ? entry : {};
    // A safe integer only: JSON numbers above 2^53 would collide in a JS number.
    if (typeof pid !== "string" || !Number.isSafeInteger(index)) {
      throw new RosterError("an entry lacks a participant id or a sender index");
    }
    const name = !("name" in entry)
      ? pid
      : typeof entry.name === "string"
        ? entry.name
        : String(entry.name);
    return new ShownEntry(pid, index, name, isObject(keys) ? keys : null);
  }

  get who() {
    return `${this.name} (${this.participantId})`;
  }

  announcement() {
    if (this.keys === null) return null;
    try {
      return KeyAnnouncement.fromJson(this.keys);
    } catch (error) {
      if (error instanceof E2EEError) return null;
      throw error;
    }
  }
}

// peers: Map id -> RosterEntry, the others whose keys verified (the only ones keys go to);
// waiting: others who have announced no keys yet ("name (id)"); rejected: whose keys do not
// verify; code: null (pending) until every entry, this client's too, has verified keys.
export class RosterView {
  constructor(peers, waiting, rejected, code) {
    Object.assign(this, { peers, waiting, rejected, code });
    Object.freeze(this);
  }
}

function sameShown(a, b) {
  return a !== null && b !== null && a.index === b.index && a.keys.equals(b.keys);
}

// Checks each roster against the keys this client has already accepted.
export class KeyBook {
  constructor(roomId, participantId, senderIndex, own) {
    this._roomId = roomId;
    this._me = participantId;
    this._index = senderIndex;
    this._own = own;
    this._known = new Map(); // id -> {index, keys}
    // Every index ever shown, and whose it was ("name (id)" for the sentence); kept for the
    // meeting's life, across this client's rejoins, unlike _known.
    this._owners = new Map([[senderIndex, { pid: participantId, who: "this device" }]]);
    this._serial = new Serial();
  }

  // A RosterView of `shown` (ShownEntry objects, or the roster's JSON entries).
  view(shown) {
    return this._serial.run(() =>
      this._view([...shown].map((e) => (e instanceof ShownEntry ? e : ShownEntry.fromJson(e)))),
    );
  }

  async _view(entries) {
    const ids = entries.map((e) => e.participantId);
    if (new Set(ids).size !== ids.length) {
      throw new KeysTampered("it showed one participant twice in the roster");
    }
    this._checkIndexes(entries);
    // An id that is no longer in the roster has left; if it comes back, it may bring new keys.
    for (const pid of [...this._known.keys()]) if (!ids.includes(pid)) this._known.delete(pid);
    const peers = new Map();
    const waiting = [];
    const rejected = [];
    const verified = [];
    for (const entry of entries) {
      if (entry.participantId === this._me) {
        if (entry.keys !== null) {
          this._checkOwn(entry);
          verified.push([this._me, this._own]);
        }
      } else if (entry.keys === null) {
        waiting.push(entry.who);
      } else {
        const keys = await this._checkPeer(entry);
        if (keys === null) {
          rejected.push(entry.who);
        } else {
          peers.set(
            entry.participantId,
            new RosterEntry(entry.participantId, entry.senderIndex, keys),
          );
          verified.push([entry.participantId, keys]);
        }
      }
    }
    const complete = verified.length === entries.length && ids.includes(this._me);
    return new RosterView(peers, waiting, rejected, complete ? await securityCode(verified) : null);
  }

  _checkIndexes(entries) {
    if (new Set(entries.map((e) => e.senderIndex)).size !== entries.length) {
      throw new KeysTampered("it showed two participants with one sender index");
    }
    for (const entry of entries) {
      const owner = this._owners.get(entry.senderIndex);
      if (owner !== undefined && owner.pid !== entry.participantId) {
        const index = entry.senderIndex;
        throw new KeysTampered(
          `it gave sender index ${index}, which belonged to ${owner.who}, to ${entry.who}`,
        );
      }
    }
    for (const entry of entries) {
      if (!this._owners.has(entry.senderIndex)) {
        this._owners.set(entry.senderIndex, { pid: entry.participantId, who: entry.who });
      }
    }
  }

  _checkOwn(entry) {
    const announced = entry.announcement();
    if (
      announced === null ||
      !announced.keys.equals(this._own) ||
      entry.senderIndex !== this._index
    ) {
      throw new KeysTampered("it shows this device's own entry with keys that are not its own");
    }
  }

  // The entry's verified keys; null if unusable; KeysTampered if they replace others.
  async _checkPeer(entry) {
    const pid = entry.participantId;
    let announced = entry.announcement();
    if (announced !== null && !(await announced.verifies(this._roomId, pid, entry.senderIndex))) {
      announced = null;
    }
    const shown = announced === null ? null : { index: entry.senderIndex, keys: announced.keys };
    const known = this._known.get(pid);
    if (known !== undefined && !sameShown(shown, known)) {
      throw new KeysTampered(`it replaced the keys of ${entry.who}, who never left the meeting`);
    }
    if (shown === null) return null;
    this._known.set(pid, shown);
    return shown.keys;
  }
}
