// The face page: zoom into the photo (buttons, click, mouse wheel; drag to move) by changing the
// SVG's viewBox, so boxes and landmarks stay sharp at any zoom; and relabel through the REST API
// (the same label-changes endpoint as the grid, with the face's version, so a stale page is told).
import { postJSON } from "./grid.js";

const photo = document.getElementById("photo");

function initZoom(svg) {
  const W = Number(svg.dataset.width) || 1;
  const H = Number(svg.dataset.height) || 1;
  let view = { x: 0, y: 0, w: W, h: H };
  const MIN = Math.max(16, Math.min(W, H) / 40);

  function apply() {
    svg.setAttribute("viewBox", `${view.x} ${view.y} ${view.w} ${view.h}`);
    svg.dataset.zoom = (W / view.w).toFixed(2);
  }

  function clamp(v) {
    v.w = Math.min(W, Math.max(MIN, v.w));
    v.h = v.w * (H / W);
    v.x = Math.min(Math.max(0, v.x), W - v.w);
    v.y = Math.min(Math.max(0, v.y), H - v.h);
    return v;
  }

  // The photo coordinates under a mouse event.
  function at(event) {
    const r = svg.getBoundingClientRect();
    // preserveAspectRatio "xMidYMid meet": the drawn photo may be letterboxed in the element.
    const scale = Math.min(r.width / view.w, r.height / view.h);
    const ox = (r.width - view.w * scale) / 2;
    const oy = (r.height - view.h * scale) / 2;
    return { x: view.x + (event.clientX - r.left - ox) / scale, y: view.y + (event.clientY - r.top - oy) / scale };
  }

  // Without a point (the + and − buttons and keys) zoom about the face while it is in view, so
  // "+" goes towards the face and not the photo's centre (issue 20).
  function faceCentre() {
    const [l, t, r, b] = (svg.dataset.box || "").split(",").map(Number);
    if (!(r > l && b > t)) return null;
    const c = { x: (l + r) / 2, y: (t + b) / 2 };
    const inView = c.x >= view.x && c.x <= view.x + view.w && c.y >= view.y && c.y <= view.y + view.h;
    return inView ? c : null;
  }

  function zoom(factor, center) {
    const c = center || faceCentre() || { x: view.x + view.w / 2, y: view.y + view.h / 2 };
    const w = view.w / factor;
    const h = w * (H / W);
    if (center) {
      // Keep the point under the cursor where it is.
      view = clamp({ x: c.x - ((c.x - view.x) / view.w) * w, y: c.y - ((c.y - view.y) / view.h) * h, w, h });
    } else {
      // A button or a key: the face (or the view's centre) to the middle.
      view = clamp({ x: c.x - w / 2, y: c.y - h / 2, w, h });
    }
    apply();
  }

  function toFace() {
    const [l, t, r, b] = (svg.dataset.box || "").split(",").map(Number);
    if (!(r > l && b > t)) return;
    const side = Math.max(r - l, b - t) * 2;
    view = clamp({ x: (l + r) / 2 - side / 2, y: (t + b) / 2 - side / 2, w: side, h: side });
    apply();
  }

  let drag = null;
  svg.addEventListener("pointerdown", (event) => {
    if (event.target.closest("a")) return; // another face's box is a link
    drag = { x: event.clientX, y: event.clientY, view: { ...view }, moved: false };
    svg.setPointerCapture(event.pointerId);
  });
  svg.addEventListener("pointermove", (event) => {
    if (!drag) return;
    const r = svg.getBoundingClientRect();
    const scale = Math.min(r.width / drag.view.w, r.height / drag.view.h);
    const dx = (event.clientX - drag.x) / scale;
    const dy = (event.clientY - drag.y) / scale;
    if (Math.abs(event.clientX - drag.x) + Math.abs(event.clientY - drag.y) > 4) drag.moved = true;
    if (drag.moved) {
      view = clamp({ ...drag.view, x: drag.view.x - dx, y: drag.view.y - dy });
      apply();
    }
  });
  svg.addEventListener("pointerup", (event) => {
    if (!drag) return;
    const moved = drag.moved;
    drag = null;
    // A click (not a drag) zooms in on that point; with shift or alt it zooms out.
    if (!moved) zoom(event.shiftKey || event.altKey ? 0.5 : 2, at(event));
  });
  svg.addEventListener(
    "wheel",
    (event) => {
      event.preventDefault();
      zoom(event.deltaY < 0 ? 1.25 : 0.8, at(event));
    },
    { passive: false },
  );
  for (const button of document.querySelectorAll("[data-zoom]")) {
    button.addEventListener("click", () => {
      const what = button.dataset.zoom;
      if (what === "in") zoom(2);
      else if (what === "out") zoom(0.5);
      else if (what === "face") toFace();
      else {
        view = { x: 0, y: 0, w: W, h: H };
        apply();
      }
    });
  }
  apply();
  return { zoomIn: () => zoom(2), zoomOut: () => zoom(0.5) };
}

