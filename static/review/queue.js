// Moved out of templates/review/queue.html so the page runs under a Content-Security-Policy without inline script.
import { initFaceGrid, postJSON } from "../labeling/grid.js";
// The labeling grid's focus, arrows and detail panel, with the review keys on top: each key
// records a decision (and its label change) and moves on to the next undecided face.
const root = document.getElementById("queue");
if (root) {
  const target = root.dataset.modelVersion ? { model_version: Number(root.dataset.modelVersion) } : { run: Number(root.dataset.run) };
  const DECISIONS = { accept: "accepted", confirm: "confirmed", exclude: "excluded", unsure: "unsure" };
  const TEXT = { accepted: "accepted the model's label", confirmed: "confirmed", excluded: "excluded", unsure: "marked unsure" };
  function showProgress(p) {
    for (const key of ["remaining", "reviewed", "confirmed", "excluded", "unsure"]) document.getElementById("p-" + key).textContent = p[key];
    document.getElementById("p-changed").textContent = p.labels_changed;
    document.getElementById("p-bar").style.width = p.percent + "%";
  }
  function nextUndecided(ctx) {
    const all = ctx.state && document.querySelectorAll(".review-tile");
    const list = Array.from(all);
    for (let i = ctx.state.focus + 1; i < list.length; i++) if (!list[i].classList.contains("decided")) return ctx.setFocus(i);
    ctx.say("Last face shown: press Enter for the next ones.", "ok");
  }
  async function decide(key, ctx) {
    const tile = ctx.tile;
    if (!tile) return ctx.say("No face is focused: click a face or press an arrow key first.", "error");
    if (tile.classList.contains("decided")) return nextUndecided(ctx);
    tile.classList.add("saving");
    const data = await postJSON(root.dataset.decideUrl, { ...target, face: Number(tile.dataset.id), version: Number(tile.dataset.version), decision: key });
    tile.classList.remove("saving");
    if (!data.ok) { tile.classList.add("conflict"); return ctx.say(data.error, "error"); }
    tile.classList.remove("conflict");
    tile.classList.add("decided", "d-" + data.decision);
    tile.dataset.version = data.face.version;
    tile.querySelector(".decision").textContent = TEXT[data.decision] + (data.face.label ? " · " + data.face.label : "");
    // The tile and the detail panel show the face as it is now (an accepted label at once).
    tile.dataset.label = data.face.label;
    const badge = tile.querySelector("figcaption .badge");
    if (badge) { badge.textContent = data.face.label || "unlabelled"; badge.className = "badge " + (data.face.label_css || "none"); }
    ctx.loadDetail(tile.dataset.id);
    showProgress(data.progress);
    ctx.say("Face " + data.face.id + ": " + TEXT[data.decision] + ".", "ok");
    nextUndecided(ctx);
  }
  async function undo(ctx) {
    const data = await postJSON(root.dataset.undoUrl, target);
    if (!data.ok) return ctx.say(data.error, "error");
    const tile = root.querySelector('.tile[data-id="' + data.face.id + '"]');
    if (tile) {
      tile.classList.remove("decided", "d-accepted", "d-confirmed", "d-excluded", "d-unsure");
      tile.dataset.version = data.face.version;
      tile.querySelector(".decision").textContent = "";
      ctx.setFocus(Array.from(root.querySelectorAll(".tile")).indexOf(tile));
    }
    showProgress(data.progress);
    ctx.say("Undid the decision on face " + data.face.id + "; it is back in the queue.", "ok");
  }
  // Actions, not letters: the keys come from labeling/keys.py (the page's key map).
  const actions = { undo: (ctx) => undo(ctx), next: () => window.location.reload() };
  for (const [action, decision] of Object.entries(DECISIONS)) actions[action] = (ctx) => decide(decision, ctx);
  window.reviewQueue = initFaceGrid(root, { actions });
}
