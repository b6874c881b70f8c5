// Loaded only by the browser tests (tests/browser): puts the end-to-end encryption modules where
// the test driver can call them, under the same strict Content-Security-Policy as the client.
// Nothing links to this page, and it holds no key of its own.

import * as announce from "./announce.js";
import * as bytes from "./bytes.js";
import * as code from "./code.js";
import * as errors from "./errors.js";
import * as header from "./header.js";
import * as hpke from "./hpke.js";
import * as kdf from "./kdf.js";
import * as keys from "./keys.js";
import * as kid from "./kid.js";
import * as prefix from "./prefix.js";
import * as roster from "./roster.js";
import * as senderkeys from "./senderkeys.js";
import * as sframe from "./sframe.js";
import * as suites from "./suites.js";
import * as transport from "./transport.js";

globalThis.conclave = Object.freeze({
  announce,
  bytes,
  code,
  errors,
  header,
  hpke,
  kdf,
  keys,
  kid,
  prefix,
  roster,
  senderkeys,
  sframe,
  suites,
  transport,
});
document.getElementById("status").textContent = "ready";
