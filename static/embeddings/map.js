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
  // The map's points as typed arrays (a million faces load as 22 MB of binary, see
  // labeling/map_api.py map_points_binary): ids, x and y in [0, 1], label/split/excluded codes.
  n: 0,
  ids: null, // Float64Array (face ids fit in 53 bits)
  x: null,
  y: null,
  label: null,
  split: null,
  excluded: null, // 1: excluded, GONE: deleted since the map was computed (not drawn)
  categories: {}, // {label: [...], split: [...]}
  colour: { categories: [], codes: null },
  transform: d3.zoomIdentity,
  picked: null, // Uint8Array: 1 where the face is selected
  pickedCount: 0,
  mode: "lasso",
  drag: null, // [[x, y], ...] of the lasso or the box being drawn (canvas pixels)
  grid: null, // uniform grid over the map's [0, 1] square: hover and lasso look only in nearby cells
  timings: { draw: [], lasso: null },
};
const GONE = 255;
// Up to this many points in view each is a circle; more are drawn as pixels into one image
// (the level of detail of a million points: about 15 ms a frame, 30 fps while zooming).
const CIRCLES_MAX = 20000;
const GRID = 256;

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
  if (!busy && state.wasBusy) state.n = 0;
  state.wasBusy = busy;
  if (s.has_map && !state.n) await loadPoints();
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
  const response = await fetch(`${root.dataset.api}points/`, { credentials: "same-origin" });
  if (!response.ok) return;
  const buffer = await response.arrayBuffer();
  const headerLength = new DataView(buffer).getUint32(0, true);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 4, headerLength)));
  const n = header.n;
  let at = 4 + headerLength;
  const ids = new BigInt64Array(buffer, at, n);
  at += 8 * n;
  state.x = new Float32Array(buffer, at, n);
  at += 4 * n;
  state.y = new Float32Array(buffer, at, n);
  at += 4 * n;
  state.label = new Uint8Array(buffer, at, n);
  state.split = new Uint8Array(buffer, at + n, n);
  state.excluded = new Uint8Array(buffer, at + 2 * n, n);
  state.ids = Float64Array.from(ids, Number);
  state.n = n;
  state.categories = header.categories;
  state.picked = new Uint8Array(n);
  state.pickedCount = 0;
  state.grid = buildGrid();
  await recolour();
}

// Points bucketed by cell of a GRID x GRID grid over [0, 1]^2 (a counting sort): cell c holds
// order[start[c] .. start[c + 1]).
function buildGrid() {
  const n = state.n;
  const cell = new Uint32Array(n);
  const start = new Uint32Array(GRID * GRID + 1);
  for (let i = 0; i < n; i++) {
    const cx = Math.min(GRID - 1, Math.max(0, Math.floor(state.x[i] * GRID)));
    const cy = Math.min(GRID - 1, Math.max(0, Math.floor(state.y[i] * GRID)));
    cell[i] = cy * GRID + cx;
    start[cell[i] + 1]++;
  }
  for (let c = 0; c < GRID * GRID; c++) start[c + 1] += start[c];
  const fill = start.slice(0, GRID * GRID);
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[fill[cell[i]]++] = i;
  return { start, order };
}

// Calls visit(i) for every point in the cells overlapping the data rectangle.
function eachInRect(x0, y0, x1, y1, visit) {
  const g = state.grid;
  const cx0 = Math.max(0, Math.floor(x0 * GRID));
  const cx1 = Math.min(GRID - 1, Math.floor(x1 * GRID));
  const cy0 = Math.max(0, Math.floor(y0 * GRID));
  const cy1 = Math.min(GRID - 1, Math.floor(y1 * GRID));
  for (let cy = cy0; cy <= cy1; cy++) {
    for (let c = cy * GRID + cx0; c <= cy * GRID + cx1; c++) {
      for (let k = g.start[c]; k < g.start[c + 1]; k++) visit(g.order[k]);
    }
  }
}

