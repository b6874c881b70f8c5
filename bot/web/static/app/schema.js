// What the hub may send this client (docs/PROTOCOL.md section 6), message by message and field
// by field: bot/signaling/messages.py's TO_CLIENT, written out for the browser.
// tests/browser/test_meeting_page.py holds the two to the same messages and fields. A message
// of a type not listed, or with a field missing or of the wrong type, is the server's fault:
// the session leaves saying so, as `conclave join` does.

// A large room's roster may outgrow the 64 KiB a client may send (section 6).
export const WIRE_LIMIT = 4 * 64 * 1024;
export const PROTOCOL_VERSION = 2;

export class ProtocolError extends Error {
  constructor(message) {
    super(message);
    this.name = "ProtocolError";
    this.code = "bad_message";
  }
}

const isObject = (v) => typeof v === "object" && v !== null && !Array.isArray(v);
const STRING = (v) => typeof v === "string";
const INTEGER = (v) => Number.isSafeInteger(v);
const BOOLEAN = (v) => typeof v === "boolean";
const SENDER_INDEX = (v) => Number.isInteger(v) && v >= 1 && v <= 0xffff;

function record(fields, optional = []) {
  return (v) =>
    isObject(v) &&
    Object.entries(fields).every(
      ([name, accepts]) => (optional.includes(name) && !(name in v)) || accepts(v[name]),
    );
}

const listOf = (item) => (v) => Array.isArray(v) && v.every(item);
const description = (type) => (v) => isObject(v) && v.type === type && STRING(v.sdp);

const ROSTER = listOf(
  record(
    {
      participant_id: STRING,
      name: STRING,
      role: STRING,
      sender_index: SENDER_INDEX,
      keys: isObject,
    },
    ["keys"],
  ),
);
const ROOM = record({ id: STRING, topic: STRING, state: STRING, lobby: BOOLEAN });
const WAITING = listOf(record({ participant_id: STRING, name: STRING }));
const ICE_SERVERS = listOf(
  record({ urls: listOf(STRING), username: STRING, credential: STRING }, [
    "username",
    "credential",
  ]),
);
const CODE_AND_MESSAGE = { code: STRING, message: STRING };

export const TO_CLIENT = Object.freeze({
  welcome: {
    participant_id: STRING,
    sender_index: SENDER_INDEX,
    name: STRING,
    role: STRING,
    admitted: BOOLEAN,
    room: ROOM,
    roster: ROSTER,
    resume_token: STRING,
    ice_servers: (v) => v === undefined || ICE_SERVERS(v), // absent: none
  },
  error: CODE_AND_MESSAGE,
  warning: CODE_AND_MESSAGE,
  lobby: { message: STRING },
  lobby_waiting: { waiting: WAITING },
  admitted: { roster: ROSTER },
  roster: { roster: ROSTER },
  room: { locked: BOOLEAN },
  ended: { reason: STRING },
  kicked: { message: STRING },
  notice: { code: STRING, participant: STRING, message: STRING },
  pong: {},
  key: { from: STRING, payload: STRING },
  answer: { answer: description("answer") },
  offer: { negotiation: INTEGER, offer: description("offer") },
  media_lost: { message: STRING },
});

// The message in a websocket text frame from the hub; ProtocolError if it is not one.
export function parseServerMessage(text) {
  if (typeof text !== "string") throw new ProtocolError("a binary message");
  if (new TextEncoder().encode(text).length > WIRE_LIMIT) {
    throw new ProtocolError("a message over the size limit");
  }
  let message;
  try {
    message = JSON.parse(text);
  } catch {
    throw new ProtocolError("a message that is not JSON");
  }
  if (!isObject(message) || typeof message.type !== "string") {
    throw new ProtocolError("a message without a type");
  }
  const fields = Object.hasOwn(TO_CLIENT, message.type) ? TO_CLIENT[message.type] : null;
  if (fields === null) throw new ProtocolError(`a message of unknown type '${message.type}'`);
  for (const [name, accepts] of Object.entries(fields)) {
    if (!accepts(message[name])) {
      throw new ProtocolError(`a '${message.type}' message whose '${name}' is not valid`);
    }
  }
  return message;
}

export function clientMessage(type, fields = {}) {
  return JSON.stringify({ type, ...fields });
}
