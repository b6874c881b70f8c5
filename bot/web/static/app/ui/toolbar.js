// The meeting's controls: microphone, camera, screen share, the people panel, leave, and for
// the host lock/unlock and end (which asks once more before ending it for everyone). Each
// button's label says what pressing it does.

import { lockedSentence } from "../presenter.js";
import { $, announce, setLabel } from "./dom.js";

export class Toolbar {
  constructor(local, session) {
    this._local = local;
    this._session = session;
    this.locked = false;
    $("btn-mic").addEventListener("click", () => {
      local.setMic(!local.micOn);
      this.refresh();
      announce(local.micOn ? "Microphone on" : "Microphone muted");
    });
    $("btn-cam").addEventListener("click", async () => {
      await local.setCamera(!local.cameraOn);
      this.refresh();
    });
    $("btn-share").addEventListener("click", async () => {
      if (local.sharing) local.stopScreenShare();
      else await local.startScreenShare();
      this.refresh();
    });
    $("btn-panel").addEventListener("click", () => {
      const panel = $("panel");
      panel.hidden = !panel.hidden;
      $("btn-panel").setAttribute("aria-expanded", String(!panel.hidden));
    });
    $("btn-lock").addEventListener("click", () => session.setLocked(!this.locked));
    $("btn-end").addEventListener("click", () => {
      $("btn-end").hidden = true;
      $("btn-end-confirm").hidden = false;
      $("btn-end-confirm").focus();
    });
    $("btn-end-confirm").addEventListener("click", () => session.endMeeting());
    $("btn-leave").addEventListener("click", () => session.leave());
  }

  setHost(isHost) {
    $("host-controls").hidden = !isHost;
  }

  setLocked(locked) {
    this.locked = locked;
    setLabel($("btn-lock"), locked ? "Unlock meeting" : "Lock meeting");
    $("lock-state").hidden = !locked;
    announce(lockedSentence(locked));
  }

  refresh() {
    const local = this._local;
    setLabel($("btn-mic"), local.micOn ? "Mute" : "Unmute");
    $("btn-mic").classList.toggle("off", !local.micOn);
    $("btn-mic").disabled = local.audio === null;
    setLabel($("btn-cam"), local.cameraOn ? "Stop video" : "Start video");
    $("btn-cam").classList.toggle("off", !local.cameraOn);
    setLabel($("btn-share"), local.sharing ? "Stop sharing" : "Share screen");
    $("btn-share").classList.toggle("active", local.sharing);
    $("btn-share").hidden = !navigator.mediaDevices?.getDisplayMedia;
  }
}
