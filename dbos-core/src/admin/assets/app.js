// The dbos-rs dashboard: plain JavaScript over the admin API of the server that serves it.
// Views are chosen by the URL's hash: #/ (workflows), #/workflow/<id>, #/queues, #/schedules.
"use strict";

const PAGE_SIZE = 50;
const REFRESH_MS = 3000;
const $ = (id) => document.getElementById(id);

// ---- HTTP ----------------------------------------------------------------------------

function token() { return sessionStorage.getItem("dbos-admin-token") || ""; }

async function api(method, path, body) {
  const headers = { "content-type": "application/json" };
  if (token()) headers["authorization"] = "Bearer " + token();
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await resp.text();
  let data = null;
  if (text) { try { data = JSON.parse(text); } catch (_) { data = text; } }
  if (resp.status === 401) { askToken(data && data.error); }
  if (!resp.ok) {
    const message = (data && data.error) || (resp.status + " " + resp.statusText);
    throw new Error(message);
  }
  return data;
}

function askToken(why) {
  const dialog = $("token-dialog");
  if (dialog.open) return;
  if (why) $("token-text").textContent = why;
  $("token-input").value = token();
  dialog.showModal();
}

$("token-dialog").addEventListener("close", () => {
  if ($("token-dialog").returnValue === "save") {
    sessionStorage.setItem("dbos-admin-token", $("token-input").value);
    route();
  }
});
$("token-button").addEventListener("click", () => askToken());

function notice(message) { $("notice").textContent = message || ""; }

// ---- Formatting ------------------------------------------------------------------------

function ms(text) { return text === null || text === undefined ? null : Number(text); }

function when(epochMs) {
  if (epochMs === null || Number.isNaN(epochMs)) return "";
  return new Date(epochMs).toISOString().replace("T", " ").replace("Z", "");
}

function duration(fromMs, toMs) {
  if (fromMs === null || toMs === null) return "";
  const d = Math.max(0, toMs - fromMs);
  if (d < 1000) return d + " ms";
  if (d < 60000) return (d / 1000).toFixed(1) + " s";
  if (d < 3600000) return (d / 60000).toFixed(1) + " min";
  return (d / 3600000).toFixed(1) + " h";
}

function pretty(text) {
  if (text === null || text === undefined) return "";
  if (typeof text !== "string") return JSON.stringify(text, null, 2);
  try { return JSON.stringify(JSON.parse(text), null, 2); } catch (_) { return text; }
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function badge(status) { return el("span", { class: "badge " + status, text: status }); }
function workflowLink(id) { return el("a", { href: "#/workflow/" + encodeURIComponent(id) }, el("code", { text: id })); }

function finishedAt(w) {
  const done = ms(w.CompletedAt);
  if (done !== null) return done;
  return ["PENDING", "ENQUEUED", "DELAYED"].includes(w.Status) ? Date.now() : ms(w.UpdatedAt);
}

// ---- Confirmation ------------------------------------------------------------------------

function confirmAction(text) {
  return new Promise((resolve) => {
    const dialog = $("confirm");
    $("confirm-text").textContent = text;
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true });
    dialog.returnValue = "";
    dialog.showModal();
  });
}

// ---- Workflows list ----------------------------------------------------------------------

const list = { cursors: [null], page: 0, timer: null, lastRows: [] };

function filterBody() {
  const body = { sort_desc: true, limit: PAGE_SIZE + 1 };
  const status = $("f-status").value;
  if (status) body.status = status;
  const name = $("f-name").value.trim();
  if (name) body.workflow_name = name;
  const queue = $("f-queue").value.trim();
  if (queue) body.queue_name = queue;
  const prefix = $("f-prefix").value.trim();
  if (prefix) body.workflow_id_prefix = prefix;
  const after = $("f-after").value;
  if (after) body.start_time = new Date(after).getTime();
  const before = $("f-before").value;
  if (before) body.end_time = new Date(before).getTime();
  const cursor = list.cursors[list.page];
  if (cursor) body.page_after = cursor;
  return body;
}

