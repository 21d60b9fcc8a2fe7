// pgrepl's dashboard: one page fed by Server-Sent Events from the agent
// (/ui/events). No library and nothing fetched from elsewhere: the charts
// are hand-drawn SVG. State lives in `view`; every frame redraws from it.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const HOUR = 3600;
const MARKED = new Set(["switchover", "failover", "primary", "rejoin", "reclone", "restart", "pause", "resume"]);

const view = {
  settings: {},
  snapshot: null,
  samples: [], // oldest first, by seq
  events: [], // oldest first, by id
  memory: null,
};

// ---- the feed --------------------------------------------------------

function connect() {
  // EventSource reconnects by itself after a drop, sending the last id it
  // saw, so the agent sends only the samples this page missed.
  const src = new EventSource("events");
  src.addEventListener("init", (e) => {
    const d = JSON.parse(e.data);
    view.settings = d.settings || {};
    mergeSamples(d.samples || []);
    view.events = d.events || []; // the agent's whole list: it replaces ours
    if (d.snapshot) view.snapshot = d.snapshot;
    view.memory = d.memory;
    link("live");
    render();
  });
  src.addEventListener("update", (e) => {
    const d = JSON.parse(e.data);
    view.snapshot = d.snapshot;
    if (d.sample) mergeSamples([d.sample]);
    for (const ev of d.events || []) {
      if (!view.events.some((x) => x.id === ev.id)) view.events.push(ev);
    }
    view.memory = d.memory;
    link("live");
    render();
  });
  src.onerror = () => {
    link("lost");
    // EventSource retries a dropped stream by itself, but gives up for
    // good on an answer that is not a stream (a 503 when the agent has
    // too many pages open, say): then start over a little later.
    if (src.readyState === EventSource.CLOSED) setTimeout(connect, 2000);
  };
}

function mergeSamples(list) {
  const seen = new Set(view.samples.map((s) => s.seq));
  for (const s of list) if (!seen.has(s.seq)) view.samples.push(s);
  view.samples.sort((a, b) => a.seq - b.seq);
  const from = Date.now() / 1000 - HOUR;
  while (view.samples.length && view.samples[0].t < from) view.samples.shift();
}

function link(state) {
  const el = document.getElementById("link");
  el.className = "link " + state;
  el.textContent = state === "live" ? "live" : "reconnecting…";
  el.dataset.state = state;
}

// ---- helpers ---------------------------------------------------------

function el(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
}

function bytes(n) {
  if (n === null || n === undefined) return "?";
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  let v = Math.abs(n);
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return (n < 0 ? "-" : "") + (i === 0 ? v.toFixed(0) : v.toFixed(v < 10 ? 1 : 0)) + " " + units[i];
}

function seconds(s) {
  if (s === null || s === undefined) return "?";
  return s < 10 ? s.toFixed(2) + " s" : s < 600 ? s.toFixed(0) + " s" : (s / 60).toFixed(0) + " min";
}

function clock(t) {
  return new Date(t * 1000).toLocaleTimeString([], { hour12: false });
}

function size(svg) {
  const r = svg.getBoundingClientRect();
  return { w: Math.max(r.width, 300), h: Math.max(r.height, 120) };
}

// ---- node states -----------------------------------------------------

function stateOf(n, snap) {
  if ((snap.needs_reclone || []).includes(n.name)) return "needs-reclone";
  if ((snap.fenced || []).includes(n.name)) return "fenced";
  if (n.state === "stopped" || n.state === "unreachable") return "stopped";
  if (n.state === "unresponsive") return "unresponsive";
  const h = ((snap.health || {}).nodes || []).find((x) => x.node === n.name);
  return h ? h.level : "healthy";
}

// ---- render ----------------------------------------------------------

