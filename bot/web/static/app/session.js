// A participant's signaling session, as bot/client/session.py: redeem the invite (or resume),
// wait in the lobby if there is one, exchange keys, negotiate media with the relay through the
// hub, rejoin after a drop. Every message from the hub is checked (schema.js) and handled by
// the one handler its type names; what the person sees is the `ui`'s business.

import { KeysTampered } from "../e2ee/errors.js";
import { MeetingKeys } from "../e2ee/keys.js";
import { Keyring } from "./keyring.js";
import { MediaSession } from "./media.js";
import { Connection } from "./signaling.js";

export const RESUME_ATTEMPTS = 5;
export const PUBLISH_ATTEMPTS = 10;
const KEY_TIMING = Object.freeze({ activationDelay: 1.0, gracePeriod: 10.0 });

export class MeetingSession {
  // `invite`: the link's credential, or null when resuming from `memory` (a TabMemory);
  // `frames`: the FrameWorker; `local`: the LocalMedia; `ui`: what tells the person;
  // `iceServers`: STUN/TURN servers of the page's own, after those each welcome gives;
  // `newKeys`: MeetingKeys.generateStorable()'s result, which the page makes as it loads.
  constructor({ roomId, invite, memory, url, frames, local, ui, newKeys, iceServers = [] }) {
    Object.assign(this, { roomId, memory, frames, local, ui });
    this._invite = invite;
    this._url = url;
    this._ownIceServers = iceServers;
    this._iceServers = iceServers;
    this._conn = null;
    this._resume = null; // the latest resume token, also kept in `memory` for reloads
    this.welcome = null;
    this.roster = [];
    this.keyring = null;
    this.media = null;
    this._prepared = null; // {media, offer}: made before Join was pressed, not yet sent
    this.admitted = false;
    this.joined = false; // the person pressed Join: publish media when admitted
    this.ended = null;
    this._attempts = 0;
    this._publishAttempts = 0;
    this._retry = null;
    // This tab's meeting keys, made while the page loads, not after the welcome: they do not
    // depend on it, and they are the first thing joining waits for. Kept only once admitted
    // (`_startMeeting`); a refused link leaves nothing behind.
    this._newKeys = newKeys;
    // One handler per message the hub may send (schema.js TO_CLIENT).
    this.handlers = {
      welcome: (m) => this._onWelcome(m),
      admitted: (m) => this._onAdmitted(m),
      roster: (m) => this._onRoster(m.roster),
      lobby: (m) => ui.lobby(m.message),
      lobby_waiting: (m) => ui.lobbyWaiting(m.waiting),
      room: (m) => ui.locked(m.locked),
      notice: (m) => ui.notice(m.message),
      pong: () => {},
      key: (m) => this.keyring?.onKey(m.from, m.payload),
      answer: (m) => this._onAnswer(m),
      offer: (m) => this._onOffer(m),
      media_lost: () => this._onMediaLost(),
      warning: (m) => this._onWarning(m),
      ended: (m) => this._end("ended", m.reason),
      kicked: (m) => this._end("kicked", m.message),
      error: (m) => this._onError(m),
    };
  }

  // --- connection ----------------------------------------------------------------------------

  start() {
    const resume = this._resume ?? this.memory.load()?.resume ?? null;
    let hello;
    if (resume !== null) {
      hello = { resume };
    } else if (this._invite !== null) {
      hello = { room: this.roomId, invite: this._invite };
      this._invite = null; // spent by this hello
    } else {
      this._end("refused", "This tab has no invite key and no way to rejoin.", "no_invite");
      return;
    }
    const conn = new Connection(this._url, {
      onMessage: (message) => this.handlers[message.type](message),
      onClose: (closed) => this._onClose(conn, closed),
      onBadMessage: (error) => this._end("protocol", `The server sent ${error.message}.`),
    });
    this._conn = conn;
    conn.open(hello);
  }

  send(type, fields = {}) {
    this._conn?.send(type, fields);
  }

  async _onClose(conn, { code }) {
    if (conn !== this._conn || this.ended !== null) return;
    this._stopMedia();
    if (this.welcome === null) {
      this._end("unreachable", `Cannot reach the meeting server (connection closed, code ${code}).`);
      return;
    }
    this._attempts++;
    if (this._attempts > RESUME_ATTEMPTS) {
      this._end("unreachable", "Lost the connection to the meeting server and could not rejoin.");
      return;
    }
    this.ui.connectionLost();
    await new Promise((resolve) => setTimeout(resolve, Math.min(500 * 2 ** this._attempts, 5000)));
    if (this.ended === null) this.start();
  }

