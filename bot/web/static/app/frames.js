// The page's side of the frame worker (static/worker.js): requests answered in order, and the
// transforms that route every sent and received encoded frame through it.
//
// RTCRtpScriptTransform (Chromium, Firefox, Safari) runs the transform in the worker itself;
// browsers that have only createEncodedStreams (older Chromium) hand the worker the streams.
// With neither there is no way to encrypt frames, and the page refuses to join (support.js):
// there is no unencrypted fallback.

import { E2EEError } from "../e2ee/errors.js";
import { keyFromWire, keyToWire } from "./keywire.js";

// Relative to this module, so a server behind a path prefix serves it too.
export const WORKER_URL = new URL("../worker.js", import.meta.url);

export function transformMode() {
  if (typeof RTCRtpScriptTransform === "function") return "script";
  if (typeof RTCRtpSender?.prototype?.createEncodedStreams === "function") return "streams";
  return null;
}

export class FrameWorker {
  constructor(mode = transformMode()) {
    this.mode = mode;
    this._worker = new Worker(WORKER_URL, { type: "module", name: "conclave-frames" });
    this._pending = new Map();
    this._next = 1;
    this._slots = new WeakMap(); // receiver -> slot (createEncodedStreams attaches once)
    this._worker.onmessage = ({ data }) => {
      const waiting = this._pending.get(data.id);
      this._pending.delete(data.id);
      if (data.error) {
        const { code, message } = data.error;
        waiting.reject(code ? new E2EEError(message, code) : new Error(message));
      } else {
        waiting.resolve(data.result);
      }
    };
  }

  request(op, args = {}, transfer = []) {
    const id = this._next++;
    return new Promise((resolve, reject) => {
      this._pending.set(id, { resolve, reject });
      this._worker.postMessage({ id, op, args }, transfer);
    });
  }

  // The peer-connection settings the transforms need.
  get rtcConfiguration() {
    return this.mode === "streams" ? { encodedInsertableStreams: true } : {};
  }

  async init(senderIndex, { activationDelay, gracePeriod, firstGeneration }) {
    const options = { senderIndex, activationDelay, gracePeriod, firstGeneration };
    return keyFromWire(await this.request("init", options));
  }

  async rotate(reason) {
    return keyFromWire(await this.request("rotate", { reason }));
  }

  async latest() {
    return keyFromWire(await this.request("latest"));
  }

  addPeerKey(key) {
    return this.request("addPeerKey", { key: keyToWire(key) });
  }

  removePeer(senderIndex) {
    return this.request("removePeer", { senderIndex });
  }

  // The sender index each verified peer signed: received tracks are bound by it.
  setVerified(peers) {
    const entries = [...peers].map(([pid, entry]) => [pid, entry.senderIndex]);
    return this.request("verified", { entries });
  }

  counts() {
    return this.request("counts");
  }

  attachSender(sender, kind) {
    this._attach(sender, { side: "send", kind, slot: 0 });
  }

  attachReceiver(receiver, kind, owner) {
    let slot = this._slots.get(receiver);
    if (slot !== undefined && this.mode === "streams") {
      this.request("rebind", { slot, owner });
      return;
    }
    slot = this._next++;
    this._slots.set(receiver, slot);
    this._attach(receiver, { side: "receive", kind, owner, slot });
  }

  _attach(endpoint, options) {
    if (this.mode === "script") {
      endpoint.transform = new RTCRtpScriptTransform(this._worker, options);
    } else {
      const { readable, writable } = endpoint.createEncodedStreams();
      this.request("attach", { readable, writable, options }, [readable, writable]);
    }
  }

  terminate() {
    this._worker.terminate();
  }
}
