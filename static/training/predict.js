// The predict page: sends photos (chosen, dropped, or camera frames) to POST /api/v1/predict with
// the session, draws each face's box, label and probability over the photo and lists the faces.
// Live mode keeps two frames in flight so the server's latency and the network overlap.
(function () {
  "use strict";
  const root = document.getElementById("predict");
  if (!root) return;
  const apiUrl = root.dataset.apiUrl;
  const addUrl = root.dataset.addUrl;
  const maxBytes = parseInt(root.dataset.maxBytes, 10);
  const select = document.getElementById("model-version");
  const results = document.getElementById("results");
  const template = document.getElementById("result-template");
  const errorBox = document.getElementById("predict-error");
  const headers = JSON.parse(document.body.getAttribute("hx-headers") || "{}");
  const csrf = headers["X-CSRFToken"] || "";

  function selectedOption() { return select.options[select.selectedIndex]; }
  // A class's colour is its position in the DATASET's class list (curator/colours.py), as on
  // every other page; a label outside it gets the "other" grey (c9).
  function classIndex(label) {
    const classes = (selectedOption().dataset.classes || "").split(",");
    const i = classes.indexOf(label);
    return i < 0 ? 9 : i % 8;
  }
  function pct(x) { return (100 * x).toFixed(1) + "%"; }

  async function predict(blob) {
    const form = new FormData();
    form.append("image", blob, blob.name || "frame.jpg");
    form.append("model_version", select.value);
    const response = await fetch(apiUrl, {
      method: "POST", body: form, credentials: "same-origin", headers: { "X-CSRFToken": csrf },
    });
    let data = null;
    try { data = await response.json(); } catch (e) { data = { error: { message: "The server answered " + response.status + "." } }; }
    // Every API error is {"error": {"code", "message", "fields"}}.
    if (!response.ok) throw new Error((data.error && data.error.message) || ("HTTP " + response.status));
    return data;
  }

  // Boxes are positioned in percent of the photo, so they follow the image at any display size.
  function drawBoxes(overlay, data) {
    overlay.replaceChildren();
    const w = data.image.width, h = data.image.height;
    data.faces.forEach(function (face) {
      const b = face.box;
      const div = document.createElement("div");
      div.className = "pbox c" + classIndex(face.label) + (b.top < 0.08 * h ? " below" : "");
      div.style.left = (100 * b.left / w) + "%";
      div.style.top = (100 * b.top / h) + "%";
      div.style.width = (100 * (b.right - b.left) / w) + "%";
      div.style.height = (100 * (b.bottom - b.top) / h) + "%";
      div.dataset.label = face.label;
      const tag = document.createElement("span");
      tag.className = "plabel";
      tag.textContent = "#" + face.index + " " + face.label + " " + pct(face.confidence);
      div.appendChild(tag);
      overlay.appendChild(div);
    });
  }

  function fillTable(tbody, data) {
    tbody.replaceChildren();
    data.faces.forEach(function (face) {
      const tr = document.createElement("tr");
      const probs = Object.entries(face.probabilities).map(function (e) {
        // The bar's width is set below through element.style (the CSP refuses style="" in markup).
        return '<div><span class="probbar" data-px="' + Math.round(60 * e[1]) + '"></span>' +
          escapeHtml(e[0]) + " " + pct(e[1]) + "</div>";
      }).join("");
      const b = face.box;
      tr.innerHTML = "<td>" + face.index + '</td><td><span class="badge c' + classIndex(face.label) + '">' +
        escapeHtml(face.label) + "</span></td><td>" + pct(face.confidence) + "</td><td>" + probs + "</td><td>" +
        b.left + ", " + b.top + " – " + b.right + ", " + b.bottom + "</td>";
      tr.querySelectorAll(".probbar[data-px]").forEach(function (bar) { bar.style.width = bar.dataset.px + "px"; });
      tbody.appendChild(tr);
    });
    if (!data.faces.length) {
      const tr = document.createElement("tr");
      tr.innerHTML = '<td colspan="5" class="muted">No face found in this photo.</td>';
      tbody.appendChild(tr);
    }
  }

  function escapeHtml(text) {
    return String(text).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }

  async function handleFile(file) {
    const node = template.content.firstElementChild.cloneNode(true);
    node.querySelector(".name").textContent = file.name || "camera frame";
    const img = node.querySelector(".photo");
    img.src = URL.createObjectURL(file);
    results.prepend(node);
    const summary = node.querySelector(".summary");
    if (file.size > maxBytes) {
      node.querySelector(".result-error").textContent = "This file is larger than the server accepts (" + maxBytes + " bytes).";
      return;
    }
    summary.textContent = "predicting…";
    try {
      const data = await predict(file);
      node.dataset.faces = String(data.faces.length);
      node.classList.add("done");
      summary.textContent = data.faces.length + (data.faces.length === 1 ? " face" : " faces") + " · model v" +
        data.model_version.number + " · " + Math.round(data.timings_ms.total) + " ms on the server";
      drawBoxes(node.querySelector(".overlay"), data);
      fillTable(node.querySelector("tbody"), data);
      if (data.faces.length) showSimilar(node, file, selectedOption());
      const add = node.querySelector(".add-button");
      if (selectedOption().dataset.canAdd === "1") {
        add.hidden = false;
        const version = select.value;
        add.addEventListener("click", function () { addToDataset(node, file, version, add); });
      }
    } catch (err) {
      summary.textContent = "";
      node.classList.add("failed");
      node.querySelector(".result-error").textContent = err.message;
    }
  }

  // "Who in the dataset looks like this": the dataset's faces nearest to each face of the photo,
  // by the same descriptor as the dataset's faces (POST /api/v1/datasets/<id>/similar-photo/).
  async function showSimilar(node, file, option) {
    const box = node.querySelector(".similar");
    if (!box || !option.dataset.similarUrl) return;
    box.hidden = false;
    const status = box.querySelector(".similar-status");
    status.textContent = "searching the dataset…";
    const form = new FormData();
    form.append("image", file, file.name || "frame.jpg");
    const response = await fetch(option.dataset.similarUrl, { method: "POST", body: form, credentials: "same-origin", headers: { "X-CSRFToken": csrf } });
    const data = await response.json().catch(function () { return { error: { message: "The server answered " + response.status + "." } }; });
    if (!response.ok) {
      status.textContent = (data.error && data.error.message) || "The search failed.";
      return;
    }
    status.textContent = "";
    const list = box.querySelector(".similar-faces");
    data.faces.forEach(function (face) {
      const row = document.createElement("div");
      row.className = "similar-row";
      row.dataset.face = String(face.index);
      row.innerHTML = "<b>face " + (face.index + 1) + "</b>" + (face.similar.length ? "" : ' <span class="muted">no descriptors in this dataset yet</span>');
      face.similar.forEach(function (s) {
        const a = document.createElement("a");
        a.className = "similar-face";
        a.dataset.id = String(s.id);
        a.href = option.dataset.gridUrl + "?sort=distance&similar_to=" + s.id;
        a.title = "face " + s.id + " · " + (s.label || "unlabelled") + " · " + s.file;
        a.innerHTML = '<img width="72" height="72" alt=""><span class="distance"></span>';
        a.querySelector("img").src = s.crop_url;
        a.querySelector(".distance").textContent = s.distance.toFixed(3);
        row.appendChild(a);
      });
      list.appendChild(row);
    });
  }

  async function addToDataset(node, file, version, button) {
    button.disabled = true;
    const status = node.querySelector(".add-status");
    status.textContent = "adding…";
    const form = new FormData();
    form.append("image", file, file.name || "frame.jpg");
    form.append("model_version", version);
    const response = await fetch(addUrl, { method: "POST", body: form, credentials: "same-origin", headers: { "X-CSRFToken": csrf } });
    const data = await response.json().catch(function () { return { error: { message: "The server answered " + response.status + "." } }; });
    if (response.ok) {
      status.innerHTML = escapeHtml(data.message) + ' <a href="' + data.dataset_url + '">Open the dataset</a>';
    } else {
      status.textContent = (data.error && data.error.message) || "Not added.";
      button.disabled = false;
    }
  }

  function handleFiles(files) {
    errorBox.textContent = "";
    Array.from(files).forEach(function (file) {
      if (file.type && !file.type.startsWith("image/")) {
        errorBox.textContent = file.name + " is not an image; skipped.";
        return;
      }
      handleFile(file);
    });
  }

  const input = document.getElementById("file-input");
  input.addEventListener("change", function () { handleFiles(input.files); input.value = ""; });
  const zone = document.getElementById("dropzone");
  ["dragenter", "dragover"].forEach(function (name) {
    zone.addEventListener(name, function (e) { e.preventDefault(); zone.classList.add("over"); });
  });
  ["dragleave", "drop"].forEach(function (name) {
    zone.addEventListener(name, function (e) { e.preventDefault(); zone.classList.remove("over"); });
  });
  zone.addEventListener("drop", function (e) { handleFiles(e.dataTransfer.files); });

  // --- Camera and live mode --------------------------------------------------------------------
  const video = document.getElementById("camera-video");
  const liveView = document.getElementById("live-view");
  const liveOverlay = document.getElementById("live-overlay");
  const liveBox = document.getElementById("camera-live");
  const snap = document.getElementById("camera-snap");
  const stats = document.getElementById("live-stats");
  const canvas = document.createElement("canvas");
  let stream = null, live = false, inFlight = 0, done = [];

  document.getElementById("camera-start").addEventListener("click", async function () {
    if (stream) return;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
    } catch (err) {
      errorBox.textContent = "The camera is not available: " + err.message;
      return;
    }
    video.srcObject = stream;
    liveView.hidden = false;
    snap.disabled = false;
    liveBox.disabled = false;
  });

  function frameBlob(quality) {
    const scale = Math.min(1, 640 / (video.videoWidth || 640));
    canvas.width = Math.round((video.videoWidth || 640) * scale);
    canvas.height = Math.round((video.videoHeight || 480) * scale);
    canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
    return new Promise(function (resolve) { canvas.toBlob(resolve, "image/jpeg", quality); });
  }

  snap.addEventListener("click", async function () {
    const blob = await frameBlob(0.92);
    blob.name = "camera-" + new Date().toISOString().replace(/[:.]/g, "-") + ".jpg";
    handleFile(new File([blob], blob.name, { type: "image/jpeg" }));
  });

  async function liveLoop() {
    while (live && inFlight < 2) {
      inFlight += 1;
      frameBlob(0.8).then(predict).then(function (data) {
        if (!live) return; // an answer that arrives after live mode was switched off
        drawBoxes(liveOverlay, data);
        const now = performance.now();
        done.push(now);
        done = done.filter(function (t) { return now - t < 2000; });
        stats.textContent = (done.length / 2).toFixed(1) + " frames/s · " + data.faces.length + " face(s) · " +
          Math.round(data.timings_ms.total) + " ms on the server";
      }).catch(function (err) {
        stats.textContent = err.message;
      }).finally(function () {
        inFlight -= 1;
        if (live) setTimeout(liveLoop, 0);
      });
    }
  }

  liveBox.addEventListener("change", function () {
    live = liveBox.checked;
    done = [];
    if (live) liveLoop(); else { liveOverlay.replaceChildren(); stats.textContent = ""; }
  });
})();
