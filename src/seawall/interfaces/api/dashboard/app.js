// seawall's dashboard: one page over the JSON API, no libraries, no network but this server.
// Every value from the API reaches the page as text (textContent, SVG attributes), never as HTML.
"use strict";

const API = "/api/v1";
const TOKEN_KEY = "seawall-token";
const ROLES = { viewer: 1, auditor: 2, operator: 3, admin: 4 };
const SVG = "http://www.w3.org/2000/svg";
const state = { token: null, user: null, timers: [] };

// --- small helpers ------------------------------------------------------------------------

function $(id) { return document.getElementById(id); }

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function dur(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  if (seconds === 0) return "0s";
  if (seconds < 1) return `${Math.round(seconds * 1000)}ms`;
  const [size, unit] = seconds < 60 ? [1, "s"] : seconds < 3600 ? [60, "min"]
    : seconds < 172800 ? [3600, "h"] : [86400, "d"];
  const value = seconds / size;
  return `${Number.isInteger(value) || value >= 10 ? Math.round(value) : value.toFixed(1)}${unit}`;
}

function bytes(n) {
  if (n === null || n === undefined) return "-";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function when(iso) {
  if (!iso) return "-";
  const d = new Date(iso);
  if (isNaN(d)) return iso;
  const pad = (x) => String(x).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function replace(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
}

function pill(text, kind) { return el("span", { class: `pill ${kind || ""}` }, text); }

function banner(message, bad) {
  const node = $("banner");
  node.textContent = message;
  node.className = bad ? "bad" : "";
  node.hidden = false;
}

// --- the API ------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, options) {
  const init = Object.assign({ headers: {} }, options || {});
  init.headers.Authorization = `Bearer ${state.token}`;
  if (init.body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(init.body);
  }
  const response = await fetch(API + path, init);
  let doc = null;
  try { doc = await response.json(); } catch (err) { doc = null; }
  if (response.status === 401) { logout("Your token is no longer valid: log in again."); }
  if (!response.ok) throw new ApiError(response.status, (doc && doc.error) || response.statusText);
  return doc;
}

function can(role) { return state.user && ROLES[state.user.role] >= ROLES[role]; }

// --- log in and out -----------------------------------------------------------------------

async function login(token) {
  state.token = token;
  try {
    state.user = await api("/whoami");
  } catch (err) {
    state.token = null;
    $("login-error").textContent = err.status === 401 ? "That token is not valid." : err.message;
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  $("login").hidden = true;
  $("app").hidden = false;
  $("logout").hidden = false;
  $("who").textContent = `${state.user.name} (${state.user.role})`;
  $("login-error").textContent = "";
  start();
}

function logout(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = state.user = null;
  state.timers.forEach(clearInterval);
  state.timers = [];
  $("app").hidden = true;
  $("login").hidden = false;
  $("logout").hidden = true;
  $("who").textContent = "";
  $("login-error").textContent = message || "";
}

function every(seconds, refresh) {
  const run = () => refresh().catch((err) => {
    if (err.status !== 401) banner(`could not refresh: ${err.message}`, true);
  });
  run();
  state.timers.push(setInterval(run, seconds * 1000));
}

function start() {
  every(2, refreshOverview);
  every(1.5, refreshJobs);
  every(3, refreshAlerts);
  every(5, refreshCompliance);
  every(5, refreshAudit);
}

// --- actions ------------------------------------------------------------------------------

async function act(what, path, body) {
  try {
    const job = await api(path, { method: "POST", body });
    banner(`${what} started: job ${job.id}`);
    refreshJobs();
  } catch (err) {
    const denied = err.status === 403 ? "denied: " : "";
    banner(`${what}: ${denied}${err.message}`, true);
  }
}

// --- assets -------------------------------------------------------------------------------

function assetCard(a) {
  const never = a.age_s === null;
  const breached = a.rpo_target_s !== null && !a.within_rpo;
  const drillFailed = a.last_drill && a.last_drill.passed === false;
  const bad = breached || drillFailed || a.suspect || never;
  let status;
  if (never) status = pill("never backed up", "bad");
  else if (breached) status = pill("RPO breached", "bad");
  else if (a.rpo_target_s !== null) status = pill("within RPO", "ok");
  else status = pill("no RPO target", "");
  const drill = a.last_drill
    ? [pill(a.last_drill.passed ? "passed" : "failed", a.last_drill.passed ? "ok" : "bad"),
       ` ${when(a.last_drill.time)}, RTO ${dur(a.last_drill.rto_s)}`]
    : "never";
  const backup = a.last_backup
    ? `${when(a.last_backup.time)}, ${dur(a.last_backup.duration_s)}, ` +
      `${bytes(a.last_backup.data_added)} added of ${bytes(a.last_backup.bytes_total)}`
    : "-";
  const card = el("div", { class: `card asset ${bad ? "bad" : "ok"}`, "data-asset": a.name },
    el("div", { class: "head" },
      el("h3", {}, a.name, " ", el("span", { class: "muted" }, `(${a.kind})`)),
      el("span", {}, a.suspect ? pill("SUSPECT", "bad") : null, " ", status)),
    el("dl", {},
      el("dt", {}, "newest copy"), el("dd", {}, never ? "none" : `${dur(a.age_s)} old`),
      el("dt", {}, "RPO / RTO"), el("dd", {}, `${dur(a.rpo_target_s)} / ${dur(a.rto_target_s)}`),
      el("dt", {}, "last backup"), el("dd", {}, backup),
      el("dt", {}, "last drill"), el("dd", {}, drill)),
    a.problems.map((p) => el("p", { class: "problem" }, p)),
    a.suspect ? el("p", { class: "problem" }, `anomaly: ${a.anomaly.summary}`) : null,
    drillFailed && a.last_drill_why ? el("p", { class: "problem" }, `drill: ${a.last_drill_why}`) : null,
    el("div", { class: "actions" },
      button("Back up", "backup", () => act(`backup of ${a.name}`, "/backups", { assets: [a.name] })),
      button("Drill", "drill", () => act(`drill of ${a.name}`, "/drills", { assets: [a.name] })),
      button("Restore to sandbox", "restore",
        () => act(`restore of ${a.name}`, "/restores", { asset: a.name }))));
  return card;
}

function button(text, action, onclick) {
  const allowed = can("operator");
  const node = el("button", { type: "button", "data-action": action,
    class: allowed ? "" : "needs-role", title: allowed ? "" : "needs the operator role" }, text);
  node.addEventListener("click", onclick);
  return node;
}

async function refreshOverview() {
  const view = await api("/overview");
  const plan = $("plan");
  plan.textContent = view.plan_file.split("/").pop();
  plan.title = `${view.plan_file} \u2192 ${view.repository}`;
  $("updated").textContent = `updated ${when(view.time)}`;
  const overall = $("overall");
  overall.textContent = view.ok ? "all within targets" : "attention needed";
  overall.className = `pill ${view.ok ? "ok" : "bad"}`;
  replace($("asset-cards"), view.assets.map(assetCard));
  const failed = view.webhook_failures;
  replace($("webhook-failures"), failed.length ? el("p", { class: "problem" },
    `alerts could not be delivered: ${failed.map((f) => `${f.webhook} (${f.error})`).join(", ")}`) : null);
  replace($("snapshot-charts"), view.assets.map((a) => snapshotChart(a, view.timeline[a.name] || [])));
  replace($("drill-charts"), view.assets.map((a) => drillCharts(a, view.drills[a.name] || [])));
}

// --- charts -------------------------------------------------------------------------------

// points: [{t: Date, v: number, cls: "pt"|"pt-ok"|"pt-bad", label: string}], oldest first
function chart(title, points, { target = null, format = dur, height = 200 } = {}) {
  const width = 540, left = 64, right = 14, top = 28, bottom = 30;
  const w = width - left - right, h = height - top - bottom;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title });
  root.append(svg("text", { x: left, y: 16, class: "title" }, title));
  root.append(svg("rect", { x: left, y: top, width: w, height: h, class: "frame" }));
  if (!points.length) {
    root.append(svg("text", { x: left + 12, y: top + h / 2, class: "empty" }, "nothing yet"));
    return el("div", { class: "chart" }, root);
  }
  const values = points.map((p) => p.v).concat(target ? [target] : []);
  const max = Math.max(...values) * 1.15 || 1;
  const t0 = points[0].t.getTime(), t1 = points[points.length - 1].t.getTime();
  const x = (p, i) => left + (t1 > t0 ? ((p.t.getTime() - t0) / (t1 - t0)) * w
    : (points.length === 1 ? w / 2 : (i * w) / (points.length - 1)));
  const y = (v) => top + h - (v / max) * h;
  for (const f of [0, 0.5, 1]) {
    root.append(svg("line", { x1: left, x2: left + w, y1: y(max * f), y2: y(max * f), class: "grid" }));
    root.append(svg("text", { x: left - 6, y: y(max * f) + 4, "text-anchor": "end" }, format(max * f)));
  }
  if (target) {
    root.append(svg("line", { x1: left, x2: left + w, y1: y(target), y2: y(target), class: "target" }));
    root.append(svg("text", { x: left + w - 4, y: y(target) - 4, "text-anchor": "end", class: "target-label" },
      `target ${format(target)}`));
  }
  root.append(svg("polyline", { points: points.map((p, i) => `${x(p, i).toFixed(1)},${y(p.v).toFixed(1)}`).join(" "), class: "line" }));
  points.forEach((p, i) => {
    const dot = svg("circle", { cx: x(p, i).toFixed(1), cy: y(p.v).toFixed(1), r: 4, class: p.cls || "pt" });
    dot.append(svg("title", {}, `${when(p.t.toISOString())}: ${p.label || format(p.v)}`));
    root.append(dot);
  });
  const first = points[0], last = points[points.length - 1];
  root.append(svg("text", { x: left, y: height - 10 }, when(first.t.toISOString())));
  if (last !== first) root.append(svg("text", { x: left + w, y: height - 10, "text-anchor": "end" }, when(last.t.toISOString())));
  return el("div", { class: "chart" }, root);
}

