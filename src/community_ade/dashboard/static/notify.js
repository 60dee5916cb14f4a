// "Waiting on me": the number of tasks waiting on the visitor in the page title, e.g.
// "(3) Review queue · Community ADE", kept current from the live events (live.js), and a
// browser notification when a new task waits on them (if they allowed it, with a click:
// browsers only ask for the permission on a user gesture, and if their preferences keep
// the dashboard channel on).
(() => {
  "use strict";
  const PREFIX = /^\(\d+\+?\) /;
  const baseTitle = document.title.replace(PREFIX, "");
  const REQUESTS = new Set(["approval:requested", "approval:reminder", "approval:escalated"]);
  const notified = new Set();
  const allow = document.getElementById("allow-notifications");
  let timer = null;

  function showTitle(state) {
    const count = state.more ? `${state.count}+` : `${state.count}`;
    document.title = state.count > 0 || state.more ? `(${count}) ${baseTitle}` : baseTitle;
  }

  function notify(taskId, state) {
    if (!state.task_waits || !state.notify || notified.has(taskId)) return;
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    notified.add(taskId);
    const note = new Notification("A task waits on your review", {
      body: state.task_title || "",
      tag: `ade-task-${taskId}`,
    });
    note.onclick = () => {
      window.focus();
      location.href = `/approvals/${taskId}`;
    };
  }

  async function refresh(taskId) {
    const query = taskId ? `?task=${encodeURIComponent(taskId)}` : "";
    const response = await fetch(`/live/waiting${query}`, { credentials: "same-origin" });
    if (!response.ok) return;
    const state = await response.json();
    showTitle(state);
    if (taskId) notify(taskId, state);
  }

  // Decisions and state changes move the count; a burst of them costs one request.
  function refreshSoon() {
    clearTimeout(timer);
    timer = setTimeout(() => refresh(null), 300);
  }

  document.addEventListener("ade:event", (e) => {
    const event = e.detail || {};
    const subject = event.subject || "";
    const taskId = subject.startsWith("task:") ? subject.slice(5) : null;
    if (taskId && REQUESTS.has(event.type)) refresh(taskId);
    else if (/^(approval|task):/.test(event.type || "")) refreshSoon();
  });

  if (allow && "Notification" in window && Notification.permission === "default") {
    allow.hidden = false;
    allow.addEventListener("click", async () => {
      await Notification.requestPermission();
      allow.hidden = Notification.permission === "default";
    });
  }
  refresh(null);
})();