function render() {
  const snap = view.snapshot;
  const s = view.settings;
  document.getElementById("cluster").textContent = s.cluster || (snap && snap.cluster) || "pgrepl";
  document.title = (s.cluster || "pgrepl") + " · pgrepl";
  if (!snap) return;
  const level = document.getElementById("level");
  level.textContent = ({ healthy: "OK", warning: "WARNING", critical: "CRITICAL" })[snap.health.level] || snap.health.level;
  level.className = "badge " + snap.health.level;
  level.dataset.level = snap.health.level;
  document.getElementById("primary-line").textContent = "primary " + snap.primary + (snap.ha ? " · " + snap.ha : "");
  document.getElementById("updated").textContent = "as of " + clock(snap.taken_unix);
  banners(snap);
  topology(snap);
  events();
  lagCharts();
  walRate();
  slots(snap);
  actions(snap);
  const m = view.memory;
  document.getElementById("footer").textContent =
    "pgrepl " + (s.version || "") + " · monitor every " + (s.interval_seconds || "?") + " s" +
    (m ? " · history " + m.samples + "/" + m.sample_capacity + " samples, " + bytes(m.history_bytes) + " in the agent" : "");
}

function banners(snap) {
  const list = [];
  const age = Date.now() / 1000 - snap.taken_unix;
  if (snap.paused) list.push(["warning", "paused", "Automatic failover is paused: " + snap.paused]);
  const d = snap.durability;
  if (d && d.state === "degraded") list.push(["warning", "degraded", "Durability degraded: " + (d.why || d.state)]);
  if (d && d.state === "blocked") list.push(["critical", "blocked", "Commits are blocked: " + (d.why || "no synchronous standby")]);
  const pending = snap.nodes.filter((n) => n.pending_restart && n.pending_restart.length);
  if (pending.length) {
    list.push(["warning", "pending-restart", "Pending restart: " + pending.map((n) => n.name + " (" + n.pending_restart.join(", ") + ")").join("; ") + " — run pgrepl restart NODE"]);
  }
  if (snap.state_error) list.push(["critical", "record", (view.settings.across_hosts ? "etcd unreachable: " : "The cluster's record cannot be read: ") + snap.state_error]);
  if ((snap.silent_agents || []).length) list.push(["critical", "silent", "No agent publishes for " + snap.silent_agents.join(", ") + ": nothing restarts or fails them over"]);
  if ((snap.needs_reclone || []).length) list.push(["critical", "needs-reclone", "Needs reclone: " + snap.needs_reclone.join(", ") + " — run pgrepl reclone NODE"]);
  if (view.settings.interval_seconds && age > Math.max(3 * view.settings.interval_seconds, 5)) {
    list.push(["critical", "stale", "No snapshot for " + age.toFixed(0) + " s: the agent's monitor is stuck or this page lost its feed"]);
  }
  const box = document.getElementById("banners");
  box.replaceChildren(...list.map(([cls, key, text]) => {
    const div = document.createElement("div");
    div.className = "banner " + cls;
    div.dataset.banner = key;
    div.textContent = text;
    return div;
  }));
}

