// Keyboard use and multi-select for the dashboard; everything also works without it.
(() => {
  "use strict";

  // Multi-select: the header checkbox selects every row; the batch bar counts them.
  function updateSelection(form) {
    const boxes = form.querySelectorAll("input[name=task_ids]");
    const chosen = [...boxes].filter((b) => b.checked).length;
    const counter = form.querySelector("[data-selected-count]");
    if (counter) counter.textContent = `${chosen} selected`;
    for (const button of form.querySelectorAll("[data-needs-selection]")) {
      button.disabled = chosen === 0;
    }
  }
  document.addEventListener("change", (event) => {
    const target = event.target;
    const form = target.closest && target.closest("form[data-batch]");
    if (!form) return;
    if (target.matches("[data-select-all]")) {
      for (const box of form.querySelectorAll("input[name=task_ids]")) box.checked = target.checked;
    }
    updateSelection(form);
  });
  document.addEventListener("DOMContentLoaded", () => {
    for (const form of document.querySelectorAll("form[data-batch]")) updateSelection(form);
  });
  document.addEventListener("htmx:afterSwap", () => {
    for (const form of document.querySelectorAll("form[data-batch]")) updateSelection(form);
    current = -1;
    // After a batch, keyboard and screen-reader users land on its results.
    const results = document.getElementById("batch-results");
    if (results) results.focus();
  });

  // Queue shortcuts: j/k move, x selects, Enter/o opens, a/r approve/reject the current row.
  let current = -1;
  function rows() {
    return [...document.querySelectorAll("[data-live-queue] tr[data-task-id]")];
  }
  function focusRow(index) {
    const all = rows();
    if (!all.length) return;
    current = Math.max(0, Math.min(index, all.length - 1));
    all.forEach((row, i) => row.classList.toggle("current", i === current));
    const link = all[current].querySelector("a");
    if (link) link.focus();
  }
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const tag = (event.target.tagName || "").toLowerCase();
    if (["input", "textarea", "select"].includes(tag)) return;
    const all = rows();
    if (!all.length) return;
    const row = all[current];
    switch (event.key) {
      case "j": focusRow(current + 1); break;
      case "k": focusRow(current - 1); break;
      case "x":
        if (row) {
          const box = row.querySelector("input[name=task_ids]");
          if (box) { box.checked = !box.checked; box.dispatchEvent(new Event("change", { bubbles: true })); }
        }
        break;
      case "o": if (row) row.querySelector("a").click(); break;
      case "a": case "r": {
        const button = row && row.querySelector(`[data-shortcut="${event.key}"]`);
        if (button) button.click();
        break;
      }
      default: return;
    }
    event.preventDefault();
  });
})();
