// The invite key and what a tab keeps between reloads.
//
// The invite key is the link's fragment (`/j/<room>#<invite id>.<secret>`): browsers never send
// a fragment to the server, and this page takes it out of the address bar before anything
// else happens, so neither a screenshot, a screen share nor the history shows it. It goes
// nowhere but the `hello` message.
//
// What a reload needs to rejoin as the same participant lives in sessionStorage, which the tab
// forgets when it closes (never localStorage, cookies or the URL): the latest resume token, the
// per-meeting key pairs (a rejoining client must show the keys its roster entry carries), and
// the newest generation of its sender key (a reloaded page starts above it, see keyring.js).

const PREFIX = "conclave.meeting.";

// The room id from [/prefix]/j/<room>; null if the path is not a meeting link.
export function roomFromPath(pathname) {
  const match = /\/j\/([A-Za-z0-9_-]{1,64})$/.exec(pathname);
  return match === null ? null : match[1];
}

// The invite credential in the fragment, or null; the address bar keeps only the path.
export function takeInvite(location, history) {
  const fragment = location.hash.replace(/^#/, "");
  if (location.hash !== "") history.replaceState(null, "", location.pathname);
  return /^[A-Za-z0-9_-]{1,64}\.[A-Za-z0-9_-]{1,128}$/.test(fragment) ? fragment : null;
}

// One meeting's saved state in this tab.
export class TabMemory {
  constructor(roomId, storage = globalThis.sessionStorage) {
    this._key = PREFIX + roomId;
    this._storage = storage;
  }

  load() {
    try {
      const saved = JSON.parse(this._storage.getItem(this._key) ?? "null");
      return typeof saved?.resume === "string" ? saved : null;
    } catch {
      return null;
    }
  }

  _update(changes) {
    const saved = this.load() ?? {};
    try {
      this._storage.setItem(this._key, JSON.stringify({ ...saved, ...changes }));
    } catch {
      // Storage full or refused: a reload will need a new link, nothing worse.
    }
  }

  saveResume(token) {
    this._update({ resume: token });
  }

  saveKeys(stored) {
    this._update({ keys: stored });
  }

  saveGeneration(generation) {
    const saved = this.load();
    if (saved !== null && !(saved.generation >= generation)) this._update({ generation });
  }

  forget() {
    try {
      this._storage.removeItem(this._key);
    } catch {
      // Nothing kept, nothing to forget.
    }
  }
}
