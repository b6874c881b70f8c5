// Errors of the end-to-end encryption, with the codes and sentences of bot/e2ee/errors.py, so
// the page shows what `conclave join` shows and tests can compare the two implementations.
// Receive paths throw one type per layer (SFrameError for frames, KeyTransportError for key
// messages), so a caller drops bad input with one check.

export class E2EEError extends Error {
  constructor(message, code = "e2ee_error") {
    super(message);
    this.name = new.target.name;
    this.code = code;
  }
}

// A frame that cannot be encrypted or must not be decrypted; no plaintext escapes.
export class SFrameError extends E2EEError {
  constructor(reason, code = "sframe_error") {
    super(`An encrypted media frame was rejected: ${reason}.`, code);
    this.reason = reason;
  }
}

export class CounterExhausted extends SFrameError {
  constructor(kid) {
    super(`the frame counter of key ${kid} is used up; a new key is needed`, "counter_exhausted");
    this.kid = kid;
  }
}

// A key generation, ratchet step or sender index would leave the range the KID can carry.
export class KeyExhausted extends E2EEError {
  constructor(what, limit) {
    super(
      `The meeting's ${what} reached its limit of ${limit}; start a new meeting to continue.`,
      "key_exhausted",
    );
    this.what = what;
    this.limit = limit;
  }
}

export class KeyConflict extends E2EEError {
  constructor(kid, why) {
    super(`Key ${kid} cannot be installed: ${why}.`, "key_conflict");
    this.kid = kid;
  }
}

export class StaleSenderKey extends E2EEError {
  constructor(senderIndex) {
    super(`A sender key for sender ${senderIndex} is older than the one held.`, "stale_sender_key");
    this.senderIndex = senderIndex;
  }
}

// An outgoing encoded frame too short to hold its codec's clear prefix; it is dropped.
export class MediaFrameError extends E2EEError {
  constructor(codec, size, prefix) {
    super(
      `A ${codec} frame of ${size} bytes is shorter than its ${prefix}-byte clear prefix ` +
        "and was not sent.",
      "bad_media_frame",
    );
    this.codec = codec;
    this.size = size;
    this.prefix = prefix;
  }
}

// A key-transport message that must not be accepted (forged, misaddressed, stale, replayed).
export class KeyTransportError extends E2EEError {
  constructor(reason) {
    super(`A media key message was rejected: ${reason}.`, "key_transport");
    this.reason = reason;
  }
}

export class RosterError extends E2EEError {
  constructor(reason) {
    super(`The meeting roster is not valid: ${reason}.`, "bad_roster");
    this.reason = reason;
  }
}

// The roster shows keys that can only come from a lying server; the client must leave.
export class KeysTampered extends E2EEError {
  constructor(detail) {
    super(`The server is tampering with the meeting's keys: ${detail}. Leaving.`, "keys_tampered");
    this.detail = detail;
  }
}
