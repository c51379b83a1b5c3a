// Keyboard-first face grid: focus, labeling keys, undo, selection and bulk actions.
// No build step: an ES module the page loads directly. The misclassified review queue reuses
// it through initFaceGrid(root, {keys: {...extra handlers}}). Changes and undo go to the REST API
// (/api/v1/datasets/<id>/label-changes/ and undo/) with the session and the CSRF header.

function csrfToken() {
  try {
    return JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"] || "";
  } catch (e) {
    return "";
  }
}

export async function postJSON(url, body) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
    credentials: "same-origin",
    body: JSON.stringify(body),
  });
  let data = {};
  try {
    data = await response.json();
  } catch (e) {
    data = { ok: false, error: `The server answered ${response.status}.` };
  }
  data.status = response.status;
  if (data.ok === undefined) data.ok = response.ok;
  // The API's error shape, {"error": {"code", "message", "fields"}}: `error` becomes the sentence.
  if (data.error && typeof data.error === "object") {
    data.code = data.error.code;
    data.fields = data.error.fields || {};
    data.error = data.error.message;
  }
  return data;
}

export function initFaceGrid(root, options = {}) {
  const classKeys = JSON.parse(root.dataset.classes || "{}"); // {class: key}
  const keyToClass = Object.fromEntries(Object.entries(classKeys).map(([c, k]) => [k, c]));
  const classOrder = Object.keys(classKeys);
  const status = document.getElementById(options.statusId || "status");
  const detail = document.getElementById(options.detailId || "detail");
  const selCount = document.getElementById("selcount");
  const tiles = () => Array.from(root.querySelectorAll(".tile"));
  const state = { focus: -1, selected: new Set(), anchor: null, allMatching: false, detailTimer: null };

  function say(text, kind = "ok") {
    if (!status) return;
    status.textContent = text;
    status.className = `status ${kind}`;
  }

  function tileById(id) {
    return root.querySelector(`.tile[data-id="${id}"]`);
  }

  function render(tile, face) {
    tile.dataset.version = face.version;
    tile.dataset.label = face.label;
    tile.classList.toggle("unsure", !!face.is_unsure);
    tile.classList.toggle("excluded", !!face.is_excluded);
    const badge = tile.querySelector(".badge");
    if (badge) {
      const index = classOrder.indexOf(face.label);
      badge.className = `badge ${face.label ? "c" + (index >= 0 ? index : 9) : "none"}`;
      badge.textContent = face.label || "unlabelled";
    }
    const flags = tile.querySelector(".flags");
    if (flags) {
      let split = flags.querySelector(".split");
      if (face.split) {
        if (!split) {
          split = document.createElement("span");
          split.className = "split";
          flags.appendChild(split);
        }
        split.textContent = face.split;
      } else if (split) {
        split.remove();
      }
    }
  }

  function applyFaces(faces) {
    for (const face of faces || []) {
      const tile = tileById(face.id);
      if (tile) render(tile, face);
    }
  }

  function setFocus(index, { scroll = true } = {}) {
    const all = tiles();
    if (!all.length) return;
    index = Math.max(0, Math.min(all.length - 1, index));
    if (state.focus >= 0 && all[state.focus]) all[state.focus].classList.remove("focused");
    state.focus = index;
    const tile = all[index];
    tile.classList.add("focused");
    tile.focus({ preventScroll: true });
    if (scroll) tile.scrollIntoView({ block: "nearest" });
    loadDetail(tile.dataset.id);
  }

  function loadDetail(id) {
    if (!detail || !root.dataset.detailUrl) return;
    clearTimeout(state.detailTimer);
    // Debounced so holding an arrow key does not fetch every face it passes.
    state.detailTimer = setTimeout(async () => {
      // ".../faces/0/" or ".../faces/0/?model=3": the face's id replaces the 0.
      const url = root.dataset.detailUrl.replace(/\/0\/(?=\?|$)/, `/${id}/`);
      const response = await fetch(url, { credentials: "same-origin" });
      if (response.ok) detail.innerHTML = await response.text();
    }, 150);
  }

  function columns() {
    const all = tiles();
    if (!all.length) return 1;
    const top = all[0].offsetTop;
    let n = 0;
    while (n < all.length && all[n].offsetTop === top) n++;
    return Math.max(1, n);
  }

  function focusedTile() {
    return tiles()[state.focus];
  }

  // Requests go out one after another, so fast typing and `z` act in the order pressed.
  let queue = Promise.resolve();
  function enqueue(task) {
    const run = queue.then(task, task);
    queue = run.catch(() => {});
    return run;
  }

  function change(faceTiles, changes, { advance = true } = {}) {
    if (!faceTiles.length) {
      say("No face is focused: click a face or press an arrow key first.", "error");
      return Promise.resolve(null);
    }
    faceTiles.forEach((t) => t.classList.add("saving"));
    const single = faceTiles.length === 1;
    if (advance && single) {
      // Move on at once (a reviewer types ahead); the answer updates the tile when it comes.
      const all = tiles();
      const index = all.indexOf(faceTiles[0]);
      if (index < all.length - 1) setFocus(index + 1);
    }
    return enqueue(async () => {
      const ids = faceTiles.map((t) => Number(t.dataset.id));
      const versions = Object.fromEntries(faceTiles.map((t) => [t.dataset.id, Number(t.dataset.version)]));
      const data = await postJSON(root.dataset.changeUrl, { faces: ids, versions, changes });
      faceTiles.forEach((t) => t.classList.remove("saving"));
      if (data.ok) {
        faceTiles.forEach((t) => t.classList.remove("conflict"));
        applyFaces(data.faces);
        const last = single && tiles().indexOf(faceTiles[0]) === tiles().length - 1;
        say(last ? `${data.message} Last face of the page: press Enter for the next page.` : data.message, "ok");
        if (single && !advance) loadDetail(faceTiles[0].dataset.id);
      } else {
        if (data.current) {
          applyFaces(data.current);
          data.current.forEach((f) => tileById(f.id)?.classList.add("conflict"));
        }
        say(data.error, "error");
      }
      return data;
    });
  }

  function undo() {
    return enqueue(() => postJSON(root.dataset.undoUrl, {}).then(afterUndo));
  }

  function afterUndo(data) {
    if (data.ok) {
      applyFaces(data.faces);
      say(data.message, "ok");
      const first = data.faces && data.faces.length ? tileById(data.faces[0].id) : null;
      if (first) setFocus(tiles().indexOf(first));
    } else {
      say(data.error, "error");
    }
  }

  function updateSelection() {
    for (const tile of tiles()) tile.classList.toggle("selected", state.allMatching || state.selected.has(tile.dataset.id));
    if (selCount) {
      selCount.textContent = state.allMatching
        ? `all ${root.dataset.total} matching selected`
        : `${state.selected.size} selected`;
    }
  }

  function toggle(tile) {
    state.allMatching = false;
    const id = tile.dataset.id;
    if (state.selected.has(id)) state.selected.delete(id);
    else state.selected.add(id);
    state.anchor = tiles().indexOf(tile);
    updateSelection();
  }

  function selectRange(tile) {
    const all = tiles();
    const to = all.indexOf(tile);
    const from = state.anchor ?? to;
    state.allMatching = false;
    for (let i = Math.min(from, to); i <= Math.max(from, to); i++) state.selected.add(all[i].dataset.id);
    updateSelection();
  }

  function selectPage() {
    state.allMatching = false;
    tiles().forEach((t) => state.selected.add(t.dataset.id));
    updateSelection();
  }

  function clearSelection() {
    state.allMatching = false;
    state.selected.clear();
    updateSelection();
  }

  async function bulk(changes) {
    if (state.allMatching) {
      const n = Number(root.dataset.total);
      if (!window.confirm(`Change all ${n} faces matching this filter?`)) return;
      const data = await postJSON(root.dataset.changeUrl, {
        filter: root.dataset.query || "",
        expected_count: n,
        changes,
        flash: true,
      });
      if (data.ok) window.location.reload();
      else say(data.error, "error");
      return;
    }
    const chosen = tiles().filter((t) => state.selected.has(t.dataset.id));
    if (!chosen.length) {
      say("Select some faces first (click, shift-click, “Select page” or “Select all matching”).", "error");
      return;
    }
    const data = await change(chosen, changes, { advance: false });
    if (data && data.ok) clearSelection();
  }

  root.addEventListener("click", (event) => {
    const tile = event.target.closest(".tile");
    if (!tile) return;
    const index = tiles().indexOf(tile);
    if (event.shiftKey) selectRange(tile);
    else if (event.ctrlKey || event.metaKey || state.selected.size || state.allMatching) toggle(tile);
    else state.anchor = index;
    setFocus(index, { scroll: false });
  });

  document.addEventListener("keydown", (event) => {
    const target = event.target;
    if (target.closest && target.closest("input, select, textarea, [contenteditable]")) return;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const extra = options.keys && options.keys[event.key];
    if (extra) {
      event.preventDefault();
      extra({ tile: focusedTile(), change, say, setFocus, state });
      return;
    }
    const tile = focusedTile();
    switch (event.key) {
      case "ArrowRight":
        event.preventDefault();
        return setFocus(state.focus < 0 ? 0 : state.focus + 1);
      case "ArrowLeft":
        event.preventDefault();
        return setFocus(state.focus < 0 ? 0 : state.focus - 1);
      case "ArrowDown":
        event.preventDefault();
        return setFocus(state.focus < 0 ? 0 : state.focus + columns());
      case "ArrowUp":
        event.preventDefault();
        return setFocus(state.focus < 0 ? 0 : state.focus - columns());
      case "Enter":
        if (root.dataset.next) {
          event.preventDefault();
          window.location.href = root.dataset.next;
        } else {
          say("This is the last page of this filter.", "ok");
        }
        return;
      case "z":
        event.preventDefault();
        return undo();
      case "u":
        event.preventDefault();
        return change(tile ? [tile] : [], { is_unsure: !tile?.classList.contains("unsure") });
      case "x":
        event.preventDefault();
        return change(tile ? [tile] : [], { is_excluded: !tile?.classList.contains("excluded") });
      case " ":
        event.preventDefault();
        if (tile) toggle(tile);
        return;
      case "a":
        event.preventDefault();
        return selectPage();
      case "Escape":
        return clearSelection();
      default:
        break;
    }
    const cls = keyToClass[event.key.toLowerCase()];
    if (cls !== undefined) {
      event.preventDefault();
      change(tile ? [tile] : [], { label: cls });
    }
  });

  for (const button of document.querySelectorAll("[data-select]")) {
    button.addEventListener("click", () => {
      const what = button.dataset.select;
      if (what === "page") selectPage();
      else if (what === "none") clearSelection();
      else if (what === "filter") {
        state.allMatching = true;
        state.selected.clear();
        updateSelection();
      }
    });
  }
  for (const button of document.querySelectorAll("[data-bulk]")) {
    button.addEventListener("click", () => {
      const what = button.dataset.bulk;
      if (what === "label") {
        const value = document.getElementById("bulk-label").value;
        if (!value) return say("Choose the label to set.", "error");
        bulk({ label: value === "__none__" ? "" : value });
      } else if (what === "split") {
        const value = document.getElementById("bulk-split").value;
        if (!value) return say("Choose the split to assign.", "error");
        bulk({ split: value });
      } else if (what === "unsure") bulk({ is_unsure: true });
      else if (what === "sure") bulk({ is_unsure: false });
      else if (what === "exclude") bulk({ is_excluded: true });
      else if (what === "include") bulk({ is_excluded: false });
    });
  }

  if (tiles().length) setFocus(0, { scroll: false });
  return { change, undo, setFocus, say, state, tiles };
}

const auto = document.querySelector("[data-autoinit='face-grid']");
if (auto) window.faceGrid = initFaceGrid(auto);
