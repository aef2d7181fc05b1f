/*
 * dashboard.js - the dashboard's script (GET /dashboard.js, embedded at build time). It
 * reads the same API as any client: /api/health, /api/jobs, /api/runs and /api/errors
 * every 2 s, and follows each running run's progress over /api/sync/events/ID (SSE).
 * Every value goes into the page as text (textContent), never as markup.
 * With http.token set the API answers 401: the page then asks for the token and POSTs it
 * to /api/session, whose answer sets an HttpOnly session cookie that every later request
 * and event stream carries (EventSource cannot send headers). The token is never kept by
 * the page nor put in a URL (docs/security.md).
 */
"use strict";
const $ = (id) => document.getElementById(id);
const live = new Map(); /* run id -> {es, run}: runs followed over SSE */
/* job -> its Sync now button: the same node across refreshes, so a click is never lost to
   a redraw */
const buttons = new Map();

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}
function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) tr.appendChild(c instanceof Node ? c : el("td", c));
  return tr;
}
function fill(id, rows, empty, ncols) {
  const body = $(id);
  body.replaceChildren(...rows);
  if (!rows.length) {
    const td = el("td", empty, "mute");
    td.colSpan = ncols;
    body.appendChild(row([td]));
  }
}
function ago(iso) {
  if (!iso) return "–";
  const s = (Date.parse(iso) - Date.now()) / 1000;
  const a = Math.abs(s), f = a < 90 ? Math.round(a) + " s" : a < 5400 ? Math.round(a / 60) + " min" : (a / 3600).toFixed(1) + " h";
  return s >= 0 ? "in " + f : f + " ago";
}
function dur(s) {
  if (s === null || s === undefined) return "–";
  return s < 90 ? s.toFixed(1) + " s" : s < 5400 ? (s / 60).toFixed(1) + " min" : (s / 3600).toFixed(1) + " h";
}
function mib(b) { return b ? (b / 1048576).toFixed(1) + " MiB" : "none"; }
function statusCell(s) { return el("td", s, "st " + s); }
/* The last verify pass (docs/verify.md): what it found (or left, after a repair). */
function verifyCell(v) {
  const p = v && v.lastPass;
  if (!p) return el("td", v ? "not yet" : "–", "mute");
  if (p.status !== "succeeded")
    return el("td", p.status + " " + ago(p.finishTime || p.startTime), p.status === "running" ? "running" : "mute");
  const found = p.stats.rowsFailed, fixed = p.stats.rowsWritten;
  const what = fixed ? fixed + " repaired, " + found + " left"
    : found + " difference" + (found === 1 ? "" : "s");
  return el("td", what + " " + ago(p.finishTime), found ? "failed" : "succeeded");
}
function progressCell(r) {
  const td = el("td");
  if (r.status === "running" && typeof r.progress === "number") {
    const p = el("progress");
    p.max = 100;
    p.value = r.progress;
    td.append(p, " " + r.progress.toFixed(0) + "%" + (r.stage ? " " + r.stage : ""));
  } else {
    td.textContent = r.stage || "";
  }
  return td;
}
/* Thrown by get() on a 401: the page needs a session. */
class NeedAuth extends Error {}
async function get(path) {
  const r = await fetch(path, {cache: "no-store", credentials: "same-origin"});
  if (r.status === 401) throw new NeedAuth(path);
  return r.json();
}
/* A JSON POST (the API refuses any other Content-Type): [status, answer]. */
async function post(path, body) {
  const r = await fetch(path, {method: "POST", credentials: "same-origin",
    headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
  let b = {};
  try { b = await r.json(); } catch (e) { /* no body */ }
  return [r, b];
}
function askToken(why) {
  $("login").hidden = false;
  document.body.dataset.auth = "needed";
  if (why) $("msg").textContent = why;
}
/* Trades the typed token for a session cookie; the field is emptied either way. */
async function signIn() {
  const tok = $("token").value.trim();
  $("token").value = "";
  if (!tok) return;
  try {
    const [r, b] = await post("/api/session", {token: tok});
    if (!r.ok) { askToken("sign in: " + r.status + " " + b.error + (b.detail ? " – " + b.detail : "")); return; }
    $("login").hidden = true;
    document.body.dataset.auth = b.write === false ? "read" : "ok";
    $("msg").textContent = b.write === false ? "signed in with the read token: Sync now is refused" : "";
    refresh();
  } catch (e) {
    askToken("sign in: " + e);
  }
}

function follow(id) {
  if (live.has(id) || !window.EventSource) return;
  const es = new EventSource("/api/sync/events/" + encodeURIComponent(id));
  const entry = {es, run: null};
  live.set(id, entry);
  const on = (ev) => {
    try { entry.run = JSON.parse(ev.data); entry.event = ev.type; drawRuns(); } catch (e) { /* ignore */ }
  };
  es.addEventListener("progress", on);
  es.addEventListener("done", (ev) => { on(ev); es.close(); });
  es.onerror = () => { es.close(); live.delete(id); };
}

let lastRuns = [];
function drawRuns() {
  const rows = lastRuns.map((stored) => {
    const l = live.get(stored.syncId);
    const r = l && l.run ? l.run : stored;
    const st = r.stats || {};
    const took = r.startTime ? ((r.finishTime ? Date.parse(r.finishTime) : Date.now()) - Date.parse(r.startTime)) / 1000 : null;
    const tr = row([el("td", r.syncId, "mute"), r.job, r.type, statusCell(r.status), progressCell(r),
      (st.rowsRead || 0) + " / " + (st.rowsWritten || 0) + " / " + (st.rowsFailed || 0),
      ago(r.startTime), dur(took), el("td", r.error || "", "wrap")]);
    tr.dataset.run = r.syncId;
    if (l && l.run) tr.dataset.live = l.event; /* shown from the event stream */
    return tr;
  });
  fill("runs", rows, "no runs yet", 9);
}

async function syncNow(job, btn) {
  btn.disabled = true;
  try {
    const [r, b] = await post("/api/sync", {job});
    if (r.status === 401) askToken();
    if (r.ok) {
      $("msg").textContent = job + ": run " + b.syncId + " " + (b.coalesced ? "already queued" : "queued");
      follow(b.syncId);
    } else {
      $("msg").textContent = job + ": " + r.status + " " + b.error + (b.detail ? " – " + b.detail : "");
    }
  } catch (e) {
    $("msg").textContent = job + ": " + e;
  }
  btn.disabled = false;
  refresh();
}

async function refresh() {
  try {
    const [h, j, runs, errs] = await Promise.all([get("/api/health"), get("/api/jobs"),
      get("/api/runs?limit=20"), get("/api/errors").catch(() => ({errors: []}))]);
    $("offline").style.display = "none";
    $("status").textContent = h.status;
    $("status").className = "st " + h.status;
    $("instance").textContent = h.instance + " (pid " + h.pid + ")";
    $("uptime").textContent = dur(h.uptimeSeconds);
    $("memory").textContent = mib(h.memory && h.memory.rssBytes) + " of " + mib(h.memory && h.memory.limitBytes);
    $("restarts").textContent = h.restarts;
    fill("checks", (h.checks || []).map((c) => row([c.name, statusCell(c.status),
      el("td", c.detail || "", "wrap"), el("td", c.recommendation || "", "wrap")])), "no checks", 4);
    fill("jobs", (j.jobs || []).map((job) => {
      let btn = buttons.get(job.name);
      if (!btn) {
        btn = el("button", "Sync now");
        btn.dataset.job = job.name;
        btn.addEventListener("click", () => syncNow(job.name, btn));
        buttons.set(job.name, btn);
      }
      const last = job.lastRun;
      const now = job.running ? "running" + (job.currentRun ? "" : "") : job.paused ? "paused" : "idle";
      if (job.running && job.currentRun) follow(job.currentRun);
      const tr = row([el("td", job.name, "st"), job.kind + (job.mode ? " / " + job.mode : ""),
        job.schedule || (job.mode === "realtime" ? "streaming" : "on demand"), ago(job.nextRun),
        el("td", now, job.running ? "running" : "mute"),
        last ? el("td", last.status + " " + ago(last.finishTime || last.startTime), last.status) : el("td", "never", "mute"),
        verifyCell(job.verify), (job.holder || "–") + (job.epoch ? " (epoch " + job.epoch + ")" : ""), el("td")]);
      tr.lastChild.appendChild(btn);
      tr.dataset.job = job.name;
      return tr;
    }), "no jobs configured", 9);
    lastRuns = runs.runs || [];
    for (const r of lastRuns) if (r.status === "running" || r.status === "queued") follow(r.syncId);
    drawRuns();
    fill("errors", (errs.errors || []).map((e) => row([e.id, e.job, el("td", e.key, "wrap"), e.op, e.sqlstate || "",
      el("td", e.message || "", "wrap"), e.attempts, ago(e.created)])), "none", 8);
    document.body.dataset.loaded = String(Date.now());
  } catch (e) {
    if (e instanceof NeedAuth) askToken($("login").hidden ? "the API needs its token (http.token): sign in" : null);
    else $("offline").style.display = "inline";
  }
}
$("signin").addEventListener("click", signIn);
$("token").addEventListener("keydown", (ev) => { if (ev.key === "Enter") signIn(); });
refresh();
setInterval(refresh, 2000);
