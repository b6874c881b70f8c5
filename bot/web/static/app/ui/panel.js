// The side panel: the security code (what people compare, and a notice when it changes), who
// is waiting in the lobby (with Admit buttons for the host), the roster (with Remove buttons
// for the host), and notices from the server.

import { CODE_CHANGED, COMPARE, pendingReason } from "../presenter.js";
import { $, announce, el } from "./dom.js";

export class Panel {
  constructor({ onKick, onAdmit }) {
    this._onKick = onKick;
    this._onAdmit = onAdmit;
    this._host = false;
    this._lastCode = null; // the last code shown, pending aside
    $("code-explainer").textContent = COMPARE;
  }

  setHost(isHost) {
    this._host = isHost;
  }

  roster(roster, view, selfId) {
    const items = roster.map((entry) => {
      const pid = entry.participant_id;
      const isSelf = pid === selfId;
      let keys = "keys verified";
      if (view !== null && !isSelf && !view.peers.has(pid)) {
        keys = view.rejected.some((w) => w.endsWith(`(${pid})`))
          ? "keys not signed by them"
          : "waiting for keys";
      }
      const label = `${entry.name}${isSelf ? " (you)" : ""}`;
      const item = el(
        "li",
        { "data-participant": pid },
        el("span", { className: "who", text: label }),
        el("span", { className: "role", text: entry.role === "host" ? "Host" : "" }),
        el("span", { className: "keys muted", text: keys }),
      );
      if (this._host && !isSelf) {
        const remove = () => this._onKick(pid);
        item.append(
          el("button", {
            type: "button",
            className: "small danger",
            text: "Remove",
            "aria-label": `Remove ${entry.name} from the meeting`,
            onClick: remove,
          }),
        );
      }
      return item;
    });
    $("roster-list").replaceChildren(...items);
    $("people-heading").textContent = `People (${roster.length})`;
    if (view !== null) this._code(view, roster.length);
  }

  _code(view, people) {
    const shown = $("security-code");
    if (view.code === null) {
      const why = pendingReason(view);
      shown.textContent = `Pending${why ? ` (${why})` : ""}`;
      shown.classList.add("pending");
      return;
    }
    shown.classList.remove("pending");
    shown.replaceChildren(...view.code.split(" ").map((g) => el("span", { text: g })));
    shown.setAttribute("aria-label", `Security code: ${view.code}`);
    shown.dataset.code = view.code;
    if (this._lastCode !== null && view.code !== this._lastCode) {
      // Someone came or went, or their keys changed: the earlier comparison no longer vouches.
      const notice = $("code-changed");
      notice.textContent = CODE_CHANGED;
      notice.hidden = false;
      announce(CODE_CHANGED);
    }
    // A code with nobody else in it is compared with nobody: its change says nothing.
    this._lastCode = people > 1 ? view.code : null;
  }

  lobby(waiting) {
    $("lobby-section").hidden = waiting.length === 0;
    const items = waiting.map(({ participant_id: pid, name }) =>
      el(
        "li",
        { "data-participant": pid },
        el("span", { className: "who", text: name }),
        this._host
          ? el("button", {
              type: "button",
              className: "small primary",
              text: "Admit",
              "aria-label": `Admit ${name}`,
              onClick: () => this._onAdmit(pid),
            })
          : "",
      ),
    );
    $("lobby-list").replaceChildren(...items);
    if (waiting.length) announce(`Waiting to join: ${waiting.map((w) => w.name).join(", ")}`);
  }

  notice(text) {
    $("notices-section").hidden = false;
    $("notices").prepend(el("li", { text }));
    announce(text);
  }
}
