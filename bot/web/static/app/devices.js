// This participant's own camera, microphone, screen and speaker, as chosen before and during
// the meeting. What it sends is `tracks()`; whoever sends them is told by `onChange`.
//
// Permission denied or no device is not an error: the person joins without it and is told
// which (`problems`). A screen share replaces the camera on the same sender and ends when the
// browser's own "stop sharing" button is used.

const VIDEO = { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } };

// Why a device could not be used, in a few words for the pre-join screen.
function problemOf(error) {
  if (error?.name === "NotAllowedError" || error?.name === "SecurityError") return "denied";
  if (error?.name === "NotFoundError" || error?.name === "OverconstrainedError") return "missing";
  return "unavailable";
}

export class LocalMedia {
  constructor() {
    this.audio = null; // microphone track
    this.camera = null; // camera track
    this.screen = null; // screen-share track
    this.micOn = true;
    this.cameraOn = true;
    this.problems = { audio: null, video: null };
    this.speakerId = "";
    this.onChange = () => {};
    this._analyser = null;
    this._context = null;
  }

  // The tracks to send now: the screen, if shared, goes out instead of the camera.
  tracks() {
    return {
      audio: this.audio,
      video: this.screen ?? (this.cameraOn ? this.camera : null),
    };
  }

  // Ask for both devices (one prompt), then for each alone if that fails.
  async open() {
    const both = await this._get({ audio: true, video: VIDEO });
    if (both !== null) {
      this._take(both);
      return;
    }
    for (const [kind, constraint] of [
      ["audio", true],
      ["video", VIDEO],
    ]) {
      const stream = await this._get({ [kind]: constraint }, kind);
      if (stream !== null) this._take(stream);
    }
  }

  async _get(constraints, kind = null) {
    if (!navigator.mediaDevices?.getUserMedia) {
      for (const k of kind ? [kind] : ["audio", "video"]) this.problems[k] = "unavailable";
      return null;
    }
    try {
      return await navigator.mediaDevices.getUserMedia(constraints);
    } catch (error) {
      if (kind !== null) this.problems[kind] = problemOf(error);
      return null;
    }
  }

  _take(stream) {
    for (const track of stream.getTracks()) {
      if (track.kind === "audio") this._setAudio(track);
      else this._setCamera(track);
    }
  }

  _setAudio(track) {
    this.audio?.stop();
    this.audio = track;
    track.enabled = this.micOn;
    this.problems.audio = null;
    this._meter(track);
    this.onChange("audio");
  }

  _setCamera(track) {
    this.camera?.stop();
    this.camera = track;
    this.problems.video = null;
    this.onChange("video");
  }

  // {audioinput, videoinput, audiooutput}: [{deviceId, label}]; labels once permitted.
  async devices() {
    const found = { audioinput: [], videoinput: [], audiooutput: [] };
    const all = (await navigator.mediaDevices?.enumerateDevices?.()) ?? [];
    for (const d of all) found[d.kind]?.push({ deviceId: d.deviceId, label: d.label });
    return found;
  }

  get canChooseSpeaker() {
    return typeof HTMLMediaElement.prototype.setSinkId === "function";
  }

  async useMicrophone(deviceId) {
    const stream = await this._get({ audio: { deviceId: { exact: deviceId } } }, "audio");
    if (stream !== null) this._setAudio(stream.getAudioTracks()[0]);
  }

  async useCamera(deviceId) {
    const stream = await this._get({ video: { ...VIDEO, deviceId: { exact: deviceId } } }, "video");
    if (stream !== null) this._setCamera(stream.getVideoTracks()[0]);
  }

  setMic(on) {
    this.micOn = on;
    if (this.audio) this.audio.enabled = on;
  }

  // Off stops the camera (its light goes out); on opens it again.
  async setCamera(on) {
    this.cameraOn = on;
    if (!on) {
      this.camera?.stop();
      this.camera = null;
      this.onChange("video");
    } else {
      const stream = await this._get({ video: VIDEO }, "video");
      if (stream !== null) this._setCamera(stream.getVideoTracks()[0]);
      else this.cameraOn = false;
    }
  }

  get sharing() {
    return this.screen !== null;
  }

  // Resolves false if the person chose nothing to share.
  async startScreenShare() {
    let stream;
    try {
      stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
    } catch {
      return false;
    }
    const track = stream.getVideoTracks()[0];
    track.contentHint = "detail";
    // The browser's own "stop sharing" button ends the track.
    track.addEventListener("ended", () => this.stopScreenShare());
    this.screen = track;
    this.onChange("video");
    return true;
  }

  stopScreenShare() {
    if (this.screen === null) return;
    this.screen.stop();
    this.screen = null;
    this.onChange("video");
  }

  // The microphone's level, 0..1, for the meter and the active-speaker highlight.
  level() {
    if (this._analyser === null || !this.micOn) return 0;
    const samples = new Float32Array(this._analyser.fftSize);
    this._analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    for (const s of samples) sum += s * s;
    return Math.min(1, Math.sqrt(sum / samples.length) * 4);
  }

  _meter(track) {
    try {
      this._context ??= new AudioContext();
      const source = this._context.createMediaStreamSource(new MediaStream([track]));
      this._analyser = this._context.createAnalyser();
      this._analyser.fftSize = 1024;
      source.connect(this._analyser);
    } catch {
      this._analyser = null; // no WebAudio: no meter, the rest works
    }
  }

  // Browsers start audio only after a click or key press: called from the Join button.
  resumeAudio() {
    return this._context?.resume().catch(() => {});
  }

  stop() {
    for (const track of [this.audio, this.camera, this.screen]) track?.stop();
    this._context?.close().catch(() => {});
  }
}
