// Byte helpers shared by the end-to-end encryption modules: everything on the wire is
// big-endian and length-prefixed ASCII (docs/PROTOCOL.md), and 64-bit values (KIDs, counters)
// are BigInt because a JS number loses integers above 2^53.

export const MAX_U64 = (1n << 64n) - 1n;

export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let pos = 0;
  for (const part of parts) {
    out.set(part, pos);
    pos += part.length;
  }
  return out;
}

export function hexToBytes(hex) {
  if (!/^(?:[0-9a-fA-F]{2})*$/.test(hex)) throw new TypeError("not an even-length hex string");
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export function bytesToHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// `value` (a number or a BigInt) as `length` big-endian bytes; RangeError if it does not fit,
// so a field is never silently truncated.
export function uintBytes(value, length) {
  let v = BigInt(value);
  if (v < 0n || v >> BigInt(8 * length) !== 0n) {
    throw new RangeError(`${value} does not fit in ${length} bytes`);
  }
  const out = new Uint8Array(length);
  for (let i = length - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

export function readUint(bytes, offset, length) {
  let v = 0n;
  for (let i = offset; i < offset + length; i++) v = (v << 8n) | BigInt(bytes[i]);
  return v;
}

// The ASCII bytes of `text`, or null if it has any other character: ids are ASCII on the wire,
// and a UTF-16 string must not be narrowed into something another client reads differently.
export function asciiBytes(text) {
  if (typeof text !== "string" || !/^[\x00-\x7f]*$/.test(text)) return null;
  return Uint8Array.from(text, (c) => c.charCodeAt(0));
}

export function asciiText(bytes) {
  for (const b of bytes) if (b > 0x7f) return null;
  return String.fromCharCode(...bytes);
}

// len(id)(1) || id, or null unless `text` is 1-255 ASCII characters.
export function lengthPrefixed(text) {
  const raw = asciiBytes(text);
  if (raw === null || raw.length < 1 || raw.length > 255) return null;
  return concat([raw.length], raw);
}

// Compares every byte whatever the first difference, so timing says nothing about where two
// secrets differ.
export function equalBytes(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

// Byte order, for sorting ids the way every other client sorts them.
export function compareBytes(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

export function randomBytes(n) {
  return crypto.getRandomValues(new Uint8Array(n));
}

export async function sha256(data) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", data));
}

// Unpadded base64url (RFC 4648 section 5), the JSON-safe form of keys and messages.
export function b64urlEncode(bytes) {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

// Strict: only the URL-safe alphabet, no padding, no whitespace, and the canonical form (no
// stray low bits in the last character), so each value has exactly one text form; null
// otherwise.
export function b64urlDecode(text) {
  if (typeof text !== "string" || !/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) {
    return null;
  }
  const padded =
    text.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (text.length % 4)) % 4);
  const binary = atob(padded);
  const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  return b64urlEncode(bytes) === text ? bytes : null;
}
