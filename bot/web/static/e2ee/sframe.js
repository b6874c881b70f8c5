// RFC 9605 SFrame: header || AEAD(sframe_key, nonce, aad = header || metadata, plaintext).
//
// `encrypt`/`decrypt` are the one-shot forms of the RFC (Appendix C is checked against them).
// `SFrameContext` is the form for real use: keys derived once per KID, a send counter per key
// that never repeats, and a replay window per receive key. A KID is either a send or a receive
// key, never both (RFC 9605 section 4.4.1), and a send KID is never reinstalled, because its
// counter would restart and reuse nonces. Same rules as bot/e2ee/sframe.py.

import { MAX_U64, concat } from "./bytes.js";
import { CounterExhausted, KeyConflict, SFrameError } from "./errors.js";
import { decodeHeader, encodeHeader, toU64 } from "./header.js";
import { deriveKeySalt } from "./kdf.js";
import { DEFAULT_SUITE, suiteParams } from "./suites.js";

const AUTH_FAILED = "authentication failed";

// Receivers accept a counter once, and out of order as long as it is within this many counters
// of the highest one accepted (RFC 9605 section 9.3 leaves anti-replay to the application).
export const DEFAULT_WINDOW = 1024;

// sframe_salt XOR CTR, with CTR as an Nn-byte big-endian integer.
export function frameNonce(salt, ctr) {
  const nonce = Uint8Array.from(salt);
  let v = ctr;
  for (let i = nonce.length - 1; v > 0n; i--) {
    nonce[i] ^= Number(v & 0xffn);
    v >>= 8n;
  }
  return nonce;
}

function importAesKey(key) {
  return crypto.subtle.importKey("raw", key, "AES-GCM", false, ["encrypt", "decrypt"]);
}

async function seal(aesKey, nonce, aad, plaintext) {
  const params = { name: "AES-GCM", iv: nonce, additionalData: aad, tagLength: 128 };
  return new Uint8Array(await crypto.subtle.encrypt(params, aesKey, plaintext));
}

// The plaintext, or SFrameError: WebCrypto's OperationError on a bad tag stays inside.
async function open(aesKey, nonce, aad, ciphertext) {
  const params = { name: "AES-GCM", iv: nonce, additionalData: aad, tagLength: 128 };
  try {
    return new Uint8Array(await crypto.subtle.decrypt(params, aesKey, ciphertext));
  } catch {
    throw new SFrameError(AUTH_FAILED);
  }
}

async function frameKey(params, kid, baseKey) {
  const { key, salt } = await deriveKeySalt(params, kid, baseKey);
  return { aesKey: await importAesKey(key), salt };
}

// One SFrame ciphertext (header || ciphertext || tag) for an explicit KID and CTR.
export async function encrypt(suite, baseKey, kid, ctr, metadata, plaintext) {
  const params = suiteParams(suite);
  const header = encodeHeader(kid, ctr);
  const { aesKey, salt } = await frameKey(params, toU64(kid, "KID"), baseKey);
  const body = await seal(
    aesKey,
    frameNonce(salt, toU64(ctr, "CTR")),
    concat(header, metadata),
    plaintext,
  );
  return concat(header, body);
}

// The plaintext of `frame` under `baseKey` (bound to the KID in its header).
export async function decrypt(suite, baseKey, frame, metadata) {
  const params = suiteParams(suite);
  const { kid, ctr, length } = decodeHeader(frame);
  if (frame.length - length < params.nt) throw new SFrameError("truncated ciphertext");
  const { aesKey, salt } = await frameKey(params, kid, baseKey);
  const header = frame.subarray(0, length);
  return open(aesKey, frameNonce(salt, ctr), concat(header, metadata), frame.subarray(length));
}

// Replay window: slot `ctr % size` holds the counter last accepted there. Within the window two
// counters never share a slot, so "slot holds ctr" means "seen", and nothing has to shift as
// the window advances.
class ReplayWindow {
  constructor(size) {
    this.size = BigInt(size);
    this.slots = new Array(size).fill(-1n);
    this.top = -1n;
  }

