// The security code (docs/PROTOCOL.md section 5): 30 digits that every client who saw the same
// roster shows identically, the same as `conclave join` (bot/e2ee/code.py).
//
//   input  = "Conclave security code v2" 0x00 || for each participant, sorted by the id's bytes:
//              len(id)(1) || id || x25519_public(32) || ed25519_public(32)
//   digest = SHA-256(input)
//   group i (0..5) = digest[5i .. 5i+4] as a 40-bit big-endian integer mod 100000, 5 digits
//
// Both keys are covered, so a server that shows anyone a different key of either kind for
// someone (or an extra participant) changes the code on that client only.

import { asciiBytes, compareBytes, concat, sha256 } from "./bytes.js";
import { RosterError } from "./errors.js";

const LABEL = concat(asciiBytes("Conclave security code v2"), [0]);
const GROUPS = 6;
const GROUP_DIGITS = 5;

// `roster`: [participantId, PublicKeys] pairs, in any order.
export function securityCodeInput(roster) {
  const entries = [];
  const seen = new Set();
  for (const [participantId, keys] of roster) {
    const raw = asciiBytes(participantId);
    if (raw === null) throw new RosterError("participant ids are ASCII");
    if (raw.length < 1 || raw.length > 255) {
      throw new RosterError("participant ids are 1-255 characters");
    }
    if (seen.has(participantId)) {
      throw new RosterError(`participant '${participantId}' appears twice`);
    }
    seen.add(participantId);
    entries.push([raw, keys]);
  }
  entries.sort(([a], [b]) => compareBytes(a, b));
  return concat(
    LABEL,
    ...entries.flatMap(([raw, keys]) => [[raw.length], raw, keys.x25519, keys.ed25519]),
  );
}

export async function securityCode(roster) {
  const digest = await sha256(securityCodeInput(roster));
  const groups = [];
  for (let i = 0; i < GROUPS; i++) {
    // 40 bits fit a JS number exactly (below 2^53).
    let value = 0;
    for (const b of digest.subarray(5 * i, 5 * i + 5)) value = value * 256 + b;
    groups.push(String(value % 10 ** GROUP_DIGITS).padStart(GROUP_DIGITS, "0"));
  }
  return groups.join(" ");
}
