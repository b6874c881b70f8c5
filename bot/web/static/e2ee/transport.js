// Key transport (docs/PROTOCOL.md sections 4.3-4.6): one sender key to one recipient, HPKE-sealed
// to the recipient's verified X25519 key and signed with the sender's Ed25519 key. Same layout and
// checks, in the same order, as bot/e2ee/transport.py:
//
//   message = "CKT" 0x02 || binding || enc(32) || len(ct)(2) || ct || signature(64)
//   binding = len(room)(1) || room || len(sender)(1) || sender || len(recipient)(1) || recipient
//             || recipient_x25519(32) || suite(2) || sender_index(2) || generation(4) || step(4)
//   hpke_info = "Conclave key transport v2" || binding
//   signature = Ed25519("Conclave key transport signature v2" || every byte before it)
//
// info binds the ciphertext to the room, both ids, the recipient's key and the key id (the HPKE
// AAD is empty); the signature proves the sender holds its roster key, which HPKE alone cannot.

import {
  asciiBytes,
  asciiText,
  b64urlDecode,
  b64urlEncode,
  bytesToHex,
  concat,
  equalBytes,
  lengthPrefixed,
  readUint,
  sha256,
  uintBytes,
} from "./bytes.js";
import { KeyExhausted, KeyTransportError } from "./errors.js";
import * as hpke from "./hpke.js";
import { PUBLIC_KEY_SIZE, verifyEd25519 } from "./keys.js";
import { KeyId } from "./kid.js";
import { Serial } from "./serial.js";
import { SenderKey } from "./senderkeys.js";
import { AES_128_GCM_SHA256_128, suiteName, suiteParams } from "./suites.js";

export const MAGIC = concat(asciiBytes("CKT"), [0x02]);
const INFO_LABEL = asciiBytes("Conclave key transport v2");
const SIGNATURE_LABEL = asciiBytes("Conclave key transport signature v2");
const SIGNATURE_SIZE = 64;
export const MAX_MESSAGE_SIZE = 2048;
// Everything is bound through info and the signature.
const EMPTY_AAD = new Uint8Array(0);
// RFC 9605's registered suites: one this client does not implement is refused by name, anything
// else is not a suite at all.
const KNOWN_SUITES = new Set([0x0001, 0x0002, 0x0003, 0x0004, 0x0005]);

// What a key message is about; encoded, it is both the HPKE info tail and signed.
export class Binding {
  constructor({ roomId, senderId, recipientId, recipientKey, suite, keyId }) {
    Object.assign(this, { roomId, senderId, recipientId, recipientKey, suite, keyId });
    Object.freeze(this);
  }

  encode() {
    const ids = [this.roomId, this.senderId, this.recipientId].map(lengthPrefixed);
    if (ids.includes(null)) throw new RangeError("ids are 1-255 ASCII characters");
    if (this.recipientKey.length !== PUBLIC_KEY_SIZE) {
      throw new RangeError("the recipient key is 32 bytes");
    }
    return concat(
      ...ids,
      this.recipientKey,
      uintBytes(this.suite, 2),
      uintBytes(this.keyId.senderIndex, 2),
      uintBytes(this.keyId.generation, 4),
      uintBytes(this.keyId.ratchetStep, 4),
    );
  }

  hpkeInfo() {
    return concat(INFO_LABEL, this.encode());
  }
}

// Lay out and sign a message around HPKE's enc and ct.
export async function assembleMessage(binding, enc, ct, senderKeys) {
  const body = concat(MAGIC, binding.encode(), enc, uintBytes(ct.length, 2), ct);
  return concat(body, await senderKeys.sign(concat(SIGNATURE_LABEL, body)));
}

// The message carrying `key` (a SenderKey) to `recipientId`, whose verified keys are
// `recipient` (PublicKeys). `ephemeralPrivateKeyForTests` fixes HPKE's ephemeral key for vectors.
export async function sealSenderKey(
  key,
  { roomId, senderId, senderKeys, recipientId, recipient, ephemeralPrivateKeyForTests },
) {
  const binding = new Binding({
    roomId,
    senderId,
    recipientId,
    recipientKey: recipient.x25519,
    suite: key.suite,
    keyId: key.id,
  });
  const options = { ephemeralPrivateKeyForTests };
  const info = binding.hpkeInfo();
  const { enc, ct } = await hpke.seal(recipient.x25519, info, EMPTY_AAD, key.baseKey, options);
  return assembleMessage(binding, enc, ct, senderKeys);
}

