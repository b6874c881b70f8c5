// A participant's end-to-end encryption state, driven by the roster and by key messages: the
// browser's bot/client/keyring.py, with the same rules in the same order.
//
// - Its keys are announced once, signed, and kept for the whole meeting, across rejoins (and
//   across reloads of the page, see invite.js), so the others never see new keys for this id.
// - Sender keys go only to peers whose announcements verify, and only while this client's own
//   entry shows its own keys and every entry has verified keys, i.e. while it shows a security
//   code. Rotations that happen meanwhile are owed and sent once that holds.
// - When this client first sees the others, it sends each of them its own (brand-new) key.
// - When someone joins later, it ratchets and sends the ratcheted key to the newcomer only.
// - When someone leaves or is kicked, it draws a fresh key and sends it to everyone remaining.
// - A roster only a lying server can show (KeysTampered) ends it: it sends nothing more.
// The sender keys themselves live in the frame worker (frames.js), which uses them.

import { announce } from "../e2ee/announce.js";
import { E2EEError, KeysTampered } from "../e2ee/errors.js";
import { KeyBook, RosterView, ShownEntry } from "../e2ee/roster.js";
import { Serial } from "../e2ee/serial.js";
import {
  KeyReceiver,
  messageFromText,
  messageToText,
  sealSenderKey,
} from "../e2ee/transport.js";

// Key messages kept from senders not verified yet (they may arrive just before the roster
// that verifies them): per sender and in all, oldest dropped first.
export const WAITING_PER_SENDER = 8;
export const WAITING_TOTAL = 64;

const EMPTY_VIEW = new RosterView(new Map(), [], [], null);

export class Keyring {
  // `frames`: the FrameWorker (or anything with its rotate/latest/addPeerKey/removePeer/
  // setVerified); `onKeyChange(key)`: told each newest own key (its generation is stored).
  static async create({ roomId, participantId, senderIndex, identity, frames, onKeyChange }) {
    const announcement = await announce(identity, roomId, participantId, senderIndex);
    return new Keyring({ roomId, participantId, senderIndex, identity, frames, onKeyChange }, announcement);
  }

  constructor({ roomId, participantId, senderIndex, identity, frames, onKeyChange }, announcement) {
    this.roomId = roomId;
    this.participantId = participantId;
    this._identity = identity;
    this._announcement = announcement;
    this._frames = frames;
    this._onKeyChange = onKeyChange ?? (() => {});
    this._book = new KeyBook(roomId, participantId, senderIndex, identity.public());
    this._receiver = new KeyReceiver({ roomId, participantId, keys: identity });
    this._serial = new Serial();
    this._roster = new Map(); // id -> verified RosterEntry
    this._owed = new Map(); // id -> the newest key that peer is still to be sent
    this._seenAnyone = false;
    this._waiting = []; // [sender, payload], oldest first
    this._rejected = new Set();
    this.view = EMPTY_VIEW;
    this.tampered = null;
    this.rotations = 0;
    this.rejectedKeys = 0;
    this.log = []; // what a person may want to know, e.g. keys that did not verify
  }

  // The `keys` message's fields.
  announcement() {
    return this._announcement.toJson();
  }

  get code() {
    return this.view.code;
  }

  // Apply a roster; resolves to the key messages to send ([{to, payload}]). Rejects with
  // KeysTampered, then and for ever after, if the roster can only come from a lying server.
  onRoster(roster) {
    return this._serial.run(() => this._onRoster(roster));
  }

  async _onRoster(roster) {
    if (this.tampered !== null) throw this.tampered;
    const shown = roster.map((entry) => ShownEntry.fromJson(entry));
    let view;
    try {
      view = await this._book.view(shown);
    } catch (error) {
      if (error instanceof KeysTampered) {
        this.tampered = error;
        this._owed.clear();
      }
      throw error;
    }
    for (const who of view.rejected) {
      if (!this._rejected.has(who)) this.log.push(`the keys shown for ${who} do not verify`);
    }
    this._rejected = new Set(view.rejected);
    const current = view.peers;
    const joined = [...current.keys()].filter((pid) => !this._roster.has(pid));
    const left = [...this._roster.keys()].filter((pid) => !current.has(pid));
    for (const pid of left) await this._frames.removePeer(this._roster.get(pid).senderIndex);
    this._roster = current;
    this.view = view;
    await this._frames.setVerified(current);
    let key = null;
    let recipients = [];
    if (left.length) {
      key = await this._rotate("leave");
      recipients = [...current.keys()];
      this.rotations++;
    } else if (joined.length && this._seenAnyone) {
      key = await this._rotate("join");
      recipients = joined;
    } else if (joined.length) {
      // Our first look at the room: our key is new, so everyone may have it as it is.
      key = await this._frames.latest();
      recipients = joined;
    }
    if (current.size) this._seenAnyone = true;
    // A newer key replaces an owed one: it is a ratchet of it, or goes to everyone.
    for (const pid of [...this._owed.keys()]) if (!current.has(pid)) this._owed.delete(pid);
    for (const pid of recipients) this._owed.set(pid, key);
    const messages = [];
    if (view.code !== null) {
      for (const [pid, owed] of this._owed) messages.push(await this._seal(owed, pid));
      this._owed.clear();
    }
    const present = new Set(shown.map((e) => e.participantId));
    for (const [sender, payload] of this._drainWaiting(present)) await this._onKey(sender, payload);
    return messages;
  }

  async _rotate(reason) {
    const key = await this._frames.rotate(reason);
    this._onKeyChange(key);
    return key;
  }

  async _seal(key, recipient) {
    const sealed = await sealSenderKey(key, {
      roomId: this.roomId,
      senderId: this.participantId,
      senderKeys: this._identity,
      recipientId: recipient,
      recipient: this._roster.get(recipient).keys,
    });
    return { to: recipient, payload: messageToText(sealed) };
  }

  // The waiting messages whose senders are now verified; those of senders gone from the
  // roster altogether are dropped: they left.
  _drainWaiting(present) {
    const ready = this._waiting.filter(([s]) => this._roster.has(s));
    this._waiting = this._waiting.filter(([s]) => present.has(s) && !this._roster.has(s));
    return ready;
  }

  _wait(sender, payload) {
    const mine = this._waiting.findIndex(([s]) => s === sender);
    const count = this._waiting.filter(([s]) => s === sender).length;
    if (count >= WAITING_PER_SENDER) this._waiting.splice(mine, 1);
    else if (this._waiting.length >= WAITING_TOTAL) this._waiting.shift();
    this._waiting.push([sender, payload]);
  }

  // A key message from `sender`; bad ones are counted and ignored, never fatal.
  onKey(sender, payload) {
    return this._serial.run(() => this._onKey(sender, payload));
  }

  async _onKey(sender, payload) {
    if (!this._roster.has(sender)) {
      this._wait(sender, payload);
      return;
    }
    try {
      const key = await this._receiver.open(messageFromText(payload), this._roster);
      await this._frames.addPeerKey(key);
    } catch (error) {
      if (!(error instanceof E2EEError)) throw error;
      this.rejectedKeys++;
      this.log.push(`rejected a key message from ${sender}: ${error.code}`);
    }
  }

  // After a dropped connection: the others forgot this client's key when it left, and may
  // have been joined by people who must not get the old one, so start afresh, under the new
  // key from the first frame. The identity and what it knows of the others' keys stay: they
  // hold for the whole meeting.
  rejoin() {
    return this._serial.run(async () => {
      await this._rotate("restart");
      this._roster = new Map();
      this._owed = new Map();
      this._seenAnyone = false;
      this.view = EMPTY_VIEW;
    });
  }
}
