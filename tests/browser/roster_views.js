// Test-only: shows a sequence of rosters (JSON, as the server sends them) to the browser
// client's KeyBook, as test_browser_interop.py shows them to bot/e2ee's; stops at the first
// refusal. Evaluated by Playwright as one function expression.
async ({ room, me, index, own, rosters }) => {
  const c = globalThis.conclave;
  const h = c.bytes.hexToBytes;
  const book = new c.roster.KeyBook(room, me, index, new c.keys.PublicKeys(h(own[0]), h(own[1])));
  const results = [];
  for (const roster of rosters) {
    try {
      const view = await book.view(roster);
      const { code, waiting, rejected } = view;
      results.push({ code, peers: [...view.peers.keys()].sort(), waiting, rejected });
    } catch (error) {
      if (!(error instanceof c.errors.E2EEError)) throw error;
      results.push({ error: error.code, message: error.message });
      break;
    }
  }
  return results;
};
