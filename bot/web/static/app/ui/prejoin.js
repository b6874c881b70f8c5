// Before joining: the meeting's topic and the invited name (from the welcome), a preview of
// the camera, the microphone's level, device pickers (speaker only where the browser can route
// audio), and the Join button. A guest of a room with a lobby sees that it waits for the host.

import { devicesSentence, initials } from "../presenter.js";
import { $, announce, el, setLabel, showScreen } from "./dom.js";

export class PreJoin {
  constructor(local, { onJoin, onSpeaker }) {
    this._local = local;
    this._onSpeaker = onSpeaker;
    this._visible = false;
    $("join-button").addEventListener("click", () => onJoin());
    $("pre-mic").addEventListener("click", () => this._toggleMic());
    $("pre-cam").addEventListener("click", () => this._toggleCamera());
    $("pick-camera").addEventListener("change", (e) => this._pick("camera", e.target.value));
    $("pick-microphone").addEventListener("change", (e) => this._pick("mic", e.target.value));
    $("pick-speaker").addEventListener("change", (e) => this._onSpeaker(e.target.value));
  }

  async show(welcome) {
    $("prejoin-topic").textContent = welcome.topic || "Meeting";
    $("prejoin-name").replaceChildren("You are joining as ", el("strong", { text: welcome.name }));
    $("preview-initials").textContent = initials(welcome.name);
    document.title = `${welcome.topic || "Meeting"} · Conclave`;
    showScreen("screen-prejoin");
    $("join-button").disabled = false;
    this._visible = true;
    this.refresh();
    await this._fillPickers();
    this._meter();
    $("join-button").focus();
  }

  hide() {
    this._visible = false;
  }

  // The lobby: `sentence` while the host has not let this guest in, null once it has.
  setWaiting(sentence) {
    const note = $("prejoin-lobby");
    note.hidden = sentence === null;
    note.textContent = sentence ?? "";
    $("join-button").disabled = false;
    $("join-button").textContent = sentence === null ? "Join now" : "Join when let in";
  }

  // Pressed Join while still in the lobby.
  setPending() {
    const button = $("join-button");
    button.disabled = true;
    button.textContent = "Waiting for the host…";
    announce("You will join as soon as the host lets you in.");
  }

  refresh() {
    const camera = this._local.cameraOn ? this._local.camera : null;
    const video = $("preview-video");
    video.srcObject = camera ? new MediaStream([camera]) : null;
    video.hidden = !camera;
    $("preview-initials").hidden = Boolean(camera);
    const { micOn, cameraOn } = this._local;
    setLabel($("pre-mic"), micOn ? "Turn microphone off" : "Turn microphone on");
    setLabel($("pre-cam"), cameraOn ? "Turn camera off" : "Turn camera on");
    $("prejoin-devices").textContent = devicesSentence(this._local.problems);
  }

  async _toggleMic() {
    this._local.setMic(!this._local.micOn);
    this.refresh();
  }

  async _toggleCamera() {
    await this._local.setCamera(!this._local.cameraOn);
    this.refresh();
  }

  async _pick(what, deviceId) {
    if (what === "camera") await this._local.useCamera(deviceId);
    else await this._local.useMicrophone(deviceId);
    this.refresh();
  }

  async _fillPickers() {
    const found = await this._local.devices();
    const current = {
      videoinput: this._local.camera?.getSettings().deviceId,
      audioinput: this._local.audio?.getSettings().deviceId,
    };
    const fill = (select, devices, kind, noun) => {
      const options = devices.map((d, i) =>
        el("option", {
          value: d.deviceId,
          text: d.label || `${noun} ${i + 1}`,
          selected: d.deviceId === current[kind],
        }),
      );
      if (!options.length) options.push(el("option", { value: "", text: `No ${noun.toLowerCase()}` }));
      select.replaceChildren(...options);
      select.disabled = devices.length === 0;
    };
    fill($("pick-camera"), found.videoinput, "videoinput", "Camera");
    fill($("pick-microphone"), found.audioinput, "audioinput", "Microphone");
    $("speaker-field").hidden = !this._local.canChooseSpeaker || !found.audiooutput.length;
    fill($("pick-speaker"), found.audiooutput, "audiooutput", "Speaker");
  }

  _meter() {
    const meter = $("mic-level");
    const step = () => {
      if (!this._visible) return;
      meter.value = this._local.level();
      requestAnimationFrame(step);
    };
    requestAnimationFrame(step);
  }
}
