// One websocket to the hub (docs/PROTOCOL.md section 6): the hello, then one JSON object per
// text message each way. Messages from the hub are checked against schema.js and handed on one
// at a time, in order; what they mean is session.js's business.

import { PROTOCOL_VERSION, clientMessage, parseServerMessage } from "./schema.js";

// ws:// or wss:// to [/prefix]/ws of the server that served the page.
export function websocketUrl(location) {
  const url = new URL("../ws", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  url.hash = "";
  return url.href;
}

export class Connection {
  // `onMessage(message)` may be async: the next message waits for it. `onClose({code,
  // clean})` once, when the socket is gone; `onBadMessage(error)` for what the hub may not
  // send (the connection is then closed).
  constructor(url, { onMessage, onClose, onBadMessage }) {
    this._url = url;
    this._onMessage = onMessage;
    this._onClose = onClose;
    this._onBadMessage = onBadMessage;
    this._ws = null;
    this._queue = Promise.resolve();
    this._stopped = false; // closed by this side: nothing more is handled
    this.closed = false;
  }

  // Opens the socket and sends `hello` ({resume} or {room, invite}) as its first message.
  open(hello) {
    const ws = new WebSocket(this._url);
    this._ws = ws;
    ws.onopen = () => ws.send(clientMessage("hello", { version: PROTOCOL_VERSION, ...hello }));
    ws.onmessage = ({ data }) => {
      this._queue = this._queue.then(() => this._handle(data));
    };
    ws.onclose = ({ code, wasClean }) => {
      if (this.closed || this._stopped) return;
      this.closed = true;
      this._queue = this._queue.then(() => this._onClose({ code, clean: wasClean }));
    };
  }

  async _handle(data) {
    if (this._stopped) return;
    let message;
    try {
      message = parseServerMessage(data);
    } catch (error) {
      this.close();
      await this._onBadMessage(error);
      return;
    }
    await this._onMessage(message);
  }

  send(type, fields = {}) {
    if (this._ws?.readyState === WebSocket.OPEN) this._ws.send(clientMessage(type, fields));
  }

  // Closes for good; `onClose` is not called for a close this side asked for.
  close(bye = false) {
    if (bye) this.send("bye");
    this._stopped = true;
    this._ws?.close(1000);
  }
}