  // `kind`: ended, kicked, refused (`code` says why), left, tampered, protocol, unreachable.
  _end(kind, sentence, code = null) {
    if (this.ended !== null) return;
    this.ended = kind;
    clearTimeout(this._retry);
    this._conn?.close();
    this._stopMedia();
    if (["ended", "kicked", "refused", "left", "tampered"].includes(kind)) this.memory.forget();
    this.ui.ended(kind, sentence, code);
  }

  leave() {
    this._conn?.close(true);
    this._end("left", "You left the meeting.");
  }

  // --- messages ------------------------------------------------------------------------------

  async _onWelcome(message) {
    performance.mark("conclave:welcome");
    const first = this.welcome === null;
    this._attempts = 0;
    this._resume = message.resume_token;
    this.memory.saveResume(message.resume_token);
    // With TURN credentials made for this participant, fresh with each welcome.
    this._iceServers = [...(message.ice_servers ?? []), ...this._ownIceServers];
    const { room } = message;
    this.welcome = {
      participantId: message.participant_id,
      senderIndex: message.sender_index,
      name: message.name,
      role: message.role,
      roomId: room.id,
      topic: room.topic,
    };
    this.ui.welcome(this.welcome, first);
    this.admitted = message.admitted;
    if (this.admitted) {
      await this._startMeeting();
      await this._onRoster(message.roster);
    }
  }

  async _onAdmitted(message) {
    this.ui.admitted();
    this.admitted = true;
    await this._startMeeting();
    await this._onRoster(message.roster);
  }

  async _onRoster(roster) {
    this.roster = roster;
    if (this.keyring === null) {
      this.ui.roster(roster, null);
      return;
    }
    let outgoing;
    try {
      outgoing = await this.keyring.onRoster(roster);
    } catch (error) {
      if (!(error instanceof KeysTampered)) throw error;
      this._end("tampered", error.message);
      return;
    }
    for (const { to, payload } of outgoing) this.send("key", { to, payload });
    this.ui.roster(roster, this.keyring.view);
  }

  async _onAnswer(message) {
    performance.mark("conclave:answer-received");
    const media = this.media;
    if (media === null) return;
    if ((await this._applied(media, () => media.acceptAnswer(message.answer))) !== null) {
      this._publishAttempts = 0;
    }
  }

  async _onOffer(message) {
    const media = this.media;
    if (media === null) return;
    performance.mark("conclave:relay-offer");
    const applied = await this._applied(media, () => media.answerOffer(message.offer));
    if (applied === null) return;
    this.send("answer", { negotiation: message.negotiation, answer: applied.value });
    performance.mark("conclave:relay-answered");
  }

  // Applies a relay description to `media`: {value} once it took, else null. One for a peer
  // connection closed meanwhile (media lost, a publish retry) is for nobody and dropped; one
  // the connection in use cannot take is the server's fault, and ends the meeting saying so.
  async _applied(media, apply) {
    try {
      return { value: await apply() };
    } catch (error) {
      if (this.media === media) {
        const why = `(${error.message})`;
        this._end("protocol", `The server sent a session description out of turn ${why}.`);
      }
      return null;
    }
  }

  async _onMediaLost() {
    // Our relay worker went away, or our own connection to it died; negotiate again (keys and
    // roster are unaffected).
    this.ui.warning("The media connection was lost; reconnecting media.");
    this._stopMedia();
    await this.publish();
  }

  _onWarning(message) {
    this.ui.warning(message.message);
    if (message.code === "relay_unavailable") this._retryPublish();
  }

  _onError({ code, message }) {
    if (this.welcome === null && code === "bad_resume" && this._invite !== null) {
      // This tab's token is dead (the host reissued the link), but it was opened with a link.
      this.memory.forget();
      this._conn.close();
      this.start();
    } else if (this.welcome !== null && code === "resume_too_soon") {
      this.ui.warning(message); // the token is still good; the reconnect loop tries again
    } else if (this.welcome !== null && (code === "bad_resume" || code === "room_ended")) {
      this._end("ended", message);
    } else {
      this._end("refused", message, code);
    }
  }

  // --- keys and media ------------------------------------------------------------------------