  accepts(ctr) {
    if (ctr > this.top) return true;
    return this.top - ctr < this.size && this.slots[Number(ctr % this.size)] !== ctr;
  }

  // Only after the frame authenticated: a forged frame must not move the window.
  mark(ctr) {
    this.slots[Number(ctr % this.size)] = ctr;
    if (ctr > this.top) this.top = ctr;
  }
}

// Keys of one cipher suite, by KID (BigInt), each marked for sending or for receiving.
export class SFrameContext {
  constructor(suite = DEFAULT_SUITE, { replayWindow = DEFAULT_WINDOW } = {}) {
    if (!(replayWindow >= DEFAULT_WINDOW)) {
      throw new RangeError(`the replay window must span at least ${DEFAULT_WINDOW} counters`);
    }
    this.params = suiteParams(suite);
    this._window = replayWindow;
    this._send = new Map(); // kid -> {aesKey, salt, header(ctr), nextCtr}
    this._receive = new Map(); // kid -> {aesKey, salt, replay}
    this._retired = new Set();
  }

  async addSendKey(kid, baseKey) {
    kid = this._checkNew(kid);
    const derived = await frameKey(this.params, kid, baseKey);
    this._checkNew(kid); // the derivation awaited: someone may have installed it meanwhile
    this._send.set(kid, { ...derived, nextCtr: 0n });
  }

  async addReceiveKey(kid, baseKey) {
    kid = this._checkNew(kid);
    const derived = await frameKey(this.params, kid, baseKey);
    this._checkNew(kid);
    this._receive.set(kid, { ...derived, replay: new ReplayWindow(this._window) });
  }

  _checkNew(kid) {
    let v;
    try {
      v = toU64(kid, "KID");
    } catch {
      throw new KeyConflict(kid, "a KID is a 64-bit unsigned integer");
    }
    if (this._send.has(v) || this._receive.has(v)) {
      throw new KeyConflict(v, "the KID is already in use");
    }
    if (this._retired.has(v)) throw new KeyConflict(v, "the KID was used for sending before");
    return v;
  }

  // Forget a key. A removed send KID can never be added again.
  removeKey(kid) {
    if (this._send.delete(kid)) this._retired.add(kid);
    this._receive.delete(kid);
  }

  hasSendKey(kid) {
    return this._send.has(kid);
  }

  hasReceiveKey(kid) {
    return this._receive.has(kid);
  }

  receiveKids() {
    return new Set(this._receive.keys());
  }

  async encrypt(kid, metadata, plaintext) {
    const key = this._send.get(kid);
    if (key === undefined) throw new SFrameError(`no send key for KID ${kid}`);
    // The counter is taken before anything awaits, so concurrent calls never share one.
    const ctr = key.nextCtr;
    if (ctr > MAX_U64) throw new CounterExhausted(kid);
    key.nextCtr = ctr + 1n;
    const header = encodeHeader(kid, ctr);
    const body = await seal(
      key.aesKey,
      frameNonce(key.salt, ctr),
      concat(header, metadata),
      plaintext,
    );
    return concat(header, body);
  }

  async decrypt(frame, metadata) {
    return (await this.decryptFrame(frame, metadata)).plaintext;
  }

  // {kid, plaintext}; the KID is authentic once this returns.
  async decryptFrame(frame, metadata) {
    const { kid, ctr, length } = decodeHeader(frame);
    const key = this._receive.get(kid);
    if (key === undefined) throw new SFrameError(`no receive key for KID ${kid}`);
    const replayed = () => new SFrameError("replayed or too old counter");
    if (!key.replay.accepts(ctr)) throw replayed();
    const header = frame.subarray(0, length);
    const plaintext = await open(
      key.aesKey,
      frameNonce(key.salt, ctr),
      concat(header, metadata),
      frame.subarray(length),
    );
    // Checked again: the same frame may have been decrypted while this one awaited.
    if (!key.replay.accepts(ctr)) throw replayed();
    key.replay.mark(ctr);
    return { kid, plaintext };
  }
}
