// The SFrame header (RFC 9605 section 4.3): a config byte `X KKK Y CCC`, then KID and CTR.
// A value below 8 sits in its 3 bits with the flag clear; otherwise the flag is set, the 3 bits
// hold length - 1, and the value follows in that many big-endian bytes (KID first), using the
// minimum length. Decoding rejects non-minimal encodings, so a (KID, CTR) pair has exactly one
// header. KID and CTR are BigInt: both range over 0 .. 2^64-1.

import { MAX_U64, concat, readUint, uintBytes } from "./bytes.js";
import { SFrameError } from "./errors.js";

export function toU64(value, what) {
  const v = typeof value === "bigint" ? value : Number.isInteger(value) ? BigInt(value) : -1n;
  if (v < 0n || v > MAX_U64) throw new SFrameError(`${what} ${value} is outside 0..2^64-1`);
  return v;
}

function byteLength(value) {
  let n = 0;
  for (let v = value; v > 0n; v >>= 8n) n++;
  return n;
}

// The 4 config bits and the trailing bytes of one value.
function field(value) {
  if (value < 8n) return [Number(value), new Uint8Array(0)];
  const n = byteLength(value);
  return [0x8 | (n - 1), uintBytes(value, n)];
}

export function encodeHeader(kid, ctr) {
  const [kbits, kbytes] = field(toU64(kid, "KID"));
  const [cbits, cbytes] = field(toU64(ctr, "CTR"));
  return concat([(kbits << 4) | cbits], kbytes, cbytes);
}

// {kid, ctr, length} from the start of `frame`.
export function decodeHeader(frame) {
  if (!frame.length) throw new SFrameError("empty frame");
  const config = frame[0];
  let pos = 1;
  const read = (inline, extended, what) => {
    if (!extended) return BigInt(inline);
    const n = inline + 1;
    if (frame.length < pos + n) throw new SFrameError(`truncated ${what}`);
    const value = readUint(frame, pos, n);
    if (value < 8n || frame[pos] === 0) throw new SFrameError(`${what} not minimally encoded`);
    pos += n;
    return value;
  };
  const kid = read((config >> 4) & 0x7, config & 0x80, "KID");
  const ctr = read(config & 0x7, config & 0x08, "CTR");
  return { kid, ctr, length: pos };
}
