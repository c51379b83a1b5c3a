// Upload with a progress bar and a drop zone. A large selection is sent in several requests
// (PART_FILES files, and under the server's per-request byte limit, each); the server only
// stores them and, after the last part, imports them in the background, so the report page
// it leads to fills up live. Without JavaScript the form still posts everything at once.
(function () {
  const form = document.getElementById("upload-form");
  if (!form) return;
  const PART_FILES = 100;
  const input = form.querySelector("input[type=file]");
  const zone = document.getElementById("drop-zone");
  const bar = document.getElementById("upload-progress");
  const label = document.getElementById("upload-label");
  const button = form.querySelector("button[type=submit]");
  // Room for the multipart framing of each file inside the per-request limit.
  const maxRequestBytes = Number(form.dataset.maxRequestBytes || 0) * 0.95;
  const maxFiles = Math.min(PART_FILES, Number(form.dataset.maxFiles || PART_FILES));
  const maxFileBytes = Number(form.dataset.maxFileBytes || 0);
  const csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;

  function megabytes(bytes) {
    return `${(bytes / 1048576).toFixed(1)} MB`;
  }

  function describe(files) {
    const total = Array.from(files).reduce((sum, f) => sum + f.size, 0);
    label.textContent = files.length ? `${files.length} file(s), ${megabytes(total)} selected` : "";
  }
  input.addEventListener("change", () => describe(input.files));
  ["dragenter", "dragover"].forEach((name) => zone.addEventListener(name, (event) => {
    event.preventDefault();
    zone.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((name) => zone.addEventListener(name, () => zone.classList.remove("over")));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    input.files = event.dataTransfer.files;
    describe(input.files);
  });

  // Groups of files, each small enough for one request.
  function parts(files) {
    const out = [];
    let current = [];
    let bytes = 0;
    for (const file of files) {
      if (current.length && (current.length >= maxFiles || (maxRequestBytes && bytes + file.size > maxRequestBytes))) {
        out.push(current);
        current = [];
        bytes = 0;
      }
      current.push(file);
      bytes += file.size;
    }
    if (current.length) out.push(current);
    return out;
  }

  function send(url, files, more, onProgress) {
    return new Promise((resolve, reject) => {
      const data = new FormData();
      data.append("csrfmiddlewaretoken", csrf);
      data.append("more", more ? "1" : "0");
      files.forEach((file) => data.append("files", file));
      const request = new XMLHttpRequest();
      request.open("POST", url);
      request.setRequestHeader("Accept", "application/json");
      request.upload.addEventListener("progress", (e) => onProgress(e.loaded));
      request.addEventListener("load", () => {
        let body = null;
        try {
          body = JSON.parse(request.responseText);
        } catch (err) {
          body = null;
        }
        if (request.status >= 200 && request.status < 300 && body) resolve(body);
        else reject(new Error((body && body.error && body.error.message) || `The server answered ${request.status}.`));
      });
      request.addEventListener("error", () => reject(new Error("network error")));
      request.send(data);
    });
  }

  form.addEventListener("submit", async (event) => {
    if (!input.files.length) return; // let the server explain what is missing
    event.preventDefault();
    const files = Array.from(input.files);
    const tooBig = files.find((f) => (maxFileBytes && f.size > maxFileBytes) || (maxRequestBytes && f.size > maxRequestBytes));
    if (tooBig) {
      label.textContent = `“${tooBig.name}” is ${megabytes(tooBig.size)}, more than one upload may carry; nothing was sent. Import it as a server folder instead.`;
      return;
    }
    const groups = parts(files);
    const total = files.reduce((sum, f) => sum + f.size, 0) || 1;
    let sent = 0;
    let url = form.action || window.location.href;
    let answer = null;
    bar.hidden = false;
    button.disabled = true;
    try {
      for (let i = 0; i < groups.length; i += 1) {
        const groupBytes = groups[i].reduce((sum, f) => sum + f.size, 0);
        answer = await send(url, groups[i], i < groups.length - 1, (loaded) => {
          const percent = Math.min(100, Math.round((100 * (sent + Math.min(loaded, groupBytes))) / total));
          bar.firstElementChild.style.width = `${percent}%`;
          label.textContent = `Uploading… ${percent}% (part ${i + 1} of ${groups.length})`;
        });
        sent += groupBytes;
        url = answer.append_url;
      }
    } catch (err) {
      button.disabled = false;
      label.textContent = answer
        ? `The upload stopped after ${answer.received} files (${err.message}); those are imported shortly. Send the rest again.`
        : `The upload failed (${err.message}). Nothing was imported; try again.`;
      if (answer) window.setTimeout(() => { window.location.href = answer.report_url; }, 4000);
      return;
    }
    window.location.href = answer.report_url; // the import report, which follows the import live
  });
})();
