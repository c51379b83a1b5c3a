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

// The page's keys (labeling/keys.py via {% key_map %}): {action: key}. The `?` overlay
// (static/curator/keys.js) lists the same block, so a key works exactly where it is listed.
export function pageBindings() {
  const block = document.getElementById("page-keys");
  try {
    return block ? JSON.parse(block.textContent).bindings || {} : {};
  } catch (e) {
    return {};
  }
}

// Layout kept in the URL (so a shared link opens the same layout): `panels=open` shows the filter
// and bulk panels, `size=<px>` the tile size. Changed with history.replaceState, no reload.
const TILE_SIZES = [64, 80, 96, 112, 136, 168, 208];
const TILE_DEFAULT = 96;

function urlParam(name) {
  return new URLSearchParams(window.location.search).get(name);
}

function urlParamSet(name, value) {
  const url = new URL(window.location.href);
  if (value === null || value === undefined || value === "") url.searchParams.delete(name);
  else url.searchParams.set(name, value);
  window.history.replaceState(window.history.state, "", url);
  // Links and forms built by the server carry the layout on to the next page as well.
  for (const a of document.querySelectorAll(".pager a, a#next-page")) {
    const target = new URL(a.href, window.location.href);
    if (value === null || value === undefined || value === "") target.searchParams.delete(name);
    else target.searchParams.set(name, value);
    a.href = target.toString();
  }
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
      // The class colour: its position in the dataset's class list (curator/colours.py).
      badge.className = `badge ${face.label ? "c" + (index >= 0 ? index % 8 : 9) : "none"}`;
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
      // Only the latest request may fill the panel: an older answer arriving late would show
      // another face, or this face as it was before a change.
      const ticket = (state.detailTicket = (state.detailTicket || 0) + 1);
      const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
      const text = response.ok ? await response.text() : null;
      if (text !== null && ticket === state.detailTicket) detail.innerHTML = text;
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

  // Post one change of the given tiles (a label change, or "not a face") in order with the
  // others; a single focused tile moves the focus on at once, as a reviewer types ahead.
  function sendChange(faceTiles, url, body, { advance = true, onDone = null } = {}) {
    if (!faceTiles.length) {
      say("No face is focused: click a face or press an arrow key first.", "error");
      return Promise.resolve(null);
    }
    faceTiles.forEach((t) => t.classList.add("saving"));
    const single = faceTiles.length === 1;
    if (advance && single) {
      const all = tiles();
      const index = all.indexOf(faceTiles[0]);
      if (index < all.length - 1) setFocus(index + 1);
    }
    return enqueue(async () => {
      const ids = faceTiles.map((t) => Number(t.dataset.id));
      const versions = Object.fromEntries(faceTiles.map((t) => [t.dataset.id, Number(t.dataset.version)]));
      const data = await postJSON(url, { faces: ids, versions, ...body });
      faceTiles.forEach((t) => t.classList.remove("saving"));
      if (data.ok) {
        faceTiles.forEach((t) => t.classList.remove("conflict"));
        applyFaces(data.faces);
        onDone(data, single);
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

  function change(faceTiles, changes, { advance = true } = {}) {
    return sendChange(faceTiles, root.dataset.changeUrl, { changes }, {
      advance,
      onDone(data, single) {
        const last = single && tiles().indexOf(faceTiles[0]) === tiles().length - 1;
        say(last ? `${data.message} Last face of the page: press Enter for the next page.` : data.message, "ok");
        if (single && !advance) loadDetail(faceTiles[0].dataset.id);
      },
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
    showBulkbar();
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

  // "All N matching" (more than a page): the server previews what would change (count and a
  // sample); nothing is sent until Confirm, and above CURATOR_MAX_ACTION_SHARE of the dataset
  // Confirm waits for the "I understand" checkbox (the server refuses it otherwise too).
  function el(tag, props = {}, children = []) {
    const node = Object.assign(document.createElement(tag), props);
    for (const child of children) node.append(child);
    return node;
  }

  async function bulkAllMatching(changes) {
    const n = Number(root.dataset.total);
    const body = { filter: root.dataset.query || "", expected_count: n, changes };
    const preview = await postJSON(root.dataset.changeUrl, { ...body, preview: true });
    if (!preview.ok) return say(preview.error, "error");
    if (!preview.count) return say(`Nothing to change: the ${n} matching faces already have ${preview.reason}.`, "ok");
    document.getElementById("bulk-preview")?.remove();
    const pct = (preview.share * 100).toFixed(1);
    const large = preview.needs_confirmation;
    const sample = el("div", { className: "sample" }, preview.sample.map((f) =>
      el("a", { href: f.url, target: "_blank", title: `face ${f.id}` }, [
        el("img", { src: f.crop_url, alt: `face ${f.id}`, width: 64, height: 64, loading: "lazy" }),
      ])));
    const check = el("input", { type: "checkbox", id: "bulk-confirm-large" });
    const confirm = el("button", { type: "button", id: "bulk-confirm", textContent: `Confirm: change ${preview.count} faces`, disabled: large });
    const cancel = el("button", { type: "button", className: "secondary", id: "bulk-cancel", textContent: "Cancel" });
    const box = el("div", { className: "bulk-preview", id: "bulk-preview", role: "dialog" }, [
      el("h3", { textContent: `All faces matching this filter → ${preview.reason}` }),
      el("p", { id: "bulk-preview-count", textContent: `This changes ${preview.count} of the ${n} matching faces, ${pct} % of the dataset. Nothing has changed yet.` }),
      sample,
      el("p", { className: "muted", textContent: preview.count > preview.sample.length ? `A sample of ${preview.sample.length} of the ${preview.count} faces.` : "" }),
      ...(large ? [el("label", { className: "confirm-large" }, [check, ` I understand this changes ${preview.count} faces (${pct} %)`])] : []),
      confirm, " ", cancel,
    ]);
    box.setAttribute("aria-modal", "true");
    const close = () => box.remove();
    check.addEventListener("change", () => { confirm.disabled = !check.checked; });
    cancel.addEventListener("click", () => { close(); say("Nothing was changed.", "ok"); });
    // Keys typed while the preview is open must not label the focused face behind it.
    box.addEventListener("keydown", (event) => { if (event.key === "Escape") close(); event.stopPropagation(); });
    confirm.addEventListener("click", async () => {
      confirm.disabled = true;
      const data = await postJSON(root.dataset.changeUrl, { ...body, confirm_large: large && check.checked, flash: true });
      if (data.ok) window.location.reload();
      else {
        close();
        say(data.error, "error");
      }
    });
    document.body.append(box);
    (large ? check : confirm).focus();
  }

  async function bulk(changes) {
    if (state.allMatching) return bulkAllMatching(changes);
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

  // --- Layout: panels, tile size, the full-screen photo ----------------------------------------

  const panels = document.getElementById("panels");
  const bulkbar = document.getElementById("bulkbar");
  const panelsToggle = document.getElementById("panels-toggle");
  function panelsOpen() {
    return !!panels && !panels.hidden;
  }
  function showBulkbar() {
    // The bulk bar also shows while something is selected, panels or not.
    if (bulkbar && panels) bulkbar.hidden = !(panelsOpen() || state.selected.size || state.allMatching);
  }
  function togglePanels(open = !panelsOpen()) {
    if (!panels) return;
    panels.hidden = !open;
    if (panelsToggle) panelsToggle.setAttribute("aria-expanded", String(open));
    urlParamSet("panels", open ? "open" : null);
    showBulkbar();
  }
  panelsToggle?.addEventListener("click", () => togglePanels());

  function tileSize() {
    const n = Number(urlParam("size"));
    return TILE_SIZES.includes(n) ? n : TILE_DEFAULT;
  }
  function applySize(size) {
    root.style.setProperty("--tile", `${size}px`);
    root.dataset.size = String(size);
  }
  function resize(step) {
    const at = TILE_SIZES.indexOf(tileSize());
    const next = TILE_SIZES[Math.max(0, Math.min(TILE_SIZES.length - 1, at + step))];
    applySize(next);
    urlParamSet("size", next === TILE_DEFAULT ? null : String(next));
    say(`Tiles ${next} px.`, "ok");
  }
  if (root.id === "grid" || options.sizes) applySize(tileSize());
  for (const button of document.querySelectorAll("[data-size]")) {
    button.addEventListener("click", () => resize(Number(button.dataset.size)));
  }

  const photoView = document.getElementById("photo-view");
  function photoOpen() {
    return !!photoView && !photoView.hidden;
  }
  function photoClose() {
    if (photoView) photoView.hidden = true;
  }
  async function photoShow(tile) {
    if (!photoView) return;
    if (!tile) return say("No face is focused: click a face or press an arrow key first.", "error");
    // The detail panel's photo (original pixels, every box, the landmarks) at full size.
    const url = root.dataset.detailUrl.replace(/\/0\/(?=\?|$)/, `/${tile.dataset.id}/`);
    const response = await fetch(url, { credentials: "same-origin" });
    if (!response.ok) return say(`The photo of face ${tile.dataset.id} could not be loaded (${response.status}).`, "error");
    const html = document.createElement("div");
    html.innerHTML = await response.text();
    const svg = html.querySelector("svg.photo");
    const body = document.getElementById("photo-view-body");
    body.replaceChildren(...(svg ? [svg] : []));
    const caption = html.querySelector(".face-detail > p.muted");
    document.getElementById("photo-view-caption").textContent = `Face ${tile.dataset.id}` + (caption ? ` · ${caption.textContent}` : "");
    photoView.hidden = false;
    photoView.dataset.face = tile.dataset.id;
  }
  document.getElementById("photo-button")?.addEventListener("click", () => photoShow(focusedTile()));
  document.getElementById("photo-view-close")?.addEventListener("click", photoClose);
  photoView?.addEventListener("click", (event) => {
    if (event.target === photoView) photoClose();
  });

  // --- Not a face: a false detection, excluded with that reason (its own action in the history)

  function notFace(faceTiles, { advance = true } = {}) {
    return sendChange(faceTiles, root.dataset.notFaceUrl, {}, {
      advance,
      onDone(data) {
        faceTiles.forEach((t) => t.classList.add("not-face"));
        say(`${data.message} Press z to undo.`, "ok");
      },
    });
  }
  document.getElementById("not-face-button")?.addEventListener("click", () => {
    const tile = focusedTile();
    notFace(tile ? [tile] : []);
  });
  detail?.addEventListener("click", (event) => {
    const button = event.target.closest("[data-not-face]");
    if (!button) return;
    const tile = tileById(button.dataset.notFace);
    if (tile) notFace([tile], { advance: false });
  });

  // --- Keys ----------------------------------------------------------------------------------

  const bindings = pageBindings(); // {action: key}
  const keyToAction = Object.fromEntries(Object.entries(bindings).map(([action, key]) => [key, action]));
  const handlers = {
    move: () => {},
    next: () => {
      if (root.dataset.next) window.location.href = root.dataset.next;
      else say("This is the last page of this filter.", "ok");
    },
    undo: () => undo(),
    unsure: (tile) => change(tile ? [tile] : [], { is_unsure: !tile?.classList.contains("unsure") }),
    exclude: (tile) => change(tile ? [tile] : [], { is_excluded: !tile?.classList.contains("excluded") }),
    not_face: (tile) => notFace(tile ? [tile] : []),
    accept: (tile) => {
      if (!tile) return say("No face is focused: click a face or press an arrow key first.", "error");
      if (!tile.dataset.suggested) return say(`Face ${tile.dataset.id} has no suggestion to accept.`, "error");
      return change([tile], { label: tile.dataset.suggested });
    },
    select: (tile) => tile && toggle(tile),
    select_page: () => selectPage(),
    clear: () => clearSelection(),
    photo: (tile) => photoShow(tile),
    // More like this: the grid of the faces nearest to the focused one (labeling/similarity.py).
    similar: (tile) => {
      if (!tile) return say("No face is focused: click a face or press an arrow key first.", "error");
      if (root.dataset.similarUrl) window.location.href = root.dataset.similarUrl + tile.dataset.id;
    },
    bigger: () => resize(1),
    smaller: () => resize(-1),
    panels: () => togglePanels(),
  };
  const ARROWS = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: "down", ArrowUp: "up" };

  document.addEventListener("keydown", (event) => {
    const target = event.target;
    if (target.closest && target.closest("input, select, textarea, [contenteditable]")) return;
    if (photoOpen()) {
      // The photo view is modal: Esc or the photo key closes it, other keys wait.
      if (event.key === "Escape" || event.key === bindings.photo) {
        event.preventDefault();
        photoClose();
      }
      return;
    }
    if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "a" && bindings.select_page) {
      event.preventDefault();
      return selectPage();
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const tile = focusedTile();
    // Older callers name keys directly (options.keys: {"z": fn}); pages now name actions.
    const extra = options.keys && options.keys[event.key];
    if (extra) {
      event.preventDefault();
      extra({ tile, change, say, setFocus, state });
      return;
    }
    if (ARROWS[event.key] !== undefined && bindings.move) {
      event.preventDefault();
      const step = ARROWS[event.key];
      const delta = step === "down" ? columns() : step === "up" ? -columns() : step;
      return setFocus(state.focus < 0 ? 0 : state.focus + delta);
    }
    let action = keyToAction[event.key];
    if (action === undefined && event.key === "=" && bindings.bigger) action = "bigger"; // + without shift
    if (action !== undefined) {
      const own = options.actions && options.actions[action];
      if (own) {
        event.preventDefault();
        return own({ tile, change, say, setFocus, state, loadDetail });
      }
      if (handlers[action]) {
        if (action !== "clear") event.preventDefault();
        return handlers[action](tile);
      }
    }
    const cls = keyToClass[event.key.toLowerCase()];
    if (cls !== undefined && !event.shiftKey) {
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
      else if (what === "not_face") {
        if (state.allMatching) return say("“Not a face” is for faces you looked at: select them on the page.", "error");
        notFace(tiles().filter((t) => state.selected.has(t.dataset.id)), { advance: false }).then((data) => {
          if (data && data.ok) clearSelection();
        });
      }
    });
  }

  if (tiles().length) setFocus(0, { scroll: false });
  return { change, undo, setFocus, say, state, tiles, notFace, photoShow, togglePanels, resize, loadDetail };
}

const auto = document.querySelector("[data-autoinit='face-grid']");
if (auto) window.faceGrid = initFaceGrid(auto);