async function loadList() {
  let rows;
  try {
    rows = await api("POST", "/workflows", filterBody());
  } catch (e) { notice("Could not list workflows: " + e.message); return; }
  notice("");
  const more = rows.length > PAGE_SIZE;
  rows = rows.slice(0, PAGE_SIZE);
  list.lastRows = rows;
  const tbody = $("workflows").querySelector("tbody");
  tbody.replaceChildren(...rows.map((w) => {
    const created = ms(w.CreatedAt);
    return el("tr", { "data-id": w.WorkflowUUID },
      el("td", { class: "status", "data-label": "Status" }, badge(w.Status)),
      el("td", { class: "name", "data-label": "Name", text: w.WorkflowName || "" }),
      el("td", { class: "id", "data-label": "ID" }, workflowLink(w.WorkflowUUID)),
      el("td", { class: "queue", "data-label": "Queue", text: w.QueueName || "" }),
      el("td", { class: "created", "data-label": "Created", text: when(created) }),
      el("td", { class: "duration num", "data-label": "Duration", text: duration(created, finishedAt(w)) }),
      el("td", { class: "attempts num", "data-label": "Attempts", text: w.RecoveryAttempts || "0" }));
  }));
  $("list-empty").hidden = rows.length > 0;
  $("page-newer").disabled = list.page === 0;
  $("page-older").disabled = !more;
  $("page-label").textContent = "Page " + (list.page + 1);
}

function restartList() { list.cursors = [null]; list.page = 0; loadList(); }

$("filters").addEventListener("submit", (e) => { e.preventDefault(); restartList(); });
$("filters").addEventListener("reset", () => setTimeout(restartList, 0));
$("f-status").addEventListener("change", restartList);
$("page-older").addEventListener("click", () => {
  const last = list.lastRows[list.lastRows.length - 1];
  if (!last) return;
  list.cursors[list.page + 1] = { created_at: Number(last.CreatedAt), workflow_id: last.WorkflowUUID };
  list.page += 1;
  loadList();
});
$("page-newer").addEventListener("click", () => { if (list.page > 0) { list.page -= 1; loadList(); } });

// ---- One workflow --------------------------------------------------------------------------

const view = { id: null, workflow: null, steps: [], timer: null, selected: null };

function fact(dl, label, value) {
  if (value === null || value === undefined || value === "") return;
  dl.append(el("dt", { text: label }), el("dd", {}, value));
}