// Structure only: {binding, enc, ct, signed, signature}; nothing in it is authentic yet.
export function parseMessage(message) {
  if (message.length > MAX_MESSAGE_SIZE) throw new KeyTransportError("message too large");
  if (!equalBytes(message.subarray(0, MAGIC.length), MAGIC)) {
    throw new KeyTransportError("not a key message of this version");
  }
  let pos = MAGIC.length;
  const take = (n) => {
    if (pos + n > message.length) throw new KeyTransportError("truncated message");
    pos += n;
    return message.subarray(pos - n, pos);
  };
  const malformed = () => new KeyTransportError("malformed header");
  const ids = [];
  for (let i = 0; i < 3; i++) {
    const id = asciiText(take(take(1)[0]));
    if (id === null) throw malformed();
    ids.push(id);
  }
  const recipientKey = take(PUBLIC_KEY_SIZE);
  const suite = Number(readUint(take(2), 0, 2));
  if (!KNOWN_SUITES.has(suite)) throw malformed();
  if (suite !== AES_128_GCM_SHA256_128) {
    throw new KeyTransportError(`cipher suite ${suiteName(suite)} is not supported`);
  }
  const [index, generation, step] = [2, 4, 4].map((n) => Number(readUint(take(n), 0, n)));
  let keyId;
  try {
    keyId = new KeyId(index, generation, step);
  } catch (error) {
    if (error instanceof KeyExhausted) throw malformed();
    throw error;
  }
  const [roomId, senderId, recipientId] = ids;
  const binding = new Binding({ roomId, senderId, recipientId, recipientKey, suite, keyId });
  const enc = take(hpke.N_ENC);
  const ct = take(Number(readUint(take(2), 0, 2)));
  const signedEnd = pos;
  const signature = take(SIGNATURE_SIZE);
  if (pos !== message.length) throw new KeyTransportError("trailing bytes");
  if (ids.some((id) => id === "")) throw new KeyTransportError("empty id");
  return { binding, enc, ct, signed: message.subarray(0, signedEnd), signature };
}

// Opens key messages addressed to one client in one room, rejecting anything else in the order
// of section 4.6, and keeping no state from a rejected message.
export class KeyReceiver {
  constructor({ roomId, participantId, keys }) {
    this._roomId = roomId;
    this._participantId = participantId;
    this._keys = keys;
    this._ownKey = keys.public().x25519;
    this._seen = new Set(); // hex SHA-256 of the signed bytes of every accepted message
    this._held = new Map(); // sender id -> newest KeyId accepted
    this._serial = new Serial();
  }

  // The sender's key (a SenderKey); `roster` maps participant ids to verified RosterEntry.
  open(message, roster) {
    return this._serial.run(() => this._open(message, roster));
  }

  async _open(message, roster) {
    const parsed = parseMessage(message);
    const { binding } = parsed;
    if (binding.roomId !== this._roomId) throw new KeyTransportError("message for another room");
    if (binding.recipientId !== this._participantId) {
      throw new KeyTransportError("message for another recipient");
    }
    if (!equalBytes(binding.recipientKey, this._ownKey)) {
      // Signed by the sender, this would mean the server showed the sender another key.
      throw new KeyTransportError("encrypted to a key that is not this client's");
    }
    const sender = roster.get(binding.senderId);
    if (sender === undefined) throw new KeyTransportError("sender not in the roster");
    if (sender.senderIndex !== binding.keyId.senderIndex) {
      throw new KeyTransportError("sender index does not match the roster");
    }
    const signed = concat(SIGNATURE_LABEL, parsed.signed);
    if (!(await verifyEd25519(sender.keys.ed25519, parsed.signature, signed))) {
      throw new KeyTransportError("bad signature");
    }
    const digest = bytesToHex(await sha256(parsed.signed));
    if (this._seen.has(digest)) throw new KeyTransportError("replayed message");
    const held = this._held.get(binding.senderId);
    const { generation, ratchetStep } = binding.keyId;
    if (
      held !== undefined &&
      (generation - held.generation || ratchetStep - held.ratchetStep) < 0
    ) {
      throw new KeyTransportError("key older than the one held");
    }
    let baseKey;
    const { enc, ct } = parsed;
    try {
      baseKey = await hpke.open(
        enc,
        this._keys.x25519,
        this._ownKey,
        binding.hpkeInfo(),
        EMPTY_AAD,
        ct,
      );
    } catch {
      throw new KeyTransportError("cannot be decrypted with this client's key");
    }
    if (baseKey.length !== suiteParams(binding.suite).nh) {
      throw new KeyTransportError("base key of the wrong length");
    }
    this._seen.add(digest);
    this._held.set(binding.senderId, binding.keyId);
    return new SenderKey(binding.keyId, binding.suite, baseKey);
  }
}

// The JSON-safe form carried in a signaling envelope: unpadded base64url.
export function messageToText(message) {
  return b64urlEncode(message);
}

export function messageFromText(text) {
  const message = b64urlDecode(text);
  if (message === null) throw new KeyTransportError("not base64url");
  return message;
}
