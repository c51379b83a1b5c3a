// The train form: when the architecture changes, show the CNN warning (too few faces) or why the
// architecture is unavailable, and dim the settings the chosen architecture does not use.
(function () {
  "use strict";
  const select = document.getElementById("id_architecture");
  const dataNode = document.getElementById("job-form-data");
  if (!select || !dataNode) return;
  const data = JSON.parse(dataNode.textContent);
  const warning = document.getElementById("cnn-warning");
  const unavailable = document.getElementById("unavailable-note");

  function update() {
    const chosen = select.value;
    if (warning) warning.hidden = !data.warn.includes(chosen);
    if (unavailable) {
      const why = data.unavailable[chosen] || "";
      unavailable.textContent = why;
      unavailable.hidden = !why;
    }
    document.querySelectorAll("#job-form [data-architectures]").forEach(function (input) {
      const row = input.closest("tr");
      if (row) row.classList.toggle("not-applicable", !input.dataset.architectures.split(" ").includes(chosen));
    });
  }

  select.addEventListener("change", update);
  update();
})();