async function loadWorkflow(id) {
  let w, steps, children, forks, exchanges;
  try {
    [w, steps, children, forks, exchanges] = await Promise.all([
      api("GET", "/workflows/" + encodeURIComponent(id)),
      api("GET", "/workflows/" + encodeURIComponent(id) + "/steps"),
      api("POST", "/workflows", { parent_workflow_id: id, limit: 200 }),
      api("POST", "/workflows", { forked_from: id, limit: 200 }),
      api("GET", "/api/workflows/" + encodeURIComponent(id) + "/exchanges"),
    ]);
  } catch (e) { notice("Could not read workflow " + id + ": " + e.message); return; }
  if (view.id !== id) return;
  notice("");
  view.workflow = w;
  view.steps = steps;
  $("wf-id").textContent = id;
  const dl = $("wf-header");
  dl.replaceChildren();
  const created = ms(w.CreatedAt);
  fact(dl, "Status", el("span", { id: "wf-status" }, badge(w.Status)));
  fact(dl, "Name", w.WorkflowName);
  fact(dl, "Queue", w.QueueName);
  fact(dl, "Created", when(created));
  fact(dl, "Duration", duration(created, finishedAt(w)));
  fact(dl, "Recovery attempts", el("span", { id: "wf-attempts", title: "How many times an execution of this workflow started: 1 when it never had to be recovered", text: w.RecoveryAttempts }));
  fact(dl, "Executor", w.ExecutorID);
  fact(dl, "Application version", w.ApplicationVersion);
  if (w.ParentWorkflowID) fact(dl, "Parent", workflowLink(w.ParentWorkflowID));
  if (w.ForkedFrom) fact(dl, "Forked from", el("span", { id: "wf-forked-from" }, workflowLink(w.ForkedFrom)));
  fact(dl, "Deduplication id", w.DeduplicationID);
  fact(dl, "Timeout", w.WorkflowTimeoutMS ? w.WorkflowTimeoutMS + " ms" : null);
  $("wf-input").textContent = pretty(w.Input);
  if (w.Error !== null && w.Error !== undefined) {
    $("wf-outcome-title").textContent = "Error";
    $("wf-outcome").textContent = w.Error;
  } else {
    $("wf-outcome-title").textContent = "Output";
    $("wf-outcome").textContent = pretty(w.Output);
  }
  const active = ["PENDING", "ENQUEUED", "DELAYED"].includes(w.Status);
  $("action-cancel").disabled = !active;
  $("action-resume").disabled = ["SUCCESS", "ERROR"].includes(w.Status);
  const fork = $("fork-step");
  const chosen = fork.value;
  const options = [];
  for (let n = 1; n <= steps.length + 1; n++) {
    const s = steps.find((x) => x.function_id === n);
    options.push(el("option", { value: String(n), text: n + (s ? " " + s.function_name : "") }));
  }
  fork.replaceChildren(...options);
  if (chosen && Number(chosen) <= steps.length + 1) fork.value = chosen;
  renderTimeline(w, steps);
  renderLinks($("wf-children"), children, "No child workflows.");
  renderLinks($("wf-forks"), forks, "No forks.");
  renderExchanges(exchanges);
}

function renderTimeline(w, steps) {
  const box = $("timeline");
  if (steps.length === 0) { box.replaceChildren(el("p", { class: "empty", text: "No step recorded yet." })); return; }
  const now = Date.now();
  // The axis spans the steps, from the first one's start to the last one's end.
  const starts = steps.map((s) => ms(s.started_at_epoch_ms)).filter((x) => x !== null);
  const t0 = starts.length ? Math.min(...starts) : ms(w.CreatedAt);
  const ends = steps.map((s) => ms(s.completed_at_epoch_ms) ?? now);
  const t1 = Math.max(t0 + 1, ...ends);
  const span = t1 - t0;
  box.replaceChildren(...steps.map((s) => {
    const start = ms(s.started_at_epoch_ms) ?? t0;
    const end = ms(s.completed_at_epoch_ms) ?? now;
    const outcome = s.error !== null ? "error" : (s.completed_at_epoch_ms === null ? "running" : (s.child_workflow_id ? "child" : "ok"));
    const label = "Step " + s.function_id + " " + s.function_name + ": " + outcome + ", " + duration(start, end);
    const bar = el("button", {
      type: "button", class: "bar " + outcome, "data-step": String(s.function_id), "data-ms": String(Math.max(0, end - start)),
      "aria-label": label, title: label,
      style: "left:" + ((start - t0) / span * 100).toFixed(3) + "%;width:" + Math.max((end - start) / span * 100, 0.5).toFixed(3) + "%",
    });
    bar.addEventListener("click", () => showStep(s));
    return el("div", { class: "row" },
      el("span", { class: "label", text: s.function_id + " " + s.function_name }),
      el("div", { class: "track" }, bar));
  }));
  if (view.selected !== null) {
    const again = steps.find((s) => s.function_id === view.selected);
    if (again) showStep(again);
  }
}

