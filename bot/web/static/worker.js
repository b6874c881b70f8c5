// The frame worker: every encoded audio and video frame this page sends or receives passes
// through here, and only here are the SFrame keys used (docs/PROTOCOL.md sections 1-3).
//
// - Sent frames leave as clear_prefix || SFrame under this client's current sender key; a frame
//   that cannot be encrypted is dropped, never sent in clear.
// - A received track is bound to the sender index that its msid owner signed in its verified
//   key announcement (the page posts those). A frame whose KID names anyone else is refused
//   before decryption (counted as misattributed); one that fails to decrypt is dropped
//   (counted). Neither reaches the decoder.
// - The page's keyring asks for rotations and hands over the peers' keys; the sender keys'
//   state machine (ratchet, generations, activation delay, grace period) lives here.
//
// Frames arrive through RTCRtpScriptTransform (`rtctransform` events) or, in browsers that
// only have createEncodedStreams, as streams the page transfers with an `attach` request.

import { decodeHeader } from "./e2ee/header.js";
import { KeyId } from "./e2ee/kid.js";
import { clearPrefixLength, protect, unprotect } from "./e2ee/prefix.js";
import { SenderKeys } from "./e2ee/senderkeys.js";
import { keyFromWire, keyToWire } from "./app/keywire.js";

const CODEC = Object.freeze({ video: "vp8", audio: "opus" });
// No participant has sender index 0 (section 3.1): a track bound to nobody yet.
const NOBODY = 0;
const TICK_MS = 250;

let keys = null; // SenderKeys, once the page has said who this client is
const verified = new Map(); // participant id -> the sender index its announcement signed
const bindings = new Map(); // receive slot -> {owner, index}
const counts = { sent: 0, unsent: 0, decrypted: 0, dropped: 0, misattributed: 0 };
const received = new Map(); // owner -> {audio, video, dropped}: frames decrypted, dropped

const now = () => performance.now() / 1000;

// The sender index in the KID of clear_prefix || SFrame, read without decrypting; null if there
// is no well-formed header (such a frame fails to decrypt anyway). As bot/e2ee/attribution.py.
function namedSender(codec, data) {
  try {
    const keyId = KeyId.parse(decodeHeader(data.subarray(clearPrefixLength(codec, data))).kid);
    return keyId === null ? null : keyId.senderIndex;
  } catch {
    return null;
  }
}

function sending(kind) {
  const codec = CODEC[kind];
  return async (frame, controller) => {
    try {
      const seal = (metadata, plaintext) => keys.encrypt(metadata, plaintext, now());
      frame.data = (await protect(codec, new Uint8Array(frame.data), seal)).buffer;
    } catch {
      counts.unsent++; // no key yet, or not a valid frame: never sent in clear
      return;
    }
    counts.sent++;
    controller.enqueue(frame);
  };
}

function ownerCounts(owner) {
  if (!received.has(owner)) received.set(owner, { audio: 0, video: 0, dropped: 0 });
  return received.get(owner);
}

function receiving(kind, slot) {
  const codec = CODEC[kind];
  return async (frame, controller) => {
    const binding = bindings.get(slot);
    const data = new Uint8Array(frame.data);
    if (binding.index === null) binding.index = verified.get(binding.owner) ?? null;
    const named = namedSender(codec, data);
    if (named !== null && named !== (binding.index ?? NOBODY)) {
      counts.misattributed++;
      return;
    }
    try {
      const open = (sframe, metadata) => keys.decrypt(sframe, metadata, now());
      frame.data = (await unprotect(codec, data, open)).buffer;
    } catch {
      counts.dropped++;
      ownerCounts(binding.owner).dropped++;
      return;
    }
    counts.decrypted++;
    ownerCounts(binding.owner)[kind]++;
    controller.enqueue(frame);
  };
}

function attach(readable, writable, { side, kind, owner, slot }) {
  if (!Object.hasOwn(CODEC, kind)) throw new TypeError(`no media profile for ${kind}`);
  let transform;
  if (side === "send") {
    transform = sending(kind);
  } else {
    bindings.set(slot, { owner, index: null });
    transform = receiving(kind, slot);
  }
  // A stream ends when its track does; nothing to report then.
  readable
    .pipeThrough(new TransformStream({ transform }))
    .pipeTo(writable)
    .catch(() => {});
}

const requests = {
  async init({ senderIndex, activationDelay, gracePeriod, firstGeneration }) {
    if (keys !== null) throw new Error("the frame worker is already set up");
    keys = await SenderKeys.create(senderIndex, { activationDelay, gracePeriod, firstGeneration });
    setInterval(() => keys.tick(now()), TICK_MS);
    return keyToWire(keys.latestKey);
  },
  async rotate({ reason }) {
    const rotations = { join: "onJoin", leave: "onLeave", restart: "restart" };
    return keyToWire(await keys[rotations[reason]](now()));
  },
  async latest() {
    await keys.tick(now()); // runs after any rotation still in progress
    return keyToWire(keys.latestKey);
  },
  async addPeerKey({ key }) {
    await keys.addPeerKey(keyFromWire(key), now());
  },
  async removePeer({ senderIndex }) {
    await keys.removePeer(senderIndex);
  },
  verified({ entries }) {
    verified.clear();
    for (const [participantId, senderIndex] of entries) verified.set(participantId, senderIndex);
  },
  attach({ readable, writable, options }) {
    attach(readable, writable, options);
  },
  // A receiver the relay reused for someone else (createEncodedStreams attaches only once).
  rebind({ slot, owner }) {
    bindings.set(slot, { owner, index: null });
  },
  counts() {
    return { ...counts, received: Object.fromEntries(received) };
  },
};

self.onmessage = async ({ data }) => {
  const { id, op, args } = data;
  try {
    self.postMessage({ id, result: await requests[op](args ?? {}) });
  } catch (error) {
    const { name, code, message } = error;
    self.postMessage({ id, error: { name, code: code ?? null, message: String(message) } });
  }
};

self.onrtctransform = ({ transformer }) => {
  attach(transformer.readable, transformer.writable, transformer.options);
};
