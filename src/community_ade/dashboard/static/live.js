// The live feed: one WebSocket to /api/v1/ws (authenticated by the session cookie),
// resumed with ?since=<last seq> after a drop, applying events to the page in place.
(() => {
  "use strict";
  const body = document.body;
  const status = document.getElementById("live-status");
  const topics = body.dataset.liveTopics || "task,approval";
  let lastSeq = null;
  const TOASTED = new Set([
    "approval:decision", "approval:approved", "approval:rejected", "approval:expired",
    "approval:escalated", "approval:re_review",
    "task:completed", "task:failed", "lock:force_released",
  ]);
  let delay = 500; // reconnect backoff, doubled up to 15 s, reset once connected

  function setStatus(text, online) {
    if (!status) return;
    status.textContent = text;
    status.classList.toggle("online", online);
  }

  function toast(text) {
    const box = document.getElementById("toasts");
    if (!box || !text) return;
    const item = document.createElement("div");
    item.className = "toast";
    item.setAttribute("role", "status");
    item.textContent = text;
    box.appendChild(item);
    setTimeout(() => item.remove(), 6000);
  }

  function taskIdOf(event) {
    const subject = event.subject || "";
    return subject.startsWith("task:") ? subject.slice(5) : null;
  }

  function setState(taskId, state) {
    for (const el of document.querySelectorAll(`[data-task-id="${taskId}"] [data-live="state"]`)) {
      el.textContent = state;
      el.className = `badge state-${state.toLowerCase()}`;
    }
  }

  async function fetchText(url) {
    const response = await fetch(url, { credentials: "same-origin" });
    return response.ok && response.status !== 204 ? response.text() : null;
  }

  // A task entering review appears at the end of the review queue (if this page has one).
  async function insertQueueRow(taskId) {
    const table = document.querySelector("[data-live-queue]");
    if (!table || document.querySelector(`tr[data-task-id="${taskId}"]`)) return;
    const html = await fetchText(`/queue/row/${taskId}${location.search}`);
    if (!html) return;
    table.insertAdjacentHTML("beforeend", html);
    const empty = document.querySelector("[data-live-queue-empty]");
    if (empty) empty.hidden = true;
  }

  // On a task's page, the sections that change with it (requirements, execution,
  // history, reviews) are re-rendered from the server; the decision form is left alone.
  async function refreshSections(taskId) {
    const detail = document.querySelector(`[data-task-detail][data-task-id="${taskId}"]`);
    if (!detail) return;
    const html = await fetchText(location.pathname);
    if (!html) return;
    const fresh = new DOMParser().parseFromString(html, "text/html");
    for (const section of detail.querySelectorAll("[data-live-section]")) {
      const replacement = fresh.getElementById(section.id);
      if (replacement) section.replaceWith(replacement);
    }
  }

  async function apply(event) {
    const taskId = taskIdOf(event);
    if (taskId && event.data && event.data.to) setState(taskId, event.data.to);
    if (taskId) refreshSections(taskId);
    if (taskId && event.type === "approval:requested") insertQueueRow(taskId);
    if (TOASTED.has(event.type)) {
      const params = new URLSearchParams({
        type: event.type,
        actor: (event.actor && event.actor.id) || "",
        subject: event.subject || "",
        decision: (event.data && event.data.decision) || "",
      });
      toast(await fetchText(`/live/describe?${params}`));
    }
    document.dispatchEvent(new CustomEvent("ade:event", { detail: event }));
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const since = lastSeq === null ? "" : `&since=${lastSeq}`;
    const socket = new WebSocket(`${scheme}://${location.host}/api/v1/ws?topics=${topics}${since}`);
    socket.onmessage = (message) => {
      const frame = JSON.parse(message.data);
      if (frame.kind === "hello") {
        if (lastSeq === null) lastSeq = frame.seq;
        delay = 500;
        setStatus("live", true);
      } else if (frame.kind === "event") {
        lastSeq = Math.max(lastSeq || 0, frame.event.seq);
        apply(frame.event);
      } else if (frame.kind === "gap") {
        toast("Some live updates were missed: reload the page to catch up.");
      }
    };
    socket.onclose = (closing) => {
      setStatus("offline", false);
      if (closing.code === 4401) return; // the session ended: the next click logs in again
      if (closing.code === 1012) {
        // Redis lost the stream and seqs restarted: our seq means nothing any more.
        lastSeq = null;
        toast("Live updates restarted: reload the page to catch up.");
      }
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 15000);
    };
  }

  if ("WebSocket" in window) connect();
})();