  // Once admitted: announce keys, then publish media if the person has joined. The peer
  // connection's offer is prepared first, so that its ICE gathering runs while the keys are set
  // up (frames sent before the worker has a key are dropped there, never sent in clear).
  async _startMeeting() {
    const w = this.welcome;
    this.prepare();
    if (this.keyring === null) {
      const saved = this.memory.load();
      let identity = null;
      if (saved?.keys) identity = await MeetingKeys.fromStored(saved.keys).catch(() => null);
      if (identity === null) {
        const made = this._newKeys;
        identity = made.keys;
        this.memory.saveKeys(made.stored);
      }
      const floor = Number.isInteger(saved?.generation) ? saved.generation + 1 : 0;
      const first = await this.frames.init(w.senderIndex, { ...KEY_TIMING, firstGeneration: floor });
      this.memory.saveGeneration(first.id.generation);
      this.keyring = await Keyring.create({
        roomId: w.roomId,
        participantId: w.participantId,
        senderIndex: w.senderIndex,
        identity,
        frames: this.frames,
        onKeyChange: (key) => this.memory.saveGeneration(key.id.generation),
      });
      performance.mark("conclave:keys");
    } else {
      await this.keyring.rejoin();
    }
    this.send("keys", this.keyring.announcement());
    await this.publish();
  }

  // The person pressed Join: media goes out as soon as the host has let them in.
  async join() {
    performance.mark("conclave:join");
    this.joined = true;
    await this.publish();
  }

  // While the person looks at the pre-join screen: the peer connection and its offer, with
  // its ICE candidates gathered, so that Join sends at once. Made once admitted, maybe before
  // the camera is open: its lines take the tracks when Join is pressed. Nothing leaves the
  // browser before Join (publish sends the offer).
  prepare() {
    if (this.media !== null || this._prepared !== null || this.welcome === null) return;
    if (this.joined || this.ended !== null) return;
    const media = this._newMedia();
    const offer = media.offer(this.local.tracks());
    // A failure shows when publish awaits it.
    offer.then(() => performance.mark("conclave:offer-ready")).catch(() => {});
    this._prepared = { media, offer };
  }

  // Whether a prepared offer is ready to go (for people debugging, and the browser tests).
  async isPrepared() {
    if (this._prepared === null) return false;
    await this._prepared.offer;
    return true;
  }

  async publish() {
    if (!this.joined || !this.admitted || this.media !== null || this.ended !== null) return;
    const prepared = this._prepared;
    this._prepared = null;
    let offer;
    if (prepared === null) {
      this.media = this._newMedia();
      offer = await this.media.offer(this.local.tracks());
    } else {
      this.media = prepared.media;
      offer = await prepared.offer;
      // The person may have switched a device or turned one off since: same senders.
      for (const kind of ["audio", "video"]) await this.updateTracks(kind);
    }
    performance.mark("conclave:offer-sent");
    this.send("publish", { offer });
  }

  _newMedia() {
    return new MediaSession({
      frames: this.frames,
      iceServers: this._iceServers,
      onTrack: (owner, kind, track) => this.ui.track(owner, kind, track),
    });
  }

  // The tracks to send changed (mute, camera, screen share): same senders, no renegotiation.
  async updateTracks(kind) {
    await this.media?.setTrack(kind, this.local.tracks()[kind]);
  }

  _retryPublish() {
    // No relay worker right now (one may be restarting): try again a little later.
    if (this._retry !== null) return;
    this._publishAttempts++;
    if (this._publishAttempts > PUBLISH_ATTEMPTS) {
      this.ui.warning("No media relay is available; staying in the meeting without media.");
      return;
    }
    const delay = Math.min(2000 * this._publishAttempts, 10000);
    this._retry = setTimeout(async () => {
      this._retry = null;
      this._stopMedia();
      await this.publish();
    }, delay);
  }

  _stopMedia() {
    this._prepared?.media.close();
    this._prepared = null;
    if (this.media !== null) {
      this.media.close();
      this.media = null;
      this.ui.mediaStopped();
    }
  }

  // --- host controls -------------------------------------------------------------------------

  admit(participantId) {
    this.send("admit", { participant: participantId });
  }

  kick(participantId) {
    this.send("kick", { participant: participantId });
  }

  setLocked(locked) {
    this.send(locked ? "lock" : "unlock");
  }

  endMeeting() {
    this.send("end");
  }
}
