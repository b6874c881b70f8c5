// Every sentence the meeting page shows about what happened, in one place, worded as
// bot/client/presenter.py words it for `conclave join`. Refusals show the server's own
// sentence (what `conclave join` prints), under a heading per reason.

export const TITLES = Object.freeze({
  already_used: "This link was already used",
  expired: "This link has expired",
  revoked: "This link was revoked",
  room_ended: "This meeting has ended",
  room_locked: "This meeting is locked",
  room_full: "This meeting is full",
  bad_invite: "This link is not valid",
  unknown_room: "There is no such meeting",
  bad_resume: "This tab cannot rejoin the meeting",
  resume_too_soon: "Rejoining too often",
  unsupported_version: "This page is out of date",
  rate_limited: "Too many messages",
  replaced: "You joined from somewhere else",
  bad_message: "The meeting page and the server disagree",
  ended: "The meeting has ended",
  kicked: "You were removed from the meeting",
  left: "You left the meeting",
  tampered: "The server is tampering with the meeting's keys",
  protocol: "The server sent something this page cannot use",
  unreachable: "Cannot reach the meeting",
  no_invite: "This link is incomplete",
  unsupported: "This browser cannot join an encrypted meeting",
});

export const SENTENCES = Object.freeze({
  left: "You left the meeting. Closing this tab forgets it; your link will not work again.",
  no_invite:
    "The invite key after the # in your link is missing. Open the whole link from your " +
    "invitation, or ask the host for a new one.",
  insecure:
    "This page must be opened over https (or from this computer), or the browser will not " +
    "let it encrypt anything.",
  unsupported:
    "Conclave encrypts every audio and video frame in the page before it leaves your device, " +
    "and this browser does not let a page do that. Use a current version of Chrome, Edge, " +
    "Firefox or Safari, or join from a terminal with `conclave join`.",
});

// What the page's heading says for an ending; `code` for refusals.
export function titleOf(kind, code = null) {
  return TITLES[code] ?? TITLES[kind] ?? "You are not in the meeting";
}

export function endedSentence(kind, sentence) {
  // As `conclave join` says it: "the meeting has ended (<reason>)".
  if (kind === "ended" && !/[.!]$/.test(sentence)) return `The meeting has ended (${sentence}).`;
  return sentence;
}

export const COMPARE =
  "Compare this code with everyone in the meeting (read it aloud, or paste it in the chat): " +
  "if all of you see the same code, only the people listed here hold the keys to the meeting.";

export const CODE_CHANGED = "The security code changed: compare it with the others again.";

// The pending line's reasons, as presenter.code_line gives them.
export function pendingReason(view) {
  const reasons = [];
  if (view.waiting.length) reasons.push(`waiting for the keys of ${view.waiting.join(", ")}`);
  if (view.rejected.length) {
    reasons.push(`the keys shown for ${view.rejected.join(", ")} are not signed by them`);
  }
  return reasons.join("; ");
}

export function frameCounts({ decrypted, dropped, misattributed }) {
  return (
    `Encrypted end to end. Frames decrypted: ${decrypted}, dropped (failed to decrypt): ` +
    `${dropped}, refused (not from the participant shown): ${misattributed}.`
  );
}

export function lockedSentence(locked) {
  return locked ? "The host locked the meeting: nobody new can join." : "The meeting is open.";
}

export function devicesSentence(problems) {
  const said = { denied: "not allowed", missing: "not found", unavailable: "not available" };
  const parts = [];
  if (problems.video) parts.push(`camera ${said[problems.video]}`);
  if (problems.audio) parts.push(`microphone ${said[problems.audio]}`);
  if (!parts.length) return "";
  const what = parts.join(", ");
  return `You will join without them (${what}); the others will see your initials.`;
}

export function initials(name) {
  const words = String(name).trim().split(/\s+/).filter(Boolean);
  const letters = words.length > 1 ? [words[0], words.at(-1)] : words;
  return letters.map((w) => [...w][0].toUpperCase()).join("") || "?";
}
