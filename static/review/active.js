// Moved out of templates/review/active.html so the page runs under a Content-Security-Policy without inline script.
import { initFaceGrid } from "../labeling/grid.js";
// The labeling grid's keys; `a` (and the tile's button) accepts the model's suggestion.
const root = document.getElementById("grid");
if (root) {
  const grid = initFaceGrid(root);
  window.faceGrid = grid;
  root.addEventListener("click", (event) => {
    const button = event.target.closest("[data-accept]");
    if (!button) return;
    event.stopPropagation();
    const tile = button.closest(".tile");
    grid.change([tile], { label: tile.dataset.suggested }, { advance: false });
  });
}
