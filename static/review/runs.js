// Moved out of templates/review/index.html so the page runs under a Content-Security-Policy without inline script.
// Queued and running runs refresh their row every two seconds; the page reloads when one ends.
(function () {
  const rows = Array.from(document.querySelectorAll(".run-row.live"));
  if (!rows.length) return;
  const timer = setInterval(async function () {
    for (const row of rows) {
      const response = await fetch(row.dataset.statusUrl, { credentials: "same-origin" });
      if (!response.ok) continue;
      const data = await response.json();
      const p = data.progress || {};
      row.querySelector(".run-status").textContent = data.status;
      row.querySelector(".run-progress").textContent = (p.stage || "") + (p.fold ? " · fold " + p.fold : "") +
        (p.stage === "descriptors" && p.total ? " · " + p.done + "/" + p.total + " descriptors" : "");
      if (data.finished) { clearInterval(timer); window.location.reload(); return; }
    }
  }, 2000);
})();