function snapshotChart(asset, timeline) {
  const points = timeline.map((s) => ({
    t: new Date(s.time), v: s.bytes_total || 0, cls: s.suspect ? "pt-bad" : "pt",
    label: `${bytes(s.bytes_total)}, ${bytes(s.data_added)} added` +
      (s.suspect ? `, SUSPECT (score ${s.score})` : "") + (s.complete ? "" : ", incomplete group"),
  }));
  return chart(`${asset.name}: size at each backup (${points.length})`, points, { format: bytes });
}

function drillCharts(asset, drills) {
  if (!drills.length) {
    return el("p", { class: "muted", "data-asset": asset.name }, `${asset.name}: never drilled.`);
  }
  const pts = (key) => drills.filter((d) => d[key] !== null).map((d) => ({
    t: new Date(d.time), v: d[key], cls: d.passed ? "pt-ok" : "pt-bad",
    label: `${dur(d[key])}, ${d.passed ? "passed" : "failed"}${d.why ? ": " + d.why : ""}`,
  }));
  return el("div", { class: "pair" },
    chart(`${asset.name}: RTO of each drill`, pts("rto_s"), { target: asset.rto_target_s }),
    chart(`${asset.name}: RPO (age of the restored data)`, pts("rpo_s"), { target: asset.rpo_target_s }));
}