async function recolour() {
  const value = colourSelect.value;
  if (!state.n) return;
  if (value === "label" || value === "split") {
    state.colour = { categories: state.categories[value], codes: state[value], byClass: value === "label" };
  } else {
    const [by, model] = value.split(":");
    const params = new URLSearchParams({ by });
    if (model) params.set("model", model);
    try {
      const data = await api(`${root.dataset.coloursUrl}?${params}`);
      state.colour = { categories: data.categories, codes: Uint8Array.from(data.codes), byClass: by === "prediction" };
    } catch (e) {
      say(e.message, { error: true });
      return;
    }
  }
  state.colour.rgba = colourTable();
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

// Each category's colour as a little-endian RGBA word for ImageData, full and faded (a point
// outside the selection while there is one).
function colourTable() {
  const probe = document.createElement("canvas").getContext("2d");
  const words = (alpha) =>
    Uint32Array.from(state.colour.categories, (_, code) => {
      probe.fillStyle = colourOf(code);
      const hex = probe.fillStyle; // normalised to #rrggbb
      const r = parseInt(hex.slice(1, 3), 16);
      const g = parseInt(hex.slice(3, 5), 16);
      const b = parseInt(hex.slice(5, 7), 16);
      // Faded: blended with the white background instead of transparent (one write per pixel).
      const mix = (v) => Math.round(255 - alpha * (255 - v));
      return (255 << 24) | (mix(b) << 16) | (mix(g) << 8) | mix(r);
    });
  return { full: words(1), faded: words(0.3) };
}

function drawLegend() {
  const counts = new Array(state.colour.categories.length).fill(0);
  const codes = state.colour.codes;
  for (let i = 0; i < state.n; i++) if (state.excluded[i] !== GONE) counts[codes[i]]++;
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
  state.ratio = ratio;
}

// Map coordinates [0, 1] <-> canvas CSS pixels under the current zoom.
function screenX(x) {
  return state.transform.k * (PAD + x * (state.width - 2 * PAD)) + state.transform.x;
}
function screenY(y) {
  return state.transform.k * (PAD + (1 - y) * (state.height - 2 * PAD)) + state.transform.y;
}
function dataX(sx) {
  return ((sx - state.transform.x) / state.transform.k - PAD) / (state.width - 2 * PAD);
}
function dataY(sy) {
  return 1 - ((sy - state.transform.y) / state.transform.k - PAD) / (state.height - 2 * PAD);
}

// One draw per animation frame however many zoom or pointer events arrive.
let frame = 0;
function draw() {
  if (!frame) frame = requestAnimationFrame(drawNow);
}

function drawNow() {
  frame = 0;
  const started = performance.now();
  ctx.clearRect(0, 0, state.width, state.height);
  if (state.n && state.colour.codes) {
    // The points in view, by the grid's cells (the rest is not looked at).
    const visible = [];
    eachInRect(dataX(0), dataY(state.height), dataX(state.width), dataY(0), (i) => {
      if (state.excluded[i] !== GONE) visible.push(i);
    });
    if (visible.length <= CIRCLES_MAX) drawCircles(visible);
    else drawPixels(visible);
  }
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
  const times = state.timings.draw;
  times.push(performance.now() - started);
  if (times.length > 120) times.shift();
}

// Few points: a circle each, one path per colour (a fill call per colour, not per point).
function drawCircles(visible) {
  const anySelected = state.pickedCount > 0;
  const codes = state.colour.codes;
  const byCode = new Map();
  for (const i of visible) {
    const key = codes[i] * 2 + state.picked[i];
    if (!byCode.has(key)) byCode.set(key, []);
    byCode.get(key).push(i);
  }
  for (const [key, points] of byCode) {
    const picked = key % 2 === 1;
    const r = picked ? RADIUS + 1 : RADIUS;
    ctx.globalAlpha = anySelected && !picked ? 0.35 : 0.9;
    ctx.fillStyle = colourOf((key - (key % 2)) / 2);
    ctx.beginPath();
    for (const i of points) {
      const x = screenX(state.x[i]);
      const y = screenY(state.y[i]);
      ctx.moveTo(x + r, y);
      ctx.arc(x, y, r, 0, 2 * Math.PI);
    }
    ctx.fill();
    if (picked) {
      ctx.globalAlpha = 1;
      ctx.strokeStyle = "#111";
      ctx.lineWidth = 1;
      ctx.stroke();
    }
  }
  ctx.globalAlpha = 1;
}

// Many points: each a 2x2 block of device pixels written into one image (selected ones 3x3 and
// drawn last, so they stay visible in a dense cloud).
function drawPixels(visible) {
  const w = canvas.width;
  const h = canvas.height;
  const image = ctx.createImageData(w, h);
  const pixels = new Uint32Array(image.data.buffer);
  const { full, faded } = state.colour.rgba;
  const table = state.pickedCount > 0 ? faded : full;
  const codes = state.colour.codes;
  const ratio = state.ratio;
  const t = state.transform;
  const sx = t.k * (state.width - 2 * PAD) * ratio;
  const ox = (t.k * PAD + t.x) * ratio;
  const sy = -t.k * (state.height - 2 * PAD) * ratio;
  const oy = (t.k * (state.height - PAD) + t.y) * ratio;
  const put = (i, size, colour) => {
    const px = Math.floor(state.x[i] * sx + ox);
    const py = Math.floor(state.y[i] * sy + oy);
    for (let dy = 0; dy < size; dy++) {
      const row = py + dy;
      if (row < 0 || row >= h) continue;
      for (let dx = 0; dx < size; dx++) {
        const col = px + dx;
        if (col >= 0 && col < w) pixels[row * w + col] = colour;
      }
    }
  };
  for (const i of visible) if (!state.picked[i]) put(i, 2, table[codes[i]]);
  for (const i of visible) if (state.picked[i]) put(i, 3, full[codes[i]]);
  ctx.putImageData(image, 0, 0);
}

function boxPolygon(drag) {
  const [x0, y0] = drag[0];
  const [x1, y1] = drag[drag.length - 1];
  return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]];
}

