// The SFrame cipher suite this client implements (RFC 9605 section 4.5): only 0x0004,
// AES_128_GCM_SHA256_128, the one Conclave uses for audio and video. The CTR+HMAC suites would
// need a compound AEAD and 0x0005 SHA-512; a key or message for any of them is refused by name
// rather than handled by a path no meeting ever takes.

import { SFrameError } from "./errors.js";

export const AES_128_GCM_SHA256_128 = 0x0004;
export const DEFAULT_SUITE = AES_128_GCM_SHA256_128;

const PARAMS = Object.freeze({
  suite: AES_128_GCM_SHA256_128,
  name: "AES_128_GCM_SHA256_128",
  nh: 32, // SHA-256 output: base keys and the ratchet
  nk: 16, // AES-128 key
  nn: 12, // GCM nonce
  nt: 16, // GCM tag
});

export function suiteName(suite) {
  return `0x${Number(suite).toString(16).padStart(4, "0")}`;
}

export function suiteParams(suite) {
  if (suite !== AES_128_GCM_SHA256_128) {
    throw new SFrameError(
      `cipher suite ${suiteName(suite)} is not supported: this client implements only 0x0004 ` +
        "(AES_128_GCM_SHA256_128)",
    );
  }
  return PARAMS;
}
