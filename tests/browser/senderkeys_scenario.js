// Test-only: plays a sender-key scenario on the browser client's SenderKeys, op by op, as
// test_browser_senderkeys.py plays it on bot/e2ee's; the two result lists must be equal.
// Evaluated by Playwright as one function expression of { pools, ops }.
async ({ pools, ops }) => {
  const c = globalThis.conclave;
  const { hexToBytes: h, bytesToHex: x } = c.bytes;
  const people = {};
  for (const [name, [index, keys]] of Object.entries(pools)) {
    const pool = keys.map(h);
    people[name] = await c.senderkeys.SenderKeys.create(index, {
      randomBytes: () => pool.shift(),
    });
  }
  const idOf = (key) => [key.id.senderIndex, key.id.generation, key.id.ratchetStep];
  const kept = []; // per op: the key or protected frame it produced
  const results = [];
  for (const [op, who, ...args] of ops) {
    const keys = people[who];
    let result;
    try {
      if (op === "current") {
        kept.push(keys.currentKey);
        result = idOf(keys.currentKey);
      } else if (op === "join" || op === "leave" || op === "restart") {
        const method = { join: "onJoin", leave: "onLeave", restart: "restart" }[op];
        const key = await keys[method](args[0]);
        kept.push(key);
        result = idOf(key);
      } else if (op === "give") {
        const [from, t] = args;
        await keys.addPeerKey(kept[from], t);
        result = "ok";
      } else if (op === "send") {
        const [t, codec, frame] = args;
        const seal = (metadata, plaintext) => keys.encrypt(metadata, plaintext, t);
        kept.push(await c.prefix.protect(codec, h(frame), seal));
        result = x(kept.at(-1));
      } else if (op === "receive" || op === "receive_bytes") {
        const [t, codec, data] = args;
        const open = (sframe, metadata) => keys.decrypt(sframe, metadata, t);
        const frame = op === "receive" ? kept[data] : h(data);
        result = x(await c.prefix.unprotect(codec, frame, open));
      } else if (op === "tick") {
        await keys.tick(args[0]);
        result = "ok";
      } else if (op === "remove") {
        await keys.removePeer(args[0]);
        result = "ok";
      } else if (op === "held") {
        result = [...keys.heldKids()].sort((a, b) => (a < b ? -1 : 1)).map((k) => k.toString(16));
      } else if (op === "latest") {
        result = idOf(keys.latestKey);
      } else {
        throw new Error(`unknown op ${op}`);
      }
    } catch (error) {
      if (!(error instanceof c.errors.E2EEError)) throw error;
      result = { error: error.code };
    }
    if (kept.length < results.length + 1) kept.push(null);
    results.push(result);
  }
  return results;
};
