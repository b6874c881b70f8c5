// HKDF-SHA-256 (RFC 5869) from WebCrypto's HMAC, and the SFrame key schedule on top of it:
// derivation of the frame key and salt (RFC 9605 section 4.4.2) and the sender-key ratchet
// (section 5.1). HPKE uses the same HKDF. Extract and Expand are separate steps, which
// WebCrypto's own HKDF does not offer.

import { asciiBytes, concat, uintBytes } from "./bytes.js";

const HASH_LENGTH = 32;
// HMAC pads a short key with zeros, so HKDF's empty salt is this key; WebCrypto refuses an
// empty HMAC key.
const EMPTY_SALT = new Uint8Array(HASH_LENGTH);

const KEY_LABEL = asciiBytes("SFrame 1.0 Secret key ");
const SALT_LABEL = asciiBytes("SFrame 1.0 Secret salt ");
const RATCHET_LABEL = asciiBytes("SFrame 1.0 Ratchet");

function hmacKey(key) {
  return crypto.subtle.importKey(
    "raw",
    key.length ? key : EMPTY_SALT,
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
}

export async function hmacSha256(key, data) {
  return new Uint8Array(await crypto.subtle.sign("HMAC", await hmacKey(key), data));
}

export function hkdfExtract(salt, ikm) {
  return hmacSha256(salt, ikm);
}

export async function hkdfExpand(prk, info, length) {
  if (length > 255 * HASH_LENGTH) throw new RangeError("HKDF-Expand output too long");
  const key = await hmacKey(prk);
  const out = new Uint8Array(length);
  let block = new Uint8Array(0);
  for (let i = 1, pos = 0; pos < length; i++) {
    block = new Uint8Array(await crypto.subtle.sign("HMAC", key, concat(block, info, [i])));
    out.set(block.subarray(0, length - pos), pos);
    pos += block.length;
  }
  return out;
}

// The KID goes into the labels as a fixed 8-byte integer, not in its compact header form.
export function keyLabel(params, kid) {
  return concat(KEY_LABEL, uintBytes(kid, 8), uintBytes(params.suite, 2));
}

export function saltLabel(params, kid) {
  return concat(SALT_LABEL, uintBytes(kid, 8), uintBytes(params.suite, 2));
}

// {key, salt} for frames under `kid` with `baseKey`: different for every KID, so two senders
// (or two generations) never share a nonce space.
export async function deriveKeySalt(params, kid, baseKey) {
  const secret = await hkdfExtract(new Uint8Array(0), baseKey);
  const [key, salt] = await Promise.all([
    hkdfExpand(secret, keyLabel(params, kid), params.nk),
    hkdfExpand(secret, saltLabel(params, kid), params.nn),
  ]);
  return { key, salt };
}

// base_key[step + 1] from base_key[step]; one-way, so a newcomer given step + 1 cannot go back.
export async function ratchet(params, baseKey) {
  const secret = await hkdfExtract(new Uint8Array(0), baseKey);
  return hkdfExpand(secret, RATCHET_LABEL, params.nh);
}