function showStep(s) {
  view.selected = s.function_id;
  for (const b of document.querySelectorAll(".timeline .bar")) b.classList.toggle("selected", b.dataset.step === String(s.function_id));
  $("step-detail").hidden = false;
  $("step-detail-title").textContent = "Step " + s.function_id + " " + s.function_name + (s.error !== null ? " (error)" : "");
  const parts = [];
  if (s.error !== null) parts.push(s.error); else parts.push(pretty(s.output));
  if (s.child_workflow_id) parts.push("child workflow: " + s.child_workflow_id);
  $("step-detail-body").textContent = parts.join("\n");
  const start = ms(s.started_at_epoch_ms), end = ms(s.completed_at_epoch_ms);
  $("step-detail-note").textContent = (start !== null && end !== null ? "From its first attempt's start to its end: " + duration(start, end) + ". " : "") +
    (s.error !== null ? "This is the error of its last attempt. " : "") +
    "A step's attempts are not recorded one by one: a retried step shows its outcome, over the time all its attempts and the waits between them took.";
}

function renderLinks(ul, rows, empty) {
  if (rows.length === 0) { ul.replaceChildren(el("li", { text: empty })); return; }
  ul.replaceChildren(...rows.map((w) => el("li", {}, workflowLink(w.WorkflowUUID), " ", badge(w.Status), " " + (w.WorkflowName || ""))));
}

function cells(tbody, rows, empty, columns) {
  if (rows.length === 0) { tbody.replaceChildren(el("tr", {}, el("td", { colspan: String(columns), text: empty }))); return; }
  tbody.replaceChildren(...rows);
}

function renderExchanges(x) {
  const history = {};
  for (const h of x.events_history) (history[h.key] = history[h.key] || []).push(h.function_id + ": " + JSON.stringify(h.value));
  cells($("wf-events").querySelector("tbody"), x.events.map((e) =>
    el("tr", {}, el("td", {}, el("code", { text: e.key })), el("td", {}, el("code", { text: JSON.stringify(e.value) })),
      el("td", { text: (history[e.key] || []).join("; ") }))), "No events.", 3);
  cells($("wf-messages").querySelector("tbody"), x.messages.map((m) =>
    el("tr", {}, el("td", { text: m.topic ?? "(none)" }), el("td", { text: when(m.sent_at_epoch_ms) }),
      el("td", { text: m.consumed ? "yes" + (m.consumed_by_function_id ? " (step " + m.consumed_by_function_id + ")" : "") : "no" }),
      el("td", {}, el("code", { text: JSON.stringify(m.value) })))), "No messages.", 4);
  cells($("wf-streams").querySelector("tbody"), x.streams.map((s) =>
    el("tr", {}, el("td", {}, el("code", { text: s.key })), el("td", { class: "num", text: s.offset }),
      el("td", { class: "num", text: s.function_id }), el("td", {}, el("code", { text: JSON.stringify(s.value) })))), "No stream entries.", 4);
}

// Asks `question`; when confirmed, runs `run` and shows its result in `out` (a workflow it
// started as a link with id `linkId`), then calls `reload`.
async function confirmAndRun(what, question, run, out, linkId, reload) {
  if (!(await confirmAction(question))) return;
  out.textContent = what + "…";
  try {
    const answer = await run();
    if (answer && answer.workflow_id) {
      out.replaceChildren(what + " done: new workflow ", workflowLink(answer.workflow_id));
      out.querySelector("a").id = linkId;
    } else {
      out.textContent = what + " done.";
    }
  } catch (e) { out.textContent = what + " failed: " + e.message; }
  reload();
}

function act(what, question, run) {
  return confirmAndRun(what, question, run, $("action-result"), "action-new-workflow",
    () => { if (view.id) loadWorkflow(view.id); });
}

const idPath = () => "/workflows/" + encodeURIComponent(view.id);
$("action-cancel").addEventListener("click", () =>
  act("Cancel", "Cancel workflow " + view.id + "? It starts no further step.", () => api("POST", idPath() + "/cancel")));
$("action-resume").addEventListener("click", () =>
  act("Resume", "Resume workflow " + view.id + " from its last checkpoint?", () => api("POST", idPath() + "/resume")));
$("action-restart").addEventListener("click", () =>
  act("Restart", "Run workflow " + view.id + " again from the start, under a new id?", () => api("POST", idPath() + "/restart")));
