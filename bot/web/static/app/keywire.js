// A sender key as it crosses between the page and the frame worker (postMessage copies plain
// objects and byte arrays, not classes).

import { KeyId } from "../e2ee/kid.js";
import { SenderKey } from "../e2ee/senderkeys.js";

export function keyToWire(key) {
  const { senderIndex, generation, ratchetStep } = key.id;
  return { senderIndex, generation, ratchetStep, suite: key.suite, baseKey: key.baseKey };
}

export function keyFromWire(w) {
  const id = new KeyId(w.senderIndex, w.generation, w.ratchetStep);
  return new SenderKey(id, w.suite, Uint8Array.from(w.baseKey));
}
