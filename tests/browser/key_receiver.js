// Test-only: opens a sequence of key-transport messages (their text form) with the browser
// client's KeyReceiver, as test_browser_interop.py opens them with bot/e2ee's. Evaluated by
// Playwright as one function expression.
async ({ room, me, privateKeys, roster, messages }) => {
  const c = globalThis.conclave;
  const { hexToBytes: h, bytesToHex: x } = c.bytes;
  const keys = await c.keys.MeetingKeys.fromPrivateBytesForTests(...privateKeys.map(h));
  const receiver = new c.transport.KeyReceiver({ roomId: room, participantId: me, keys });
  const entries = new Map(
    roster.map(([pid, index, x25519, ed25519]) => [
      pid,
      new c.keys.RosterEntry(pid, index, new c.keys.PublicKeys(h(x25519), h(ed25519))),
    ]),
  );
  const results = [];
  for (const text of messages) {
    try {
      const key = await receiver.open(c.transport.messageFromText(text), entries);
      results.push({ kid: key.kid.toString(16), base_key: x(key.baseKey) });
    } catch (error) {
      if (!(error instanceof c.errors.KeyTransportError)) throw error;
      results.push({ error: error.message });
    }
  }
  return results;
};
