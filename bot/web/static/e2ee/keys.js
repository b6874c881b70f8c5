// Per-meeting key pairs of one client (docs/PROTOCOL.md section 4.1): X25519 to receive sender
// keys, Ed25519 to sign what it sends. Made fresh for each meeting, so nothing links a person's
// meetings; private keys are generated non-extractable, so page script can use them but never
// read them out. Public keys are the raw 32-byte encodings, unpadded base64url in JSON.
// Same as bot/e2ee/identity.py.

import { b64urlDecode, b64urlEncode, concat, equalBytes, hexToBytes } from "./bytes.js";
import { RosterError } from "./errors.js";

export const PUBLIC_KEY_SIZE = 32;

// PKCS #8 wrappers of a raw 32-byte private key (RFC 8410): WebCrypto imports private keys of
// these curves only as PKCS #8 or JWK.
const PKCS8_PREFIX = {
  X25519: hexToBytes("302e020100300506032b656e04220420"),
  Ed25519: hexToBytes("302e020100300506032b657004220420"),
};

async function exportRaw(publicKey) {
  return new Uint8Array(await crypto.subtle.exportKey("raw", publicKey));
}

// A fixed private key, for test vectors only: real keys are drawn by generateKey. Extractable,
// because WebCrypto gives the public half of an imported private key only through its JWK.
export async function importPrivateKeyForTests(name, raw, usages) {
  if (raw.length !== 32) throw new RangeError(`a ${name} private key is 32 bytes`);
  const privateKey = await crypto.subtle.importKey(
    "pkcs8",
    concat(PKCS8_PREFIX[name], raw),
    { name },
    true,
    usages,
  );
  const jwk = await crypto.subtle.exportKey("jwk", privateKey);
  return { privateKey, publicRaw: b64urlDecode(jwk.x) };
}

export async function generateKeyPair(name, usages) {
  const pair = await crypto.subtle.generateKey({ name }, false, usages);
  return { privateKey: pair.privateKey, publicRaw: await exportRaw(pair.publicKey) };
}

export function importPublicKey(name, raw, usages) {
  return crypto.subtle.importKey("raw", raw, { name }, true, usages);
}

// Whether `signature` is `publicRaw`'s Ed25519 signature of `data`; a key WebCrypto refuses to
// import verifies nothing.
export async function verifyEd25519(publicRaw, signature, data) {
  try {
    const key = await importPublicKey("Ed25519", publicRaw, ["verify"]);
    return await crypto.subtle.verify("Ed25519", key, signature, data);
  } catch {
    return false;
  }
}

export class PublicKeys {
  constructor(x25519, ed25519) {
    if (x25519?.length !== PUBLIC_KEY_SIZE || ed25519?.length !== PUBLIC_KEY_SIZE) {
      throw new RosterError("public keys are 32 bytes each");
    }
    this.x25519 = Uint8Array.from(x25519);
    this.ed25519 = Uint8Array.from(ed25519);
    Object.freeze(this);
  }

  equals(other) {
    return equalBytes(this.x25519, other.x25519) && equalBytes(this.ed25519, other.ed25519);
  }

  toJson() {
    return { x25519: b64urlEncode(this.x25519), ed25519: b64urlEncode(this.ed25519) };
  }

  static fromJson(data) {
    const x = b64urlDecode(data?.x25519);
    const ed = b64urlDecode(data?.ed25519);
    if (x === null || ed === null) throw new RosterError("public keys must be base64url strings");
    return new PublicKeys(x, ed);
  }
}

// A participant as the roster shows it: the server assigns the id and the sender index.
export class RosterEntry {
  constructor(participantId, senderIndex, keys) {
    this.participantId = participantId;
    this.senderIndex = senderIndex;
    this.keys = keys;
    Object.freeze(this);
  }
}

// A client's private key pairs for one meeting.
export class MeetingKeys {
  constructor(x25519, ed25519) {
    this._x25519 = x25519.privateKey;
    this._ed25519 = ed25519.privateKey;
    this._public = new PublicKeys(x25519.publicRaw, ed25519.publicRaw);
  }

  static async generate() {
    return new MeetingKeys(
      await generateKeyPair("X25519", ["deriveBits"]),
      await generateKeyPair("Ed25519", ["sign", "verify"]),
    );
  }

  // Keys a page can keep for as long as its resume token (sessionStorage): a reloaded page
  // that rejoins must show the keys its roster entry already carries, or its own client would
  // take that entry for the server's (section 4.7). The stored form is the private keys' JWK
  // `d` and `x`, unpadded base64url; the keys in use are imported from it non-extractable.
  static async generateStorable() {
    const stored = {};
    for (const [name, usages] of [
      ["X25519", ["deriveBits"]],
      ["Ed25519", ["sign", "verify"]],
    ]) {
      const pair = await crypto.subtle.generateKey({ name }, true, usages);
      const { d, x } = await crypto.subtle.exportKey("jwk", pair.privateKey);
      stored[name] = { d, x };
    }
    return { keys: await MeetingKeys.fromStored(stored), stored };
  }

  // The keys of `generateStorable`'s `stored`; throws (RosterError, or WebCrypto's own
  // error) if they are not a pair of 32-byte keys.
  static async fromStored(stored) {
    const pairs = [];
    for (const [name, usages] of [
      ["X25519", ["deriveBits"]],
      ["Ed25519", ["sign"]],
    ]) {
      const { d, x } = stored?.[name] ?? {};
      const publicRaw = b64urlDecode(x);
      if (b64urlDecode(d)?.length !== 32 || publicRaw?.length !== PUBLIC_KEY_SIZE) {
        throw new RosterError("stored keys are 32 bytes each");
      }
      const jwk = { kty: "OKP", crv: name, d, x };
      const privateKey = await crypto.subtle.importKey("jwk", jwk, { name }, false, usages);
      pairs.push({ privateKey, publicRaw });
    }
    return new MeetingKeys(...pairs);
  }

  // Fixed keys, for test vectors.
  static async fromPrivateBytesForTests(x25519, ed25519) {
    return new MeetingKeys(
      await importPrivateKeyForTests("X25519", x25519, ["deriveBits"]),
      await importPrivateKeyForTests("Ed25519", ed25519, ["sign"]),
    );
  }

  // The private X25519 key, for HPKE's Decap.
  get x25519() {
    return this._x25519;
  }

  public() {
    return this._public;
  }

  async sign(data) {
    return new Uint8Array(await crypto.subtle.sign("Ed25519", this._ed25519, data));
  }

  toString() {
    return "MeetingKeys('**********')";
  }

  toJSON() {
    return this.toString();
  }
}