// --- Zoom, hover, selection ---------------------------------------------------------------------

const zoom = d3
  .zoom()
  .scaleExtent([0.5, 400])
  // Wheel zoom always; dragging pans only in "pan" mode (in the others it draws a selection).
  .filter((event) => event.type === "wheel" || (state.mode === "pan" && !event.button))
  .on("zoom", (event) => {
    state.transform = event.transform;
    draw();
  });
d3.select(canvas).call(zoom);

function pointer(event) {
  const rect = canvas.getBoundingClientRect();
  return [event.clientX - rect.left, event.clientY - rect.top];
}

// The drawn point nearest to (x, y) canvas pixels within `radius` pixels, or -1.
function nearestPoint(x, y, radius) {
  let best = -1;
  let bestD = radius * radius;
  eachInRect(dataX(x - radius), dataY(y + radius), dataX(x + radius), dataY(y - radius), (i) => {
    if (state.excluded[i] === GONE) return;
    const dx = screenX(state.x[i]) - x;
    const dy = screenY(state.y[i]) - y;
    const d = dx * dx + dy * dy;
    if (d <= bestD) {
      bestD = d;
      best = i;
    }
  });
  return best;
}

const crops = new Map(); // face id -> {crop, label} of faces hovered (asked once each)
let hovered = -1;
async function showTip(event) {
  if (!state.n || state.drag) return;
  const [x, y] = pointer(event);
  const i = nearestPoint(x, y, 8);
  hovered = i;
  if (i < 0) {
    tip.hidden = true;
    return;
  }
  const id = state.ids[i];
  if (!crops.has(id)) {
    try {
      crops.set(id, await api(`${root.dataset.api}faces/${id}/`));
    } catch (e) {
      return;
    }
    if (hovered !== i) return; // the mouse moved on while the face was asked for
  }
  const label = state.categories.label[state.label[i]];
  tip.querySelector("img").src = crops.get(id).crop;
  tip.querySelector(".map-tip-text").textContent =
    `face ${id} · ${label}` +
    (colourSelect.value !== "label" ? ` · ${state.colour.categories[state.colour.codes[i]]}` : "");
  tip.style.left = `${Math.min(x + 12, state.width - 110)}px`;
  tip.style.top = `${Math.max(0, y - 120)}px`;
  tip.hidden = false;
}