$("action-fork").addEventListener("click", () => {
  const step = Number($("fork-step").value || "1");
  act("Fork", "Fork workflow " + view.id + " from step " + step + " under a new id? Steps before it are copied.",
    () => api("POST", idPath() + "/fork", { start_step: step }));
});

// ---- Queues ----------------------------------------------------------------------------------

async function loadQueues() {
  let queues;
  try { queues = await api("GET", "/api/queues"); } catch (e) { notice("Could not list queues: " + e.message); return; }
  notice("");
  const limit = (v) => (v === null || v === undefined ? "none" : String(v));
  $("queues").querySelector("tbody").replaceChildren(...queues.map((q) => el("tr", { "data-queue": q.name },
    el("td", { "data-label": "Queue" }, el("code", { text: q.name })),
    el("td", { class: "num", "data-label": "Concurrency", text: limit(q.concurrency) }),
    el("td", { class: "num", "data-label": "Per worker", text: limit(q.worker_concurrency) }),
    el("td", { "data-label": "Rate limit", text: q.rate_limit_max ? q.rate_limit_max + " per " + q.rate_limit_period_sec + " s" : "none" }),
    el("td", { "data-label": "Partitioned", text: q.partition_queue ? "yes" : "no" }),
    el("td", { class: "num enqueued", "data-label": "Enqueued", text: q.enqueued }),
    el("td", { class: "num pending", "data-label": "Pending", text: q.pending }),
    el("td", { class: "num delayed", "data-label": "Delayed", text: q.delayed }),
    el("td", { class: "throughput", "data-label": "Completed / min" }, throughputChart(q)),
    el("td", { class: "oldest", "data-label": "Oldest waiting" }, q.oldest_waiting
      ? el("span", {}, workflowLink(q.oldest_waiting.workflow_id), " since " + when(q.oldest_waiting.created_at))
      : "none"))));
}

const SVG = "http://www.w3.org/2000/svg";

// Completed workflows per minute as a small bar chart (inline SVG), oldest minute first.
function throughputChart(q) {
  const minutes = q.throughput || [];
  const total = minutes.reduce((n, m) => n + m.completed, 0);
  const top = Math.max(1, ...minutes.map((m) => m.completed));
  const w = 8, gap = 2, h = 32;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "chart");
  svg.setAttribute("width", String(minutes.length * (w + gap)));
  svg.setAttribute("height", String(h));
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", q.name + ": " + total + " completed in the last " + minutes.length + " minutes, at most " + top + " a minute");
  svg.dataset.total = String(total);
  minutes.forEach((m, i) => {
    const bar = document.createElementNS(SVG, "rect");
    const bh = m.completed === 0 ? 1 : Math.max(2, Math.round((m.completed / top) * (h - 2)));
    bar.setAttribute("x", String(i * (w + gap)));
    bar.setAttribute("y", String(h - bh));
    bar.setAttribute("width", String(w));
    bar.setAttribute("height", String(bh));
    bar.setAttribute("class", m.completed === 0 ? "idle" : "busy");
    bar.dataset.minute = String(m.minute);
    bar.dataset.completed = String(m.completed);
    const title = document.createElementNS(SVG, "title");
    title.textContent = when(m.minute).slice(11, 16) + " UTC: " + m.completed + " completed";
    bar.append(title);
    svg.append(bar);
  });
  return el("span", { class: "chart-wrap" }, svg, el("span", { class: "chart-total", text: String(total) }));
}

// ---- Schedules -------------------------------------------------------------------------------

function isoWhen(text) { return text ? when(new Date(text).getTime()) + " UTC" : ""; }

