// Upload with a progress bar and a drop zone. Without JavaScript the form still posts normally.
(function () {
  const form = document.getElementById("upload-form");
  if (!form) return;
  const input = form.querySelector("input[type=file]");
  const zone = document.getElementById("drop-zone");
  const bar = document.getElementById("upload-progress");
  const label = document.getElementById("upload-label");

  function describe(files) {
    const total = Array.from(files).reduce((sum, f) => sum + f.size, 0);
    label.textContent = files.length ? `${files.length} file(s), ${(total / 1048576).toFixed(1)} MB selected` : "";
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

  form.addEventListener("submit", (event) => {
    if (!input.files.length) return; // let the server explain what is missing
    event.preventDefault();
    const request = new XMLHttpRequest();
    request.open("POST", form.action || window.location.href);
    bar.hidden = false;
    request.upload.addEventListener("progress", (e) => {
      if (!e.lengthComputable) return;
      const percent = Math.round((100 * e.loaded) / e.total);
      bar.firstElementChild.style.width = `${percent}%`;
      label.textContent = percent < 100 ? `Uploading… ${percent}%` : "Checking and storing the photos…";
    });
    request.addEventListener("load", () => {
      if (request.responseURL && request.responseURL !== window.location.href) {
        window.location.href = request.responseURL; // the import report
      } else {
        document.open();
        document.write(request.responseText); // the form again, with its errors
        document.close();
      }
    });
    request.addEventListener("error", () => {
      label.textContent = "The upload failed (network error). Nothing was imported; try again.";
    });
    request.send(new FormData(form));
  });
})();
