// The identities pages: the merge and split buttons say how many clusters or faces are ticked
// and stay disabled until the action makes sense (two clusters to merge, one face to split off).
"use strict";

(function () {
  function wire(formId, boxClass, buttonId, countId, minimum, words) {
    const form = document.getElementById(formId);
    const button = document.getElementById(buttonId);
    const count = document.getElementById(countId);
    if (!form || !button || !count) return;
    function update() {
      const n = form.querySelectorAll("input." + boxClass + ":checked").length;
      button.disabled = n < minimum;
      count.textContent = n ? words(n) : count.dataset.empty;
    }
    count.dataset.empty = count.textContent;
    form.addEventListener("change", update);
    update();
  }
  document.addEventListener("DOMContentLoaded", function () {
    wire("merge-form", "cluster-pick", "merge-clusters", "merge-count", 2, function (n) {
      return n + (n === 1 ? " cluster ticked: tick one more." : " clusters ticked.");
    });
    wire("split-form", "face-pick", "split-cluster", "split-count", 1, function (n) {
      return n + (n === 1 ? " face ticked." : " faces ticked.");
    });
  });
})();