async function loadSchedules() {
  let schedules;
  try { schedules = await api("GET", "/api/schedules"); } catch (e) { notice("Could not list schedules: " + e.message); return; }
  notice("");
  $("schedules").querySelector("tbody").replaceChildren(...schedules.map((s) => {
    const paused = s.status === "PAUSED";
    const toggle = el("button", { type: "button", class: paused ? "resume" : "pause",
      "aria-label": (paused ? "Resume" : "Pause") + " schedule " + s.schedule_name, text: paused ? "Resume" : "Pause" });
    toggle.addEventListener("click", () => scheduleAction(paused ? "Resume" : "Pause",
      (paused ? "Resume" : "Pause") + " schedule " + s.schedule_name + "?" + (paused ? "" : " No executor fires it until it is resumed."),
      "/api/schedules/" + encodeURIComponent(s.schedule_name) + (paused ? "/resume" : "/pause")));
    const trigger = el("button", { type: "button", class: "trigger", "aria-label": "Trigger schedule " + s.schedule_name, text: "Trigger" });
    trigger.addEventListener("click", () => scheduleAction("Trigger",
      "Run " + s.workflow_name + " now for schedule " + s.schedule_name + "?",
      "/api/schedules/" + encodeURIComponent(s.schedule_name) + "/trigger"));
    const ticks = s.cron_error ? el("span", { class: "cron-error", text: s.cron_error })
      : el("ol", { class: "ticks", "aria-label": "Next ticks of " + s.schedule_name }, ...s.next_ticks.map((t) => el("li", { text: isoWhen(t) })));
    return el("tr", { "data-schedule": s.schedule_name },
      el("td", { class: "name", "data-label": "Schedule" }, el("code", { text: s.schedule_name })),
      el("td", { class: "workflow", "data-label": "Workflow", text: s.workflow_name }),
      el("td", { class: "cron", "data-label": "Cron" }, el("code", { text: s.schedule }), s.cron_timezone ? " (" + s.cron_timezone + ")" : ""),
      el("td", { class: "status", "data-label": "Status" }, badge(s.status)),
      el("td", { class: "next", "data-label": paused ? "Next ticks (when resumed)" : "Next ticks" }, ticks),
      el("td", { class: "last-fired", "data-label": "Last fired", text: s.last_fired_at ? isoWhen(s.last_fired_at) : "never" }),
      el("td", { class: "schedule-actions", "data-label": "Actions" }, el("span", {}, toggle, trigger)));
  }));
  $("schedules-empty").hidden = schedules.length > 0;
}

function scheduleAction(what, question, path) {
  return confirmAndRun(what, question, () => api("POST", path), $("schedule-result"), "schedule-new-workflow", loadSchedules);
}

// ---- Routing and refresh ---------------------------------------------------------------------

function stopTimers() {
  for (const t of [list.timer, view.timer]) if (t) clearInterval(t);
  list.timer = view.timer = null;
}

function show(section) {
  for (const s of ["view-list", "view-workflow", "view-queues", "view-schedules"]) $(s).hidden = s !== section;
}

function route() {
  stopTimers();
  const hash = location.hash || "#/";
  if (hash.startsWith("#/workflow/")) {
    const id = decodeURIComponent(hash.slice("#/workflow/".length));
    if (view.id !== id) { view.selected = null; $("step-detail").hidden = true; $("action-result").textContent = ""; }
    view.id = id;
    show("view-workflow");
    loadWorkflow(id);
    view.timer = setInterval(() => { if ($("live").checked) loadWorkflow(id); }, REFRESH_MS);
  } else if (hash === "#/queues") {
    view.id = null;
    show("view-queues");
    loadQueues();
    view.timer = setInterval(() => { if ($("live").checked) loadQueues(); }, REFRESH_MS);
  } else if (hash === "#/schedules") {
    view.id = null;
    show("view-schedules");
    $("schedule-result").textContent = "";
    loadSchedules();
    view.timer = setInterval(() => { if ($("live").checked) loadSchedules(); }, REFRESH_MS);
  } else {
    view.id = null;
    show("view-list");
    loadList();
    list.timer = setInterval(() => { if ($("live").checked) loadList(); }, REFRESH_MS);
  }
}

window.addEventListener("hashchange", route);
route();