function topology(snap) {
  const svg = document.getElementById("topology");
  clear(svg);
  const { w, h } = size(svg);
  const byName = new Map(snap.nodes.map((n) => [n.name, n]));
  // Rows by depth: the primary on top, each replica one row below its upstream.
  const upstreamOf = (n) => (n.name === snap.primary ? null : n.upstream && byName.has(n.upstream) ? n.upstream : snap.primary);
  const depth = (n, seen = new Set()) => {
    const u = upstreamOf(n);
    if (!u || seen.has(n.name)) return 0;
    seen.add(n.name);
    return 1 + depth(byName.get(u), seen);
  };
  const rows = [];
  for (const n of snap.nodes) (rows[depth(n)] = rows[depth(n)] || []).push(n);
  const bw = 170, bh = 64;
  const rowGap = Math.max((h - rows.length * bh) / (rows.length + 1), 30);
  const pos = new Map();
  rows.forEach((row, r) => row.forEach((n, i) => {
    pos.set(n.name, { x: (w * (i + 1)) / (row.length + 1) - bw / 2, y: rowGap + r * (bh + rowGap) });
  }));
  svg.setAttribute("viewBox", "0 0 " + w + " " + Math.max(h, rowGap + rows.length * (bh + rowGap)));
  for (const n of snap.nodes) {
    const u = upstreamOf(n);
    if (!u) continue;
    const a = pos.get(u), b = pos.get(n.name);
    const r = n.replication;
    const streaming = !!r && r.state === "streaming";
    const g = el("g", { class: "edge " + (streaming ? "streaming" : "down"), "data-from": u, "data-to": n.name });
    g.appendChild(el("line", { x1: a.x + bw / 2, y1: a.y + bh, x2: b.x + bw / 2, y2: b.y, "marker-end": "url(#arrow)" }));
    const label = streaming
      ? (r.sync_state === "sync" || r.sync_state === "quorum" ? "sync" : "async") + " · " + bytes(r.lag_bytes.replay) + " · " + seconds(r.lag_seconds.replay)
      : "not streaming";
    const lx = (a.x + b.x + bw) / 2, ly = (a.y + bh + b.y) / 2;
    g.appendChild(el("text", { x: lx + 6, y: ly, class: "bg" }, label));
    g.appendChild(el("text", { x: lx + 6, y: ly }, label));
    svg.appendChild(g);
  }
  const defs = el("defs");
  const marker = el("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto" });
  marker.appendChild(el("path", { d: "M0,0 L10,5 L0,10 z", fill: "#4b5563" }));
  defs.appendChild(marker);
  svg.appendChild(defs);
  for (const n of snap.nodes) {
    const p = pos.get(n.name);
    const state = stateOf(n, snap);
    const role = n.role || "unknown";
    const g = el("g", { class: "node " + state + (n.name === snap.primary ? " primary" : ""), "data-node": n.name, "data-role": role, "data-state": state });
    const why = (((snap.health || {}).nodes || []).find((x) => x.node === n.name) || {}).reasons || [];
    g.appendChild(el("title", {}, n.name + ": " + [n.state].concat(why, n.error ? [n.error] : []).join("; ")));
    g.appendChild(el("rect", { x: p.x, y: p.y, width: bw, height: bh, rx: 8 }));
    g.appendChild(el("text", { x: p.x + 10, y: p.y + 20, class: "name" }, n.name));
    g.appendChild(el("text", { x: p.x + 10, y: p.y + 38 }, role + " · " + state.replace("-", " ")));
    g.appendChild(el("text", { x: p.x + 10, y: p.y + 55, class: "sub" }, n.host + ":" + n.port + (n.timeline ? " · TL " + n.timeline : "")));
    svg.appendChild(g);
  }
}

function events() {
  const list = document.getElementById("events");
  // Newest first by time: a move's record event can arrive a snapshot
  // after the new primary was seen.
  const shown = view.events.slice().sort((a, b) => b.at - a.at || b.id - a.id).slice(0, 100);
  list.replaceChildren(...shown.map((e) => {
    const li = document.createElement("li");
    li.dataset.kind = e.kind;
    li.dataset.node = e.node;
    li.dataset.at = e.at;
    const t = document.createElement("time");
    t.textContent = clock(e.at);
    t.title = new Date(e.at * 1000).toISOString();
    const k = document.createElement("span");
    k.className = "kind " + e.kind;
    k.textContent = e.kind.replace("_", " ");
    li.append(t, k, document.createTextNode((e.node !== "-" ? e.node + ": " : "") + e.message));
    return li;
  }));
}

