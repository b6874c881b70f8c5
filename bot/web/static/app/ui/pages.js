// Full-page explanations: a refused or spent link, an ended meeting, a removal, a browser that
// cannot encrypt. Never a blank page or a console error only.

import { $, announce, showScreen } from "./dom.js";

export function showPage(title, sentence, hint = "") {
  $("page-title").textContent = title;
  $("page-sentence").textContent = sentence;
  $("page-hint").textContent = hint;
  document.title = `${title} · Conclave`;
  showScreen("screen-page");
  announce(`${title}. ${sentence}`);
}
