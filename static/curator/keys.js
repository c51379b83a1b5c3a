// `?` on every page: an overlay listing the keys that work on this page. The list comes from the
// page's JSON block (#page-keys, written by labeling/keys.py through {% key_map %}), the same
// block the page's own script reads its bindings from, so the overlay never lists a dead key.

export function pageKeys() {
  const block = document.getElementById("page-keys");
  if (!block) return { page: "", bindings: {}, classes: {}, rows: [] };
  try {
    return JSON.parse(block.textContent);
  } catch (e) {
    return { page: "", bindings: {}, classes: {}, rows: [] };
  }
}

// {key typed: action} for a page's keydown handler; `actions` limits it to the ones it knows.
export function keyActions() {
  const map = {};
  for (const [action, key] of Object.entries(pageKeys().bindings || {})) map[key] = action;
  return map;
}

function typing(target) {
  return !!(target && target.closest && target.closest("input, select, textarea, [contenteditable]"));
}

function build() {
  const { rows } = pageKeys();
  const overlay = document.createElement("div");
  overlay.id = "keymap";
  overlay.className = "keymap";
  overlay.hidden = true;
  overlay.setAttribute("role", "dialog");
  overlay.setAttribute("aria-label", "Keys on this page");
  const box = document.createElement("div");
  box.className = "keymap-box";
  const title = document.createElement("h2");
  title.textContent = "Keys on this page";
  box.appendChild(title);
  const table = document.createElement("table");
  table.className = "compact";
  for (const row of rows) {
    const tr = document.createElement("tr");
    const k = document.createElement("td");
    const kbd = document.createElement("kbd");
    kbd.textContent = row.key;
    k.appendChild(kbd);
    const t = document.createElement("td");
    t.textContent = row.text;
    tr.append(k, t);
    table.appendChild(tr);
  }
  box.appendChild(table);
  const close = document.createElement("button");
  close.type = "button";
  close.className = "secondary";
  close.textContent = "Close";
  close.addEventListener("click", () => hide());
  box.appendChild(close);
  overlay.appendChild(box);
  overlay.addEventListener("click", (event) => {
    if (event.target === overlay) hide();
  });
  document.body.appendChild(overlay);
  return overlay;
}

let overlay = null;
export function show() {
  overlay = overlay || build();
  overlay.hidden = false;
}
export function hide() {
  if (overlay) overlay.hidden = true;
}
export function isOpen() {
  return !!overlay && !overlay.hidden;
}

// Capture phase: `?` and Esc are seen before a page's own handler, which then ignores keys
// while the overlay is open.
document.addEventListener(
  "keydown",
  (event) => {
    if (typing(event.target) || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "?") {
      event.preventDefault();
      event.stopImmediatePropagation();
      if (isOpen()) hide();
      else show();
    } else if (isOpen()) {
      if (event.key === "Escape") hide();
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  },
  true,
);

for (const button of document.querySelectorAll("[data-keymap]")) button.addEventListener("click", () => show());
window.curatorKeys = { pageKeys, keyActions, show, hide, isOpen };
