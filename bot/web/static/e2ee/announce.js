// The key announcement (docs/PROTOCOL.md section 4.2): one statement, signed by a participant's
// Ed25519 key, that binds its X25519 key to the room, its participant id and its sender index.
//
//   statement = "Conclave key announcement v2" 0x00
//               || len(room_id)(1) || room_id || len(participant_id)(1) || participant_id
//               || sender_index(2) || x25519_public(32) || ed25519_public(32)
//   signature = Ed25519-Sign(ed25519_private, statement)
//
// The server relays it and cannot forge it: an X25519 key that the roster's Ed25519 key did not
// sign for that room, id and index is never used. Same as bot/e2ee/announce.py.

import {
  asciiBytes,
  b64urlDecode,
  b64urlEncode,
  concat,
  lengthPrefixed,
  uintBytes,
} from "./bytes.js";
import { RosterError } from "./errors.js";
import { PublicKeys, verifyEd25519 } from "./keys.js";
import { MAX_SENDER_INDEX } from "./kid.js";

const LABEL = concat(asciiBytes("Conclave key announcement v2"), [0]);
export const SIGNATURE_SIZE = 64;

function prefixed(text, what) {
  const out = lengthPrefixed(text);
  if (out !== null) return out;
  if (asciiBytes(text) === null) throw new RosterError(`${what} is not ASCII`);
  throw new RosterError(`${what} is not 1-255 characters`);
}

// The signed bytes; RosterError if an id or the index cannot be encoded.
export function statement(roomId, participantId, senderIndex, keys) {
  if (!(Number.isInteger(senderIndex) && senderIndex > 0 && senderIndex <= MAX_SENDER_INDEX)) {
    throw new RosterError("a sender index is 1-65535");
  }
  return concat(
    LABEL,
    prefixed(roomId, "the room id"),
    prefixed(participantId, "a participant id"),
    uintBytes(senderIndex, 2),
    keys.x25519,
    keys.ed25519,
  );
}

// Public keys with their signature, as announced in a `keys` message and in the roster.
export class KeyAnnouncement {
  constructor(keys, signature) {
    this.keys = keys;
    this.signature = signature;
    Object.freeze(this);
  }

  toJson() {
    return { ...this.keys.toJson(), signature: b64urlEncode(this.signature) };
  }

  static fromJson(data) {
    const keys = PublicKeys.fromJson(data);
    const signature = data.signature;
    if (typeof signature !== "string") {
      throw new RosterError("the key announcement has no signature");
    }
    const raw = b64urlDecode(signature);
    if (raw === null) throw new RosterError("the signature must be base64url");
    if (raw.length !== SIGNATURE_SIZE) throw new RosterError("the signature is not 64 bytes");
    return new KeyAnnouncement(keys, raw);
  }

  // Whether the announced Ed25519 key signed these keys for this room, id and index.
  async verifies(roomId, participantId, senderIndex) {
    let signed;
    try {
      signed = statement(roomId, participantId, senderIndex, this.keys);
    } catch {
      return false;
    }
    return verifyEd25519(this.keys.ed25519, this.signature, signed);
  }
}

export async function announce(meetingKeys, roomId, participantId, senderIndex) {
  const keys = meetingKeys.public();
  return new KeyAnnouncement(
    keys,
    await meetingKeys.sign(statement(roomId, participantId, senderIndex, keys)),
  );
}