// --- jobs ---------------------------------------------------------------------------------

async function refreshJobs() {
  const jobs = await api("/jobs?limit=15");
  const running = jobs.filter((j) => j.state === "running" || j.state === "queued");
  replace($("job-running"), running.map((j) => {
    const p = j.progress;
    const share = p && p.bytes_total ? Math.min(1, p.bytes_done / p.bytes_total) : null;
    const bar = el("div", { class: `bar ${share === null ? "indeterminate" : ""}` }, el("div"));
    if (share !== null) bar.firstChild.style.width = `${(share * 100).toFixed(1)}%`;
    const text = p
      ? `${p.phase}: ${p.files_done} file${p.files_done === 1 ? "" : "s"}, ${bytes(p.bytes_done)}` +
        (share !== null ? ` (${(share * 100).toFixed(0)}%)` : "") + (p.eta_s ? `, ${dur(p.eta_s)} left` : "")
      : j.state;
    return el("div", { class: "progress", "data-job": j.id },
      el("div", {}, el("b", {}, `${j.kind} ${j.assets.join(", ") || "all"}`), ` (job ${j.id}): ${text}`), bar);
  }));
  replace($("job-table").tBodies[0], jobs.map((j) => {
    const took = j.started && j.finished ? (new Date(j.finished) - new Date(j.started)) / 1000 : null;
    const stateKind = { ok: "ok", failed: "bad", interrupted: "bad", cancelled: "warn" }[j.state] || "";
    const detail = j.error || (j.result && j.result.summary) || "";
    return el("tr", { "data-job": j.id },
      el("td", {}, el("code", {}, j.id)), el("td", {}, j.kind), el("td", {}, j.assets.join(", ") || "all"),
      el("td", {}, `${j.user} (${j.trigger})`), el("td", {}, when(j.started)), el("td", {}, dur(took)),
      el("td", {}, pill(j.state, stateKind)), el("td", {}, detail));
  }));
}

