// The meeting page: /j/<room>#<invite key>.
//
// 1. The invite key is taken out of the address bar before anything else (invite.js).
// 2. A browser that cannot encrypt frames in the page, or lacks X25519/Ed25519, is refused
//    with a page saying which browsers work: there is no unencrypted fallback.
// 3. The page connects at once, so a spent, expired, revoked, locked, full or ended link is
//    explained before anyone is asked for a camera. The welcome names the meeting and the
//    invited name; keys are announced at once (the others' security codes must not wait on
//    this one), and media is published when the person presses Join.

import { MeetingKeys } from "../e2ee/keys.js";
import { FrameWorker, transformMode } from "./frames.js";
import { LocalMedia } from "./devices.js";
import { TabMemory, roomFromPath, takeInvite } from "./invite.js";
import { SENTENCES, TITLES, endedSentence, frameCounts, titleOf } from "./presenter.js";
import { MeetingSession } from "./session.js";
import { websocketUrl } from "./signaling.js";
import { $, announce, showScreen } from "./ui/dom.js";
import { showPage } from "./ui/pages.js";
import { Panel } from "./ui/panel.js";
import { PreJoin } from "./ui/prejoin.js";
import { Stage } from "./ui/stage.js";
import { Toolbar } from "./ui/toolbar.js";

const TICK_MS = 500;
const invite = takeInvite(window.location, window.history);

// This tab's meeting keys (X25519 and Ed25519), made first: a browser whose WebCrypto cannot
// make them cannot take part, and one that can has them ready before the welcome comes.
async function makeMeetingKeys() {
  try {
    return await MeetingKeys.generateStorable();
  } catch {
    return null;
  }
}

class MeetingPage {
  constructor(session, local, frames) {
    this.session = session;
    this.local = local;
    this.frames = frames;
    this.inMeeting = false;
    this.counts = { decrypted: 0, dropped: 0, misattributed: 0 };
    this.receiving = new Map();
    this.stage = new Stage($("stage"));
    this.panel = new Panel({
      onKick: (pid) => session.kick(pid),
      onAdmit: (pid) => session.admit(pid),
    });
    this.toolbar = new Toolbar(local, session);
    this.prejoin = new PreJoin(local, {
      onJoin: () => this.join(),
      onSpeaker: (id) => this.stage.setSpeaker(id),
    });
    local.onChange = (kind) => this.tracksChanged(kind);
  }

  // --- what the session tells (session.js `ui`) ----------------------------------------------

  async welcome(w, first) {
    this.stage.setSelf(w.participantId);
    this.panel.setHost(w.role === "host");
    this.toolbar.setHost(w.role === "host");
    $("meeting-topic").textContent = w.topic || "Meeting";
    if (!first) {
      $("connection-note").hidden = true;
      announce("Rejoined the meeting.");
      return;
    }
    await this.local.open();
    performance.mark("conclave:devices");
    await this.prejoin.show(w);
    performance.mark("conclave:prejoin");
  }

  lobby(sentence) {
    this.prejoin.setWaiting(sentence);
  }

  admitted() {
    this.prejoin.setWaiting(null);
    announce("The host let you in.");
    if (this.session.joined) this.enter();
  }

  roster(roster, view) {
    this.stage.update(roster);
    this.panel.roster(roster, view, this.session.welcome?.participantId);
    this.ownVideo();
  }

  lobbyWaiting(waiting) {
    this.panel.lobby(waiting);
  }

  locked(locked) {
    this.toolbar.setLocked(locked);
  }

  notice(message) {
    this.panel.notice(message);
  }

  warning(message) {
    this.panel.notice(message);
  }

  track(owner, kind, track) {
    this.stage.setTrack(owner, kind, track);
  }

  mediaStopped() {}

  connectionLost() {
    $("connection-note").hidden = false;
    announce("Connection lost; rejoining…");
  }

  ended(kind, sentence, code) {
    this.inMeeting = false;
    this.prejoin.hide();
    this.local.stop();
    const said = kind === "left" ? SENTENCES.left : endedSentence(kind, sentence);
    showPage(titleOf(kind, code), said);
  }

  // --- the person's actions ------------------------------------------------------------------

  async join() {
    await this.local.resumeAudio();
    await this.session.join();
    if (this.session.admitted) this.enter();
    else this.prejoin.setPending();
  }

  enter() {
    if (this.inMeeting) return;
    this.inMeeting = true;
    this.prejoin.hide();
    showScreen("screen-meeting");
    this.stage.update(this.session.roster);
    this.ownVideo();
    this.toolbar.refresh();
    announce("You joined the meeting.");
    $("btn-mic").focus();
    this.tick();
  }

  async tracksChanged(kind) {
    await this.session.updateTracks(kind);
    this.ownVideo();
    this.prejoin.refresh();
    this.toolbar.refresh(); // e.g. the browser's own "stop sharing" ended the screen share
  }

  ownVideo() {
    const video = this.local.tracks().video;
    this.stage.setOwnVideo(video, video !== null && video === this.local.camera);
  }

  status(text) {
    $("e2ee-status").textContent = text;
  }

  async tick() {
    if (!this.inMeeting) return;
    try {
      this.counts = await this.frames.counts();
      this.receiving = (await this.session.media?.receiving()) ?? new Map();
      this.stage.tick(this.receiving, this.local.level());
      this.status(frameCounts(this.counts));
    } finally {
      setTimeout(() => this.tick(), TICK_MS);
    }
  }

  // For people debugging a meeting, and for the browser tests: what this page knows.
  async report() {
    const receiving = (await this.session.media?.receiving()) ?? new Map();
    return {
      screen: document.querySelector(".screen:not([hidden])")?.id ?? null,
      participantId: this.session.welcome?.participantId ?? null,
      transform: this.frames.mode,
      code: this.session.keyring?.code ?? null,
      roster: this.session.roster,
      counts: await this.frames.counts(),
      receiving: Object.fromEntries(receiving),
      sending: (await this.session.media?.sending()) ?? null,
    };
  }
}

async function main() {
  performance.mark("conclave:start");
  const roomId = roomFromPath(window.location.pathname);
  if (!window.isSecureContext || !globalThis.crypto?.subtle) {
    showPage(TITLES.unsupported, SENTENCES.insecure);
    return;
  }
  const newKeys = transformMode() === null ? null : await makeMeetingKeys();
  if (newKeys === null) {
    showPage(TITLES.unsupported, SENTENCES.unsupported);
    return;
  }
  const memory = new TabMemory(roomId);
  if (roomId === null || (invite === null && memory.load() === null)) {
    showPage(TITLES.no_invite, SENTENCES.no_invite);
    return;
  }
  const frames = new FrameWorker();
  const local = new LocalMedia();
  const ui = {};
  const session = new MeetingSession({
    roomId,
    invite,
    newKeys,
    memory,
    url: websocketUrl(window.location),
    frames,
    local,
    ui,
  });
  const page = new MeetingPage(session, local, frames);
  // The session calls the page's methods; bound here so that they keep `this`.
  for (const name of Object.getOwnPropertyNames(MeetingPage.prototype)) {
    if (name !== "constructor") ui[name] = (...args) => page[name](...args);
  }
  globalThis.conclaveMeeting = Object.freeze({
    report: () => page.report(),
    // Only the frames decoded per participant: what report() says of "receiving", at the
    // cost of one getStats (the join bench polls it).
    receiving: async () => Object.fromEntries((await session.media?.receiving()) ?? []),
    prepared: () => session.isPrepared(),
  });
  session.start();
}

main().catch((error) => {
  showPage("Something went wrong", `The meeting page stopped: ${error.message}`);
});
