// HPKE (RFC 9180) base mode, single shot, with DHKEM(X25519, HKDF-SHA256), HKDF-SHA256 and
// AES-128-GCM (docs/PROTOCOL.md section 4.3). WebCrypto has no HPKE, so it is composed here from
// X25519 deriveBits, HKDF from HMAC, and AES-GCM, following RFC 9180 sections 4.1, 5.1 and 5.2.
// The steps are exported separately so tests can check each intermediate value against the
// vectors.

import { asciiBytes, concat, uintBytes } from "./bytes.js";
import { hkdfExpand, hkdfExtract } from "./kdf.js";
import { generateKeyPair, importPrivateKeyForTests, importPublicKey } from "./keys.js";

const KEM_ID = 0x0020;
const KDF_ID = 0x0001;
const AEAD_ID = 0x0001;
const MODE_BASE = 0x00;
const N_SECRET = 32;
const N_K = 16;
const N_N = 12;
export const N_ENC = 32;

const VERSION_LABEL = asciiBytes("HPKE-v1");
const KEM_SUITE_ID = concat(asciiBytes("KEM"), uintBytes(KEM_ID, 2));
const HPKE_SUITE_ID = concat(
  asciiBytes("HPKE"),
  uintBytes(KEM_ID, 2),
  uintBytes(KDF_ID, 2),
  uintBytes(AEAD_ID, 2),
);
const EMPTY = new Uint8Array(0);

function labeledExtract(suiteId, salt, label, ikm) {
  return hkdfExtract(salt, concat(VERSION_LABEL, suiteId, asciiBytes(label), ikm));
}

function labeledExpand(suiteId, prk, label, info, length) {
  return hkdfExpand(
    prk,
    concat(uintBytes(length, 2), VERSION_LABEL, suiteId, asciiBytes(label), info),
    length,
  );
}

// DH(sk, pk), refusing the all-zero output of a small-order point (RFC 9180 section 7.1.4).
async function dh(privateKey, publicRaw) {
  const publicKey = await importPublicKey("X25519", publicRaw, []);
  const secret = new Uint8Array(
    await crypto.subtle.deriveBits({ name: "X25519", public: publicKey }, privateKey, 256),
  );
  if (secret.every((b) => b === 0)) throw new Error("X25519 gave the all-zero shared secret");
  return secret;
}

async function extractAndExpand(dhSecret, kemContext) {
  const eaePrk = await labeledExtract(KEM_SUITE_ID, EMPTY, "eae_prk", dhSecret);
  return labeledExpand(KEM_SUITE_ID, eaePrk, "shared_secret", kemContext, N_SECRET);
}

// {enc, sharedSecret} for recipient public key `pkR`. `ephemeralPrivateKeyForTests` fixes the
// ephemeral key so that test vectors are reproducible; a real sender never passes it.
export async function encap(pkR, { ephemeralPrivateKeyForTests } = {}) {
  const ephemeral =
    ephemeralPrivateKeyForTests === undefined
      ? await generateKeyPair("X25519", ["deriveBits"])
      : await importPrivateKeyForTests("X25519", ephemeralPrivateKeyForTests, ["deriveBits"]);
  const enc = ephemeral.publicRaw;
  const sharedSecret = await extractAndExpand(
    await dh(ephemeral.privateKey, pkR),
    concat(enc, pkR),
  );
  return { enc, sharedSecret };
}

// The shared secret, for the holder of `skR` (a CryptoKey) whose public key is `pkR`.
export async function decap(enc, skR, pkR) {
  if (enc.length !== N_ENC) throw new Error("enc is 32 bytes");
  return extractAndExpand(await dh(skR, enc), concat(enc, pkR));
}

// Base mode's key schedule: {key, baseNonce} (the exporter secret is not needed here).
export async function keySchedule(sharedSecret, info) {
  const pskIdHash = await labeledExtract(HPKE_SUITE_ID, EMPTY, "psk_id_hash", EMPTY);
  const infoHash = await labeledExtract(HPKE_SUITE_ID, EMPTY, "info_hash", info);
  const context = concat([MODE_BASE], pskIdHash, infoHash);
  const secret = await labeledExtract(HPKE_SUITE_ID, sharedSecret, "secret", EMPTY);
  const key = await labeledExpand(HPKE_SUITE_ID, secret, "key", context, N_K);
  const baseNonce = await labeledExpand(HPKE_SUITE_ID, secret, "base_nonce", context, N_N);
  return { key, baseNonce };
}

// A single-shot message uses sequence number 0, so its nonce is the base nonce itself.
async function aead(operation, key, baseNonce, aad, data) {
  const aesKey = await crypto.subtle.importKey("raw", key, "AES-GCM", false, [operation]);
  const params = { name: "AES-GCM", iv: baseNonce, additionalData: aad, tagLength: 128 };
  return new Uint8Array(await crypto.subtle[operation](params, aesKey, data));
}

// {enc, ct}: SetupBaseS then Seal.
export async function seal(pkR, info, aad, plaintext, options = {}) {
  const { enc, sharedSecret } = await encap(pkR, options);
  const { key, baseNonce } = await keySchedule(sharedSecret, info);
  return { enc, ct: await aead("encrypt", key, baseNonce, aad, plaintext) };
}

// The plaintext: SetupBaseR then Open. Throws on any failure (WebCrypto's OperationError for a
// bad tag).
export async function open(enc, skR, pkR, info, aad, ct) {
  const sharedSecret = await decap(enc, skR, pkR);
  const { key, baseNonce } = await keySchedule(sharedSecret, info);
  return aead("decrypt", key, baseNonce, aad, ct);
}