// --- alerts -------------------------------------------------------------------------------

async function refreshAlerts() {
  const alerts = await api("/alerts?limit=30");
  if (!alerts.length) {
    replace($("alert-list"), el("p", { class: "muted" }, "No alerts."));
    return;
  }
  replace($("alert-list"), alerts.map((a) => {
    const files = (a.details && a.details.files) || [];
    return el("div", { class: `card alert ${a.status}`, "data-alert": a.key },
      pill(a.status, a.status === "firing" ? "bad" : "ok"),
      el("div", {},
        el("div", {}, el("b", {}, a.kind.replace("_", " ")), ` ${a.summary}`),
        files.length ? el("div", { class: "files" },
          `files: ${files.slice(0, 12).map((f) => f.path).join(", ")}` +
          (files.length > 12 ? ` and ${files.length - 12} more` : "")) : null,
        el("div", { class: "muted" },
          `since ${when(a.started)}` + (a.resolved ? `, resolved ${when(a.resolved)}` : "") +
          (a.sends > 1 && a.status === "firing" ? `, sent ${a.sends} times` : ""))));
  }));
}

// --- compliance ---------------------------------------------------------------------------

async function refreshCompliance() {
  const report = await api("/compliance");
  replace($("compliance-table").tBodies[0], report.assets.map((a) => {
    const held = a.copies.filter((c) => c.snapshots || c.error);
    const drill = a.last_successful_drill;
    return el("tr", { "data-asset": a.name },
      el("td", {}, a.name),
      el("td", {}, held.map((c) => el("div", {}, `${c.repository} (${c.region || "no region"})`,
        c.error ? pill("unreachable", "bad") : `: ${c.snapshots} snapshot${c.snapshots === 1 ? "" : "s"}`))),
      el("td", {}, held.length ? held[0].encryption.split(",")[0] : "-"),
      el("td", {}, held.map((c) => el("div", {}, `${c.repository}: ` +
        (c.immutability ? (c.immutability.newest_until ? when(c.immutability.newest_until)
          : `${c.immutability.mode}, ${c.immutability.days} days`) : "not immutable")))),
      el("td", {}, a.residency || "none",
        held.every((c) => c.residency_ok) ? null : pill("broken", "bad")),
      el("td", {}, a.retention || "none"),
      el("td", {}, drill ? `${when(drill.time)} (RTO ${dur(drill.rto_s)})` : "never"),
      el("td", {}, a.findings.length ? el("ul", {}, a.findings.map((f) => el("li", {}, f))) : pill("none", "ok")));
  }));
}

// --- audit --------------------------------------------------------------------------------

async function refreshAudit() {
  if (!can("auditor")) {
    $("audit-denied").textContent = `Your role (${state.user.role}) may not read the audit log: ` +
      "auditors and admins may.";
    $("audit-denied").hidden = false;
    $("audit-table").hidden = true;
    return;
  }
  const [entries, check] = await Promise.all([api("/audit?limit=50"), api("/audit/verify")]);
  const verdict = $("audit-verdict");
  verdict.textContent = check.ok ? `chain intact: ${check.entries} entries` : "CHAIN BROKEN";
  verdict.className = `pill ${check.ok ? "ok" : "bad"}`;
  $("audit-denied").hidden = true;
  $("audit-table").hidden = false;
  replace($("audit-table").tBodies[0], entries.slice().reverse().map((e) => {
    const kind = { ok: "ok", denied: "bad", failed: "bad", partial: "warn" }[e.outcome] || "";
    return el("tr", {},
      el("td", {}, e.seq), el("td", {}, when(e.time)), el("td", {}, e.user),
      el("td", {}, e.via + (e.remote ? ` from ${e.remote}` : "")), el("td", {}, e.operation),
      el("td", {}, pill(e.outcome, kind)), el("td", {}, e.assets.join(", ")), el("td", {}, e.detail));
  }));
}

// --- start --------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    $("token").value = "";
    if (token) login(token);
  });
  $("logout").addEventListener("click", () => logout());
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) login(saved);
});
