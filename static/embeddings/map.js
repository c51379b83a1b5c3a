// The embedding map: every face of a dataset as a point of a 2-D projection of its descriptors
// (computed in the background; this script asks for it, shows the progress, then draws it).
// Canvas 2-D with the vendored d3 (window.d3): d3.zoom pans and zooms, d3.quadtree finds the
// point under the mouse, d3.polygonContains decides what a lasso holds. A selection is saved
// through the API and opened in the grid (?selection=<id>), where bulk actions work on it.

const d3 = window.d3;
const root = document.getElementById("map-root");
const canvas = document.getElementById("map-canvas");
const wrap = document.getElementById("map-wrap");
const ctx = canvas.getContext("2d");
const tip = document.getElementById("map-tip");
const statusBox = document.getElementById("map-status");
const statusText = document.getElementById("map-status-text");
const progress = document.getElementById("map-progress");
const legend = document.getElementById("map-legend");
const colourSelect = document.getElementById("map-colour");
const countText = document.getElementById("map-selection-count");
const openButton = document.getElementById("map-open-grid");

const PAD = 16;
const RADIUS = 3;
// Splits and metadata: Tableau 10, then grey for the "none" category each colouring ends with.
const PALETTE = ["#4e79a7", "#e15759", "#59a14f", "#f28e2b", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7", "#9c755f", "#17becf", "#bcbd22", "#7f7f7f"];
const NONE = "#c8c8c8";
// Labels and predictions: the class colours of every page (curator/colours.py, read from the
// CSS custom properties --class-<i> of curator.css), by the class's place in the dataset's list.
const CLASSES = (root.dataset.classes || "").split(",").filter(Boolean);
const CLASS_COLOURS = Array.from({ length: 8 }, (_, i) =>
  getComputedStyle(document.documentElement).getPropertyValue(`--class-${i}`).trim(),
);
const CLASS_OTHER = getComputedStyle(document.documentElement).getPropertyValue("--class-other").trim() || NONE;

const state = {
  faces: null, // {id, x, y, crop, label, split, excluded} as parallel arrays
  categories: {}, // {label: [...], split: [...]}
  colour: { categories: [], codes: [] },
  transform: d3.zoomIdentity,
  selected: new Set(),
  mode: "lasso",
  drag: null, // [[x, y], ...] of the lasso or the box being drawn (canvas pixels)
  tree: null,
  screen: null, // Float32Array of screen x, y per face (canvas pixels)
};

function csrfToken() {
  try {
    return JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"] || "";
  } catch (e) {
    return "";
  }
}

async function api(url, { method = "GET", body } = {}) {
  const response = await fetch(url, {
    method,
    credentials: "same-origin",
    headers: body ? { "Content-Type": "application/json", "X-CSRFToken": csrfToken() } : { "X-CSRFToken": csrfToken() },
    body: body ? JSON.stringify(body) : undefined,
  });
  let data = {};
  try {
    data = await response.json();
  } catch (e) {
    data = { error: { message: `The server answered ${response.status}.` } };
  }
  if (!response.ok) throw new Error((data.error && data.error.message) || `The server answered ${response.status}.`);
  return data;
}

function say(text, { error = false, percent = null } = {}) {
  statusText.textContent = text;
  statusBox.classList.toggle("error", error);
  progress.hidden = percent === null;
  if (percent !== null) progress.value = percent;
}

// --- Loading: ask for the map, follow the task, draw -------------------------------------------

let asked = false;
async function follow() {
  let data;
  try {
    data = await api(root.dataset.api);
  } catch (e) {
    return say(`The map's state could not be read: ${e.message}`, { error: true });
  }
  const s = data.state;
  const d = s.descriptors || { faces: 0, done: 0, running: false };
  const busy = s.status === "queued" || s.status === "running";
  if (!s.current && !busy && !asked && d.done > 0) {
    asked = true;
    try {
      await api(root.dataset.computeUrl, { method: "POST" });
    } catch (e) {
      return say(`The map could not be started: ${e.message}`, { error: true });
    }
    return setTimeout(follow, 300);
  }
  // A map that finished while the page watched replaces the one drawn.
  if (!busy && state.wasBusy) state.faces = null;
  state.wasBusy = busy;
  if (s.has_map && !state.faces) await loadPoints();
  if (busy) {
    const what = s.status === "queued" ? "Waiting for a worker" : `Computing the map: ${s.step}`;
    const old = s.has_map ? " (the map below is of older descriptors)" : "";
    say(`${what}${s.elapsed !== undefined ? ` · ${Math.round(s.elapsed)} s` : ""}${old}…`, {
      percent: s.percent === undefined ? 0 : s.percent,
    });
    return setTimeout(follow, 1500);
  }
  if (s.status === "failed") return say(s.error || "The map could not be computed.", { error: true });
  if (d.done === 0) {
    return say(
      d.faces
        ? `No face has a descriptor yet (0 of ${d.faces}): they are computed in the background after alignment.`
        : "This dataset has no aligned faces yet.",
      { error: false },
    );
  }
  const pending = d.running ? ` Descriptors are still being computed (${d.done} of ${d.faces}); the map follows when they are done.` : "";
  say(`${s.points} faces · ${s.method}${s.seconds ? `, computed in ${s.seconds} s` : ""}.${pending}`);
  if (d.running) setTimeout(follow, 5000);
}

async function loadPoints() {
  const data = await api(`${root.dataset.api}?points=1`);
  if (!data.faces) return;
  state.faces = data.faces;
  state.categories = data.categories;
  await recolour();
  updateScreen();
}

async function recolour() {
  const value = colourSelect.value;
  if (!state.faces) return;
  if (value === "label" || value === "split") {
    state.colour = { categories: state.categories[value], codes: state.faces[value], byClass: value === "label" };
  } else {
    const [by, model] = value.split(":");
    const params = new URLSearchParams({ by });
    if (model) params.set("model", model);
    try {
      const data = await api(`${root.dataset.coloursUrl}?${params}`);
      state.colour = { categories: data.categories, codes: data.codes, byClass: by === "prediction" };
    } catch (e) {
      say(e.message, { error: true });
      return;
    }
  }
  drawLegend();
  draw();
}

function colourOf(code) {
  const n = state.colour.categories.length;
  if (code === n - 1) return NONE; // every colouring's last category is "none"/"unlabelled"/...
  if (state.colour.byClass) {
    const i = CLASSES.indexOf(state.colour.categories[code]);
    return i < 0 ? CLASS_OTHER : CLASS_COLOURS[i % CLASS_COLOURS.length];
  }
  return PALETTE[code % (PALETTE.length - 1)];
}

function drawLegend() {
  const counts = new Array(state.colour.categories.length).fill(0);
  for (const c of state.colour.codes) counts[c]++;
  const ul = document.createElement("ul");
  state.colour.categories.forEach((name, i) => {
    const li = document.createElement("li");
    li.innerHTML = `<span class="swatch"></span><span class="name"></span><span class="muted"></span>`;
    li.querySelector(".swatch").style.background = colourOf(i);
    li.querySelector(".name").textContent = name;
    li.querySelector(".muted").textContent = counts[i];
    ul.appendChild(li);
  });
  legend.replaceChildren(ul);
}

// --- Drawing ------------------------------------------------------------------------------------

function sizeCanvas() {
  const ratio = window.devicePixelRatio || 1;
  const width = Math.max(300, wrap.clientWidth - 2);
  const height = Math.round(Math.min(760, Math.max(360, width * 0.68)));
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  state.width = width;
  state.height = height;
}

// Screen position (CSS pixels of the canvas) of each face under the current zoom.
function updateScreen() {
  if (!state.faces) return;
  const n = state.faces.id.length;
  const t = state.transform;
  const w = state.width - 2 * PAD;
  const h = state.height - 2 * PAD;
  state.screen = new Float32Array(2 * n);
  for (let i = 0; i < n; i++) {
    state.screen[2 * i] = t.applyX(PAD + state.faces.x[i] * w);
    state.screen[2 * i + 1] = t.applyY(PAD + (1 - state.faces.y[i]) * h);
  }
  state.tree = d3
    .quadtree()
    .x((i) => state.screen[2 * i])
    .y((i) => state.screen[2 * i + 1])
    .addAll(d3.range(n));
  draw();
}

function draw() {
  ctx.clearRect(0, 0, state.width, state.height);
  if (!state.faces || !state.screen) return;
  const n = state.faces.id.length;
  const anySelected = state.selected.size > 0;
  for (let i = 0; i < n; i++) {
    const picked = state.selected.has(state.faces.id[i]);
    ctx.globalAlpha = anySelected && !picked ? 0.35 : 0.9;
    ctx.fillStyle = colourOf(state.colour.codes[i]);
    ctx.beginPath();
    ctx.arc(state.screen[2 * i], state.screen[2 * i + 1], picked ? RADIUS + 1 : RADIUS, 0, 2 * Math.PI);
    ctx.fill();
    if (picked) {
      ctx.globalAlpha = 1;
      ctx.strokeStyle = "#111";
      ctx.lineWidth = 1;
      ctx.stroke();
    }
  }
  ctx.globalAlpha = 1;
  if (state.drag && state.drag.length > 1) {
    ctx.strokeStyle = "#333";
    ctx.setLineDash([4, 3]);
    ctx.beginPath();
    const shape = state.mode === "box" ? boxPolygon(state.drag) : state.drag;
    shape.forEach(([x, y], k) => (k ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
    ctx.closePath();
    ctx.stroke();
    ctx.setLineDash([]);
  }
}

function boxPolygon(drag) {
  const [x0, y0] = drag[0];
  const [x1, y1] = drag[drag.length - 1];
  return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]];
}

// --- Zoom, hover, selection ---------------------------------------------------------------------

const zoom = d3
  .zoom()
  .scaleExtent([0.5, 60])
  // Wheel zoom always; dragging pans only in "pan" mode (in the others it draws a selection).
  .filter((event) => event.type === "wheel" || (state.mode === "pan" && !event.button))
  .on("zoom", (event) => {
    state.transform = event.transform;
    updateScreen();
  });
d3.select(canvas).call(zoom);

function pointer(event) {
  const rect = canvas.getBoundingClientRect();
  return [event.clientX - rect.left, event.clientY - rect.top];
}

function showTip(event) {
  if (!state.tree || state.drag) return;
  const [x, y] = pointer(event);
  const i = state.tree.find(x, y, 8);
  if (i === undefined) {
    tip.hidden = true;
    return;
  }
  const label = state.categories.label[state.faces.label[i]];
  tip.querySelector("img").src = state.faces.crop[i];
  tip.querySelector(".map-tip-text").textContent =
    `face ${state.faces.id[i]} · ${label}` +
    (colourSelect.value !== "label" ? ` · ${state.colour.categories[state.colour.codes[i]]}` : "");
  tip.style.left = `${Math.min(x + 12, state.width - 110)}px`;
  tip.style.top = `${Math.max(0, y - 120)}px`;
  tip.hidden = false;
}

canvas.addEventListener("pointerdown", (event) => {
  if (state.mode === "pan" || event.button !== 0 || !state.faces) return;
  canvas.setPointerCapture(event.pointerId);
  state.drag = [pointer(event)];
  tip.hidden = true;
});
canvas.addEventListener("pointermove", (event) => {
  if (!state.drag) return showTip(event);
  state.drag.push(pointer(event));
  draw();
});
canvas.addEventListener("pointerup", (event) => {
  if (!state.drag) return;
  const drag = state.drag;
  state.drag = null;
  if (drag.length < 3) {
    draw();
    return;
  }
  const polygon = state.mode === "box" ? boxPolygon(drag) : drag;
  const add = event.shiftKey; // shift adds to the selection
  if (!add) state.selected.clear();
  for (let i = 0; i < state.faces.id.length; i++) {
    if (d3.polygonContains(polygon, [state.screen[2 * i], state.screen[2 * i + 1]])) state.selected.add(state.faces.id[i]);
  }
  updateSelection();
});
canvas.addEventListener("pointerleave", () => (tip.hidden = true));

function updateSelection() {
  const n = state.selected.size;
  countText.textContent = `${n} selected`;
  openButton.disabled = n === 0;
  draw();
}

document.getElementById("map-clear").addEventListener("click", () => {
  state.selected.clear();
  updateSelection();
});

openButton.addEventListener("click", async () => {
  if (!state.selected.size) return;
  openButton.disabled = true;
  try {
    const data = await api(root.dataset.selectionsUrl, { method: "POST", body: { face_ids: Array.from(state.selected) } });
    window.location.href = data.grid_url;
  } catch (e) {
    say(`The selection could not be opened: ${e.message}`, { error: true });
    openButton.disabled = false;
  }
});

for (const radio of document.querySelectorAll("input[name='map-mode']")) {
  radio.addEventListener("change", () => {
    state.mode = radio.value;
    wrap.classList.toggle("pan", state.mode === "pan");
  });
}
colourSelect.addEventListener("change", recolour);
window.addEventListener("resize", () => {
  sizeCanvas();
  updateScreen();
});

sizeCanvas();
follow();

// For tests and the console: the faces on the map and where they are drawn.
window.embeddingMap = {
  ready: () => !!state.screen,
  ids: () => (state.faces ? state.faces.id.slice() : []),
  screen: () => (state.faces ? state.faces.id.map((id, i) => [id, state.screen[2 * i], state.screen[2 * i + 1]]) : []),
  selected: () => Array.from(state.selected),
};