function initRelabel(root) {
  const status = document.getElementById("face-status");
  const id = root.dataset.face;

  function say(text, kind) {
    status.textContent = text;
    status.className = `status ${kind}`;
  }

  async function send(changes) {
    say("Saving…", "ok");
    const data = await postJSON(root.dataset.changeUrl, {
      faces: [Number(id)],
      versions: { [id]: Number(root.dataset.version) },
      changes,
      flash: true,
    });
    if (data.ok) {
      // The page shows the new state and the new history line.
      window.location.reload();
    } else {
      say(data.error, "error");
    }
  }

  async function post(url, body) {
    say("Saving…", "ok");
    const data = await postJSON(url, { ...body, flash: true });
    if (data.ok) window.location.reload();
    else say(data.error, "error");
  }

  function notFace() {
    return post(root.dataset.notFaceUrl, { faces: [Number(id)], versions: { [id]: Number(root.dataset.version) } });
  }

  for (const button of root.querySelectorAll("[data-change]")) {
    button.addEventListener("click", () => send(JSON.parse(button.dataset.change)));
  }
  document.getElementById("not-a-face")?.addEventListener("click", notFace);
  const split = document.getElementById("set-split");
  if (split) split.addEventListener("click", () => send({ split: document.getElementById("face-split").value }));
  return {
    label: (name) => send({ label: name }),
    unsure: () => send({ is_unsure: root.dataset.unsure !== "1" }),
    exclude: () => send({ is_excluded: root.dataset.excluded !== "1" }),
    notFace,
    undo: () => post(root.dataset.undoUrl, {}),
  };
}

// The grid's keys, for this one face: the page's key map (labeling/keys.py, page "face") says
// which key does what, as the `?` overlay lists them.
function initKeys(root, actions, zoomer) {
  const block = document.getElementById("page-keys");
  if (!block) return;
  const map = JSON.parse(block.textContent);
  const byKey = Object.fromEntries(Object.entries(map.bindings || {}).map(([action, key]) => [key, action]));
  const classByKey = Object.fromEntries(Object.entries(map.classes || {}).map(([name, key]) => [key, name]));
  const follow = (id) => {
    const link = document.getElementById(id);
    if (link) window.location.href = link.href;
  };
  const run = {
    unsure: actions.unsure,
    exclude: actions.exclude,
    not_face: actions.notFace,
    undo: actions.undo,
    previous_face: () => follow("prev-face"),
    next_face: () => follow("next-face"),
    zoom_in: () => zoomer?.zoomIn(),
    zoom_out: () => zoomer?.zoomOut(),
    similar: () => (window.location.href = root.dataset.similarUrl),
  };
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target.closest("input, select, textarea")) return;
    if (document.querySelector(".keymap:not([hidden])")) return; // the `?` overlay is open
    const key = event.key === "=" ? "+" : event.key; // + without shift
    const name = classByKey[key.toLowerCase()];
    if (name !== undefined) {
      event.preventDefault();
      return actions.label(name);
    }
    const action = byKey[key];
    if (action && run[action]) {
      event.preventDefault();
      run[action]();
    }
  });
}

const zoomer = photo ? initZoom(photo) : null;
const page = document.getElementById("face-page");
if (page) initKeys(page, initRelabel(page), zoomer);
