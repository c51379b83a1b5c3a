// Small behaviours every page may use, bound from data attributes instead of inline handlers and
// style="" attributes (the Content-Security-Policy runs no inline script and applies no inline
// style; setting element.style from a script file is allowed):
//   data-width="42"          a progress bar's fill, in percent
//   data-autosubmit          a form control that submits its form when changed
//   data-select-on-focus     a field whose text is selected when focused (e.g. a new API token)

function applyWidths(root) {
  const scope = root && root.querySelectorAll ? root : document;
  const bars = Array.from(scope.querySelectorAll("[data-width]"));
  if (scope.matches && scope.matches("[data-width]")) bars.push(scope);
  for (const bar of bars) bar.style.width = (Number(bar.dataset.width) || 0) + "%";
}

document.addEventListener("change", (event) => {
  const control = event.target.closest && event.target.closest("[data-autosubmit]");
  if (control && control.form) control.form.submit();
});
document.addEventListener("focusin", (event) => {
  if (event.target.matches && event.target.matches("[data-select-on-focus]")) event.target.select();
});
// htmx swaps in new progress fragments: fill their bars too.
document.addEventListener("htmx:load", (event) => applyWidths(event.detail && event.detail.elt));
applyWidths(document);