// Even-odd rule over a polygon given as flat arrays of x and y.
function inside(px, py, xs, ys) {
  let hit = false;
  for (let a = 0, b = xs.length - 1; a < xs.length; b = a++) {
    if (ys[a] > py !== ys[b] > py && px < ((xs[b] - xs[a]) * (py - ys[a])) / (ys[b] - ys[a]) + xs[a]) hit = !hit;
  }
  return hit;
}

// Select the points inside a polygon of canvas pixels: the polygon is taken into map
// coordinates once, only the grid cells under its bounding box are looked at.
function selectPolygon(polygon, add) {
  const started = performance.now();
  if (!add) {
    state.picked.fill(0);
    state.pickedCount = 0;
  }
  const xs = Float64Array.from(polygon, ([x]) => dataX(x));
  const ys = Float64Array.from(polygon, ([, y]) => dataY(y));
  let x0 = Infinity;
  let x1 = -Infinity;
  let y0 = Infinity;
  let y1 = -Infinity;
  for (let k = 0; k < xs.length; k++) {
    x0 = Math.min(x0, xs[k]);
    x1 = Math.max(x1, xs[k]);
    y0 = Math.min(y0, ys[k]);
    y1 = Math.max(y1, ys[k]);
  }
  eachInRect(x0, y0, x1, y1, (i) => {
    if (state.picked[i] || state.excluded[i] === GONE) return;
    const x = state.x[i];
    const y = state.y[i];
    if (x >= x0 && x <= x1 && y >= y0 && y <= y1 && inside(x, y, xs, ys)) {
      state.picked[i] = 1;
      state.pickedCount++;
    }
  });
  state.timings.lasso = performance.now() - started;
}

canvas.addEventListener("pointerdown", (event) => {
  if (state.mode === "pan" || event.button !== 0 || !state.n) return;
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
  selectPolygon(state.mode === "box" ? boxPolygon(drag) : drag, event.shiftKey); // shift adds
  updateSelection();
});
canvas.addEventListener("pointerleave", () => {
  hovered = -1;
  tip.hidden = true;
});

function selectedIds() {
  const out = [];
  for (let i = 0; i < state.n; i++) if (state.picked[i]) out.push(state.ids[i]);
  return out;
}

function updateSelection() {
  const n = state.pickedCount;
  countText.textContent = `${n} selected`;
  openButton.disabled = n === 0;
  draw();
}

document.getElementById("map-clear").addEventListener("click", () => {
  if (state.picked) state.picked.fill(0);
  state.pickedCount = 0;
  updateSelection();
});

openButton.addEventListener("click", async () => {
  if (!state.pickedCount) return;
  openButton.disabled = true;
  try {
    const data = await api(root.dataset.selectionsUrl, { method: "POST", body: { face_ids: selectedIds() } });
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
  draw();
});

sizeCanvas();
follow();

// For tests, the bench (bench/map_scale.py) and the console: the faces on the map, where they
// are drawn, the selection, and how long the last draws and the last lasso took (ms).
window.embeddingMap = {
  ready: () => state.n > 0 && !!state.colour.codes,
  ids: () => Array.from(state.ids || []),
  screen: () => {
    const out = [];
    for (let i = 0; i < state.n; i++) {
      if (state.excluded[i] !== GONE) out.push([state.ids[i], screenX(state.x[i]), screenY(state.y[i])]);
    }
    return out;
  },
  selected: selectedIds,
  count: () => state.n,
  timings: () => ({ draw: state.timings.draw.slice(), lasso: state.timings.lasso }),
  selectPolygon: (polygon) => {
    selectPolygon(polygon, false);
    updateSelection();
    return state.pickedCount;
  },
};