// A line chart over the last hour (or the samples there are): `series` is
// [{name, points: [[t, v], ...]}], `bands` [{from, to, cls}] in y units.
function chart(id, series, opts) {
  const svg = document.getElementById(id);
  clear(svg);
  const { w, h } = size(svg);
  svg.setAttribute("viewBox", "0 0 " + w + " " + h);
  const pad = { l: 62, r: 10, t: 8, b: 20 };
  const now = view.snapshot ? Math.max(view.snapshot.taken_unix, Date.now() / 1000) : Date.now() / 1000;
  const first = view.samples.length ? view.samples[0].t : now - 60;
  const t0 = Math.max(now - HOUR, Math.min(first, now - 60));
  const values = series.flatMap((s) => s.points.map((p) => p[1]));
  let ymax = Math.max(opts.floor || 1, ...values) * 1.2;
  const bands = (opts.bands || []).filter((b) => b.from < ymax * 3);
  if (bands.length) ymax = Math.max(ymax, Math.min(...bands.map((b) => b.from)) * 1.1);
  const X = (t) => pad.l + ((t - t0) / (now - t0)) * (w - pad.l - pad.r);
  const Y = (v) => h - pad.b - (Math.min(v, ymax) / ymax) * (h - pad.t - pad.b);
  for (const b of bands) {
    const top = Y(Math.min(b.to, ymax)), bottom = Y(Math.min(b.from, ymax));
    if (bottom > top) svg.appendChild(el("rect", { x: pad.l, y: top, width: w - pad.l - pad.r, height: bottom - top, class: "band-" + b.cls }));
  }
  for (let i = 0; i <= 4; i++) {
    const v = (ymax * i) / 4;
    svg.appendChild(el("line", { x1: pad.l, x2: w - pad.r, y1: Y(v), y2: Y(v), class: "grid" }));
    svg.appendChild(el("text", { x: pad.l - 4, y: Y(v) + 3, "text-anchor": "end" }, opts.fmt(v)));
  }
  for (let i = 0; i <= 4; i++) {
    const t = t0 + ((now - t0) * i) / 4;
    svg.appendChild(el("text", { x: X(t), y: h - 5, "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle" }, clock(t)));
  }
  svg.appendChild(el("line", { x1: pad.l, x2: pad.l, y1: pad.t, y2: h - pad.b, class: "axis" }));
  svg.appendChild(el("line", { x1: pad.l, x2: w - pad.r, y1: h - pad.b, y2: h - pad.b, class: "axis" }));
  for (const e of view.events) {
    if (!MARKED.has(e.kind) || e.at < t0) continue;
    const m = el("line", { x1: X(e.at), x2: X(e.at), y1: pad.t, y2: h - pad.b, class: "marker " + e.kind, "data-kind": e.kind });
    m.appendChild(el("title", {}, clock(e.at) + " " + e.kind + " " + (e.node !== "-" ? e.node + ": " : "") + e.message));
    svg.appendChild(m);
  }
  let points = 0;
  series.forEach((s, i) => {
    const pts = s.points.filter((p) => p[0] >= t0);
    points += pts.length;
    if (!pts.length) return;
    const d = pts.map((p, j) => (j ? "L" : "M") + X(p[0]).toFixed(1) + "," + Y(p[1]).toFixed(1)).join("");
    svg.appendChild(el("path", { d, class: "series s" + (i % 6), "data-series": s.name }));
    const last = pts[pts.length - 1];
    svg.appendChild(el("text", { x: Math.min(X(last[0]) + 3, w - 60), y: Y(last[1]) - 4, class: "f" + (i % 6) }, s.name));
  });
  svg.dataset.points = points;
  if (!points) svg.appendChild(el("text", { x: w / 2, y: h / 2, "text-anchor": "middle", class: "empty" }, opts.empty || "no data yet"));
}

function lagSeries(index) {
  const names = new Set();
  for (const s of view.samples) for (const n of Object.keys(s.lag)) names.add(n);
  return [...names].sort().map((name) => ({
    name,
    points: view.samples.filter((s) => s.lag[name] && s.lag[name][index] !== null).map((s) => [s.t, s.lag[name][index]]),
  }));
}

function lagCharts() {
  const s = view.settings;
  const warn = s.warn_lag_seconds, crit = s.crit_lag_seconds;
  chart("lag-seconds", lagSeries(0), {
    fmt: seconds,
    floor: 1,
    bands: warn ? [{ from: warn, to: crit, cls: "warning" }, { from: crit, to: crit * 100, cls: "critical" }] : [],
    empty: "no replica reports its lag yet",
  });
  document.getElementById("lag-seconds-note").textContent = warn ? "warning from " + seconds(warn) + ", critical from " + seconds(crit) : "";
  chart("lag-bytes", lagSeries(1), { fmt: bytes, floor: 1024, empty: "no replica reports its lag yet" });
}

function walRate() {
  const pts = [];
  for (let i = 1; i < view.samples.length; i++) {
    const a = view.samples[i - 1], b = view.samples[i];
    // A new primary starts its own count: no rate across the move.
    if (a.wal === null || b.wal === null || b.wal < a.wal || b.t <= a.t) continue;
    pts.push([b.t, (b.wal - a.wal) / (b.t - a.t)]);
  }
  chart("wal-rate", [{ name: "bytes/s", points: pts }], { fmt: (v) => bytes(v) + "/s", floor: 1024 });
}

