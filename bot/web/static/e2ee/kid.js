// Conclave's KID layout (docs/PROTOCOL.md section 3.1):
//
//   KID = generation << 40 | ratchet_step << 16 | sender_index      (24, 24 and 16 bits)
//
// so a receiver learns from the authenticated header alone whose key, which generation and which
// ratchet step a frame uses, without trusting the relay's stream mapping. The whole ratchet step
// is carried, so a receiver never guesses. The fields are numbers; the KID is a BigInt, since it
// reaches 2^64 - 1. Nothing wraps: going past a limit throws KeyExhausted. Same as
// bot/e2ee/kid.py.

import { KeyExhausted } from "./errors.js";

export const MAX_SENDER_INDEX = 0xffff;
export const MAX_RATCHET_STEP = 0xffffff;
export const MAX_GENERATION = 0xffffff;

function within(value, low, high) {
  return Number.isInteger(value) && value >= low && value <= high;
}

export class KeyId {
  constructor(senderIndex, generation, ratchetStep) {
    if (!within(senderIndex, 1, MAX_SENDER_INDEX)) {
      throw new KeyExhausted("sender index", MAX_SENDER_INDEX);
    }
    if (!within(generation, 0, MAX_GENERATION)) {
      throw new KeyExhausted("key generation", MAX_GENERATION);
    }
    if (!within(ratchetStep, 0, MAX_RATCHET_STEP)) {
      throw new KeyExhausted("ratchet step", MAX_RATCHET_STEP);
    }
    this.senderIndex = senderIndex;
    this.generation = generation;
    this.ratchetStep = ratchetStep;
    Object.freeze(this);
  }

  get kid() {
    return (
      (BigInt(this.generation) << 40n) |
      (BigInt(this.ratchetStep) << 16n) |
      BigInt(this.senderIndex)
    );
  }

  // The fields of `kid`, or null if it is not a KID of this layout (e.g. sender index 0).
  static parse(kid) {
    if (typeof kid !== "bigint" || kid < 0n || kid >> 64n !== 0n) return null;
    const index = Number(kid & 0xffffn);
    if (index === 0) return null;
    return new KeyId(index, Number(kid >> 40n), Number((kid >> 16n) & 0xffffffn));
  }

  nextStep() {
    return new KeyId(this.senderIndex, this.generation, this.ratchetStep + 1);
  }

  nextGeneration() {
    return new KeyId(this.senderIndex, this.generation + 1, 0);
  }

  // Ordered by (sender index, generation, ratchet step): newer keys of one sender compare higher.
  compare(other) {
    return (
      this.senderIndex - other.senderIndex ||
      this.generation - other.generation ||
      this.ratchetStep - other.ratchetStep
    );
  }

  equals(other) {
    return this.compare(other) === 0;
  }

  toString() {
    const { senderIndex, generation, ratchetStep } = this;
    return (
      `KeyId(sender_index=${senderIndex}, generation=${generation}, ` +
      `ratchet_step=${ratchetStep})`
    );
  }
}
