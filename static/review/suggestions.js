// Moved out of templates/review/suggestions.html so the page runs under a Content-Security-Policy without inline script.
import { initFaceGrid, postJSON } from "../labeling/grid.js";
// The labeling grid's focus, arrows and detail panel, with the suggestion keys on top. A decided
// face leaves the page at once; `z` takes the last decision back and puts its tile back in place.
const root = document.getElementById("queue");
if (root) {
  const target = { model_version: Number(root.dataset.modelVersion), queue: "suggestions" };
  const classKeys = JSON.parse(root.dataset.classKeys || "{}"); // {class: key}
  const version = "v" + root.dataset.versionNumber;
  const removed = new Map(); // face id -> tile taken off the page, for undo
  const tiles = () => Array.from(root.querySelectorAll(".tile"));

  function showProgress(p) {
    for (const key of ["remaining", "accepted", "confirmed", "excluded", "unsure"]) document.getElementById("p-" + key).textContent = p[key];
    document.getElementById("p-bar").style.width = p.percent + "%";
  }
  function describe(data, suggested) {
    const label = data.face.label;
    if (data.decision === "accepted") return `accepted ${version}'s suggestion: labelled ${label}`;
    if (data.decision === "confirmed") return `labelled ${label} (${version} suggested ${suggested})`;
    if (data.decision === "excluded") return "excluded";
    return "marked unsure";
  }
  // The grid keeps the focused tile by index: after the page's tiles change, point it at the
  // tile that has the focus ring (or the one now in the removed tile's place).
  function refocus(ctx, focused, fallbackIndex) {
    const list = tiles();
    document.getElementById("queue-empty").hidden = list.length > 0;
    if (!list.length) {
      ctx.state.focus = -1;
      return;
    }
    const index = focused && focused.isConnected ? list.indexOf(focused) : -1;
    if (index >= 0) ctx.state.focus = index;
    else {
      ctx.state.focus = -1;
      ctx.setFocus(Math.min(fallbackIndex, list.length - 1));
    }
  }
  function takeOff(tile, ctx) {
    const focused = root.querySelector(".tile.focused");
    const index = tiles().indexOf(tile);
    removed.set(tile.dataset.id, tile);
    tile.remove();
    refocus(ctx, focused === tile ? null : focused, index);
  }
  function putBack(tile, ctx) {
    const focused = root.querySelector(".tile.focused");
    const pos = Number(tile.dataset.pos);
    const after = tiles().find((t) => Number(t.dataset.pos) > pos);
    root.insertBefore(tile, after || null);
    removed.delete(tile.dataset.id);
    refocus(ctx, focused, 0);
    ctx.setFocus(tiles().indexOf(tile));
  }

  // Requests go out one after another, so typing ahead and `z` act in the order pressed.
  let pending = Promise.resolve();
  function enqueue(task) {
    const run = pending.then(task, task);
    pending = run.catch(() => {});
    return run;
  }
  function decide(body, ctx) {
    const tile = ctx.tile;
    if (!tile) return ctx.say("No face is focused: click a face or press an arrow key first.", "error");
    if (tile.classList.contains("saving")) return;
    tile.classList.add("saving");
    const list = tiles();
    const index = list.indexOf(tile);
    if (index < list.length - 1) ctx.setFocus(index + 1); // move on at once; the answer removes the tile
    return enqueue(async () => {
      const data = await postJSON(root.dataset.decideUrl, { ...target, face: Number(tile.dataset.id), version: Number(tile.dataset.version), ...body });
      tile.classList.remove("saving");
      if (!data.ok) {
        tile.classList.add("conflict");
        return ctx.say(`Face ${tile.dataset.id}: ${data.error}`, "error");
      }
      tile.classList.remove("conflict");
      tile.classList.add("decided", "d-" + data.decision);
      tile.dataset.version = data.face.version;
      tile.dataset.label = data.face.label;
      tile.querySelector(".decision").textContent = describe(data, tile.dataset.suggested);
      takeOff(tile, ctx);
      showProgress(data.progress);
      ctx.say(`Face ${data.face.id}: ${describe(data, tile.dataset.suggested)}.` + (tiles().length ? "" : " Press Enter for the next faces."), "ok");
    });
  }
  function undo(ctx) {
    return enqueue(async () => {
      const data = await postJSON(root.dataset.undoUrl, target);
      if (!data.ok) return ctx.say(data.error, "error");
      const tile = removed.get(String(data.face.id));
      if (tile) {
        tile.classList.remove("decided", "d-accepted", "d-confirmed", "d-excluded", "d-unsure", "conflict");
        tile.dataset.version = data.face.version;
        tile.dataset.label = data.face.label;
        tile.querySelector(".decision").textContent = "";
        putBack(tile, ctx);
      }
      showProgress(data.progress);
      ctx.say(`Undid the decision on face ${data.face.id}; it is back in the queue` + (tile ? "." : ": press Enter to see it."), "ok");
    });
  }

  // Actions, not letters: the keys come from labeling/keys.py (the page's key map).
  const actions = {
    accept: (ctx) => decide({ decision: "accepted" }, ctx),
    exclude: (ctx) => decide({ decision: "excluded" }, ctx),
    unsure: (ctx) => decide({ decision: "unsure" }, ctx),
    undo: (ctx) => undo(ctx),
    next: () => window.location.reload(),
  };
  const keys = {};
  for (const [cls, key] of Object.entries(classKeys)) keys[key] = (ctx) => decide({ decision: "label", label: cls }, ctx);
  window.suggestionQueue = initFaceGrid(root, { keys, actions });
}
