// Small DOM helpers. The page's policy allows no inline style or script, so everything here
// sets classes, attributes and text, never `style` or HTML.

export const $ = (id) => document.getElementById(id);

// An element: `props` sets className, text, attributes (aria-*, data-*, others) and `on*`
// listeners; `children` are appended.
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "className") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2).toLowerCase(), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  node.append(...children);
  return node;
}

export function showScreen(id) {
  for (const screen of document.querySelectorAll(".screen")) screen.hidden = screen.id !== id;
}

// Read out by screen readers (the page's polite live region).
export function announce(text) {
  $("live").textContent = text;
}

// A button that says what pressing it does ("Mute", "Unmute"): the label is its state.
export function setLabel(button, label) {
  button.textContent = label;
}