function slots(snap) {
  const crit = view.settings.crit_slot_retained_bytes;
  const names = new Set();
  for (const s of view.samples) for (const n of Object.keys(s.slots)) names.add(n);
  const series = [...names].sort().map((name) => ({
    name,
    points: view.samples.filter((s) => s.slots[name] !== undefined).map((s) => [s.t, s.slots[name]]),
  }));
  chart("slots-chart", series, {
    fmt: bytes,
    floor: 1024 * 1024,
    bands: crit ? [{ from: crit, to: crit * 100, cls: "critical" }] : [],
    empty: "no slots on the primary",
  });
  document.getElementById("slots-note").textContent = crit ? "critical from " + bytes(crit) : "";
  const body = document.querySelector("#slots tbody");
  body.replaceChildren(...(snap.slots || []).map((sl) => {
    const tr = document.createElement("tr");
    for (const v of [sl.slot, sl.active ? "yes" : "no", bytes(sl.retained_bytes), sl.safe_wal_size === null ? "unbounded" : bytes(sl.safe_wal_size), sl.wal_status || "?"]) {
      const td = document.createElement("td");
      td.textContent = v;
      tr.appendChild(td);
    }
    return tr;
  }));
}

// ---- write actions (only when the agent has a token file) ------------

function actions(snap) {
  const box = document.getElementById("actions");
  box.hidden = !view.settings.write;
  if (box.hidden) return;
  const select = document.getElementById("switch-to");
  const want = snap.nodes.filter((n) => n.name !== snap.primary).map((n) => n.name);
  if ([...select.options].map((o) => o.value).join() !== want.join()) {
    select.replaceChildren(...want.map((n) => new Option(n, n)));
  }
  const has = !!sessionStorage.getItem("pgrepl-token");
  document.getElementById("token-box").hidden = has;
  document.getElementById("token-forget").hidden = !has;
  document.getElementById("pause").hidden = !!snap.paused;
  document.getElementById("resume").hidden = !snap.paused;
}

async function post(path, body, question) {
  const out = document.getElementById("action-result");
  const token = sessionStorage.getItem("pgrepl-token");
  if (!token) { out.textContent = "paste the API token first"; return; }
  if (!window.confirm(question)) return;
  out.textContent = path.slice(1) + "…";
  try {
    const r = await fetch("../" + path.slice(1), {
      method: "POST",
      headers: { Authorization: "Bearer " + token, "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    const d = await r.json();
    if (r.status === 401) sessionStorage.removeItem("pgrepl-token");
    out.textContent = d.ok ? path.slice(1) + " done" + (d.steps && d.steps.length ? ": " + d.steps[d.steps.length - 1] : "") : "refused (" + r.status + "): " + d.error;
  } catch (e) {
    out.textContent = "no answer: " + e;
  }
  if (view.snapshot) actions(view.snapshot);
}

function wire() {
  document.getElementById("token-save").addEventListener("click", () => {
    const t = document.getElementById("token");
    if (t.value.trim()) sessionStorage.setItem("pgrepl-token", t.value.trim());
    t.value = "";
    if (view.snapshot) actions(view.snapshot);
  });
  document.getElementById("token-forget").addEventListener("click", () => {
    sessionStorage.removeItem("pgrepl-token");
    if (view.snapshot) actions(view.snapshot);
  });
  document.getElementById("switchover").addEventListener("click", () => {
    const to = document.getElementById("switch-to").value;
    const from = view.snapshot && view.snapshot.primary;
    post("/switchover", { to, from }, "Switch the primary over from " + from + " to " + to + "?");
  });
  document.getElementById("pause").addEventListener("click", () =>
    post("/pause", { reason: "from the dashboard" }, "Pause automatic failover?"));
  document.getElementById("resume").addEventListener("click", () =>
    post("/resume", {}, "Resume automatic failover?"));
  window.addEventListener("resize", render);
  // Banners and the time axis age even when no frame arrives.
  setInterval(() => { if (view.snapshot) { banners(view.snapshot); } }, 1000);
}

wire();
connect();
