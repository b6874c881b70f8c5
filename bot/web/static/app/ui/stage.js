// The grid of participants: one tile per roster entry, with its video while frames are being
// decoded (initials otherwise), its name, and a highlight on whoever is speaking. Audio plays
// from one hidden <audio> element per participant, routed to the chosen speaker.

import { initials } from "../presenter.js";
import { el } from "./dom.js";

const HUES = 8;
const SPEAKING_LEVEL = 0.04; // audioLevel (0..1) above which someone counts as speaking
const STILL_TICKS = 3; // ticks without a new decoded frame before the tile shows initials

function hueOf(participantId) {
  let h = 0;
  for (const c of participantId) h = (h * 31 + c.charCodeAt(0)) % 997;
  return `hue-${h % HUES}`;
}

class Tile {
  constructor(entry, isSelf) {
    this.id = entry.participant_id;
    this.video = el("video", { autoplay: true, playsinline: true, muted: true });
    this.video.muted = true; // sound plays from this.audio, never twice
    this.audio = el("audio", { autoplay: true, className: "hidden-audio" });
    this.face = el("div", { className: `initials ${hueOf(this.id)}`, "aria-hidden": "true" });
    this.name = el("span", { className: "name" });
    this.tag = el("span", { className: "tag" });
    this.root = el(
      "figure",
      { className: "tile", "data-participant": this.id },
      this.video,
      this.face,
      el("figcaption", { className: "tile-bar" }, this.name, this.tag),
      this.audio,
    );
    this.isSelf = isSelf;
    if (isSelf) this.root.classList.add("self");
    this.decoded = 0;
    this.still = STILL_TICKS;
    this.update(entry);
  }

  update(entry) {
    this.name.textContent = entry.name + (this.isSelf ? " (you)" : "");
    this.face.textContent = initials(entry.name);
    this.tag.textContent = entry.role === "host" ? "Host" : "";
    this.root.setAttribute("aria-label", `${entry.name}${this.isSelf ? ", you" : ""}`);
  }

  showVideo(on) {
    this.root.classList.toggle("has-video", on);
  }

  setSpeaking(on) {
    this.root.classList.toggle("speaking", on);
  }
}

export class Stage {
  constructor(root) {
    this._root = root;
    this._tiles = new Map(); // participant id -> Tile
    this._selfId = null;
    this._sinkId = "";
  }

  setSelf(participantId) {
    this._selfId = participantId;
  }

  // One tile per roster entry, in roster order.
  update(roster) {
    const present = new Set(roster.map((e) => e.participant_id));
    for (const [id, tile] of this._tiles) {
      if (!present.has(id)) {
        tile.root.remove();
        this._tiles.delete(id);
      }
    }
    for (const entry of roster) {
      let tile = this._tiles.get(entry.participant_id);
      if (tile === undefined) {
        tile = new Tile(entry, entry.participant_id === this._selfId);
        this._tiles.set(entry.participant_id, tile);
        this._applySink(tile);
      } else {
        tile.update(entry);
      }
      this._root.append(tile.root); // keeps roster order
    }
    this._root.dataset.count = String(Math.min(this._tiles.size, 9));
  }

  // A track the relay forwards for `owner`.
  setTrack(owner, kind, track) {
    const tile = this._tiles.get(owner);
    if (tile === undefined) return;
    const element = kind === "video" ? tile.video : tile.audio;
    element.srcObject = new MediaStream([track]);
    element.play?.().catch(() => {}); // autoplay may wait for the Join click
  }

  // This client's own video (camera mirrored, a shared screen as it is), or null.
  setOwnVideo(track, mirrored) {
    const tile = this._tiles.get(this._selfId);
    if (tile === undefined) return;
    tile.video.srcObject = track ? new MediaStream([track]) : null;
    tile.video.classList.toggle("mirrored", Boolean(track) && mirrored);
    tile.showVideo(Boolean(track));
  }

  async setSpeaker(sinkId) {
    this._sinkId = sinkId;
    for (const tile of this._tiles.values()) await this._applySink(tile);
  }

  async _applySink(tile) {
    if (this._sinkId && typeof tile.audio.setSinkId === "function") {
      await tile.audio.setSinkId(this._sinkId).catch(() => {});
    }
  }

  // Once a tick: `receiving` maps participant id -> {framesDecoded, audioLevel} (media.js);
  // `ownLevel` is this client's microphone level. Video shows while frames keep coming.
  tick(receiving, ownLevel) {
    let loudest = null;
    let loudestLevel = SPEAKING_LEVEL;
    for (const [id, tile] of this._tiles) {
      if (id === this._selfId) {
        if (ownLevel > loudestLevel) [loudest, loudestLevel] = [tile, ownLevel];
        continue;
      }
      const got = receiving.get(id);
      const decoded = got?.framesDecoded ?? 0;
      // (A new peer connection after a rejoin counts from zero again: any change is news.)
      tile.still = decoded !== tile.decoded ? 0 : tile.still + 1;
      tile.decoded = decoded;
      tile.showVideo(tile.still < STILL_TICKS);
      const level = got?.audioLevel ?? 0;
      if (level > loudestLevel) [loudest, loudestLevel] = [tile, level];
    }
    for (const tile of this._tiles.values()) tile.setSpeaking(tile === loudest);
  }
}
