// Node filters of the timelines: the buttons show only the chosen node's rows ("all" shows
// every row). Without JavaScript the filters stay hidden and every row shows.
"use strict";
document.querySelectorAll(".timeline").forEach(function (timeline) {
  var filters = timeline.querySelector(".filters");
  if (!filters) {
    return;
  }
  filters.hidden = false;
  filters.addEventListener("click", function (event) {
    var button = event.target.closest("button");
    if (!button) {
      return;
    }
    var node = button.dataset.node;
    filters.querySelectorAll("button").forEach(function (b) {
      b.classList.toggle("on", b === button);
    });
    timeline.querySelectorAll("tbody tr").forEach(function (row) {
      row.hidden = node !== "" && row.dataset.node !== node;
    });
  });
});

// A matrix cell links to its case run: open that section (it may be folded).
function openTarget() {
  var id = decodeURIComponent(location.hash.slice(1));
  var target = id && document.getElementById(id);
  var details = target && target.querySelector("details");
  if (details) {
    details.open = true;
  }
}
window.addEventListener("hashchange", openTarget);
openTarget();
