// The media profile (docs/PROTOCOL.md section 2): an encoded frame travels as
// clear_prefix || SFrame. Packetizers and the relay need the start of a VP8 payload, so that
// part stays in clear and is passed to SFrame as metadata, which makes it authenticated: a relay
// that alters it makes the frame fail to decrypt. VP8 (RFC 7741 section 4.3: bit 0 of byte 0 is
// the inverse key-frame flag, so 0 means key frame) keeps 10 bytes of a key frame (frame tag,
// start code, dimensions) and 3 of a delta frame (frame tag); Opus keeps nothing. The receiver
// finds the length the same way, from the first byte it receives. Same as bot/e2ee/media.py.

import { MediaFrameError, SFrameError } from "./errors.js";

export const VP8_KEY_FRAME_CLEAR = 10;
export const VP8_DELTA_FRAME_CLEAR = 3;
export const CODECS = Object.freeze(["vp8", "opus"]);

export function isVp8KeyFrame(frame) {
  return (frame[0] & 0x01) === 0;
}

// How many leading bytes of `frame` (encoded, or as received) stay in clear.
export function clearPrefixLength(codec, frame) {
  if (codec === "opus") return 0;
  if (codec !== "vp8") throw new TypeError(`no clear-prefix profile for codec ${codec}`);
  // An empty VP8 frame has no room for any prefix; any non-zero length makes it too short.
  if (!frame.length) return VP8_DELTA_FRAME_CLEAR;
  return isVp8KeyFrame(frame) ? VP8_KEY_FRAME_CLEAR : VP8_DELTA_FRAME_CLEAR;
}

// clear_prefix || seal(metadata = clear_prefix, plaintext = rest). A VP8 frame shorter than its
// prefix is not valid VP8, and part of a prefix could not be told apart by the receiver, so it
// throws MediaFrameError and the caller drops it: it is never sent in clear.
export async function protect(codec, frame, seal) {
  const n = clearPrefixLength(codec, frame);
  if (frame.length < n) throw new MediaFrameError(codec, frame.length, n);
  const prefix = frame.slice(0, n);
  const sealed = await seal(prefix, frame.subarray(n));
  const out = new Uint8Array(n + sealed.length);
  out.set(prefix);
  out.set(sealed, n);
  return out;
}

// The encoded frame back from clear_prefix || SFrame; throws only SFrameError.
export async function unprotect(codec, data, open) {
  const n = clearPrefixLength(codec, data);
  if (data.length <= n) throw new SFrameError(`${codec} frame shorter than its clear prefix`);
  const prefix = data.slice(0, n);
  const plaintext = await open(data.subarray(n), prefix);
  const out = new Uint8Array(n + plaintext.length);
  out.set(prefix);
  out.set(plaintext, n);
  return out;
}
