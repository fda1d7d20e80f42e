// The operator dashboard: the fleet as the control API sees it, refreshed every few seconds.
"use strict";

const REFRESH_MS = 3000;
const WINDOW_S = 600;
const MIN_SPAN_S = 60;
const COLORS = ["#0969da", "#cf222e", "#1f883d", "#9a6700", "#8250df", "#bf3989", "#1b7c83", "#57606a"];
const $ = (id) => document.getElementById(id);
window.vcdnDashboard = { appliances: [], refreshed: 0, error: "" };

function age(seconds) {
  if (seconds === null || seconds === undefined) return "never";
  if (seconds < 90) return `${seconds.toFixed(1)} s ago`;
  return `${(seconds / 60).toFixed(0)} min ago`;
}

function cell(text, cls) {
  return el("td", cls ? { class: cls } : {}, text);
}

function renderAppliances(list, now) {
  const rows = list.map((a) => el("tr", { "data-id": a.id },
    cell(a.id), cell(a.site), cell(a.state, `state-${a.state}`),
    cell(a.load.requests_per_s.toFixed(1), "num"), cell(fmtBytes(a.load.bytes_per_s) + "/s", "num"),
    cell(String(a.load.connections), "num"),
    cell(fmtBytes(a.used_bytes), "num"), cell(fmtBytes(a.capacity_bytes), "num"),
    cell(fmtPct(a.hit_ratio), "num"), cell(fmtBytes(a.bytes_served), "num"),
    cell(age(a.last_heartbeat === null ? null : now - a.last_heartbeat), "num")));
  $("appliances").tBodies[0].replaceChildren(...rows);
}

function renderEnrollments(enrollments, list) {
  const registered = new Map(list.map((a) => [a.id, a.prefixes]));
  const rows = enrollments.map((e) => el("tr", { "data-enrollment": e.id },
    cell(e.id), cell(e.site), cell(e.prefixes.join(" ") || "none"),
    cell(registered.has(e.id) ? (registered.get(e.id).join(" ") || "none") : "not registered"),
    cell(e.label)));
  $("enrollments").tBodies[0].replaceChildren(...rows);
}

function renderSites(list) {
  const sites = new Map();
  for (const a of list) {
    const s = sites.get(a.site) || { n: 0, healthy: 0, rps: 0, bps: 0, used: 0, cap: 0, served: 0, hitw: 0 };
    s.n += 1;
    if (a.state === "healthy") s.healthy += 1;
    s.rps += a.load.requests_per_s; s.bps += a.load.bytes_per_s;
    s.used += a.used_bytes; s.cap += a.capacity_bytes; s.served += a.bytes_served;
    s.hitw += a.hit_ratio * a.bytes_served;  // weigh each box's ratio by what it served
    sites.set(a.site, s);
  }
  const rows = [...sites.entries()].sort().map(([site, s]) => el("tr", { "data-site": site },
    cell(site), cell(String(s.n), "num"), cell(String(s.healthy), "num"),
    cell(s.rps.toFixed(1), "num"), cell(fmtBytes(s.bps) + "/s", "num"),
    cell(fmtBytes(s.used), "num"), cell(fmtBytes(s.cap), "num"),
    cell(fmtPct(s.served ? s.hitw / s.served : null), "num"), cell(fmtBytes(s.served), "num")));
  $("sites").tBodies[0].replaceChildren(...rows);
}

// One SVG line chart: series = [{name, color, points: [[t, y], ...]}].
function drawChart(svg, series, t0, t1, yFormat, yMaxFixed) {
  const W = svg.clientWidth || 500, H = svg.clientHeight || 220, L = 84, B = 20, T = 8, R = 8;
  const ns = "http://www.w3.org/2000/svg";
  const node = (tag, attrs) => {
    const n = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    return n;
  };
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.replaceChildren();
  let yMax = yMaxFixed || 0;
  if (!yMaxFixed) for (const s of series) for (const [, y] of s.points) yMax = Math.max(yMax, y);
  if (!yMax) yMax = 1;
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const y = (v) => H - B - (v / yMax) * (H - B - T);
  for (let i = 0; i <= 4; i++) {
    const v = (yMax * i) / 4;
    svg.append(node("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#eaeef2" }));
    const label = node("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", "font-size": 11, fill: "#5b6470" });
    label.textContent = yFormat(v);
    svg.append(label);
  }
  const span = t1 - t0;
  for (const f of [1, 0.5, 0]) {
    const ago = span * f;
    const anchor = f === 1 ? "start" : f === 0 ? "end" : "middle";
    const label = node("text", { x: x(t1 - ago), y: H - 4, "text-anchor": anchor, "font-size": 11, fill: "#5b6470" });
    label.textContent = !ago ? "now" : ago >= 120 ? `-${(ago / 60).toFixed(0)} min` : `-${ago.toFixed(0)} s`;
    svg.append(label);
  }
  for (const s of series) {
    if (!s.points.length) continue;
    const d = s.points.map(([t, v], i) => `${i ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)}`).join("");
    svg.append(node("path", { d, fill: "none", stroke: s.color, "stroke-width": 2, "data-series": s.name }));
    // Sparse history (the control plane may keep one beat a minute): mark each sample.
    if (s.points.length < 30) {
      for (const [t, v] of s.points) {
        svg.append(node("circle", { cx: x(t).toFixed(1), cy: y(v).toFixed(1), r: 2.5, fill: s.color }));
      }
    }
  }
}

async function loadHistory(list, now) {
  const since = now - WINDOW_S;
  const bytes = [], hits = [];
  await Promise.all(list.map(async (a, i) => {
    const color = COLORS[i % COLORS.length];
    let rows = [];
    try {
      const body = await controlGet(`/api/v1/appliances/${encodeURIComponent(a.id)}/heartbeats?since=${since}&limit=1000`);
      rows = body.heartbeats.slice().sort((p, q) => p.at - q.at);
    } catch (e) {
      return;
    }
    const rate = [], ratio = [];
    for (let k = 0; k < rows.length; k++) {
      const { at, heartbeat } = rows[k];
      ratio.push([at, heartbeat.hit_ratio]);
      if (k === 0) continue;
      const prev = rows[k - 1];
      const dt = at - prev.at;
      // bytes_served counts since the appliance started: a drop means it restarted.
      let delta = heartbeat.bytes_served - prev.heartbeat.bytes_served;
      if (delta < 0) delta = heartbeat.bytes_served;
      if (dt > 0) rate.push([at, delta / dt]);
    }
    bytes.push({ name: a.id, color, points: rate });
    hits.push({ name: a.id, color, points: ratio });
  }));
  // Show at most WINDOW_S, but no more than the history there is (a fresh fleet's minute).
  let first = now;
  for (const s of hits) if (s.points.length) first = Math.min(first, s.points[0][0]);
  const t0 = Math.max(since, Math.min(first, now - MIN_SPAN_S));
  $("legend").replaceChildren(...list.map((a, i) => el("span", {},
    el("i", { style: `background:${COLORS[i % COLORS.length]}` }), a.id)));
  drawChart($("chart-bytes"), bytes, t0, now, (v) => fmtBytes(v) + "/s");
  drawChart($("chart-hits"), hits, t0, now, (v) => fmtPct(v), 1);
}

async function refresh() {
  if (!operatorToken()) {
    $("login").hidden = false;
    return;
  }
  try {
    const body = await controlAppliances();
    const now = body.generated_at;
    const list = body.appliances.slice().sort((p, q) => (p.site + p.id).localeCompare(q.site + q.id));
    renderAppliances(list, now);
    renderSites(list);
    renderEnrollments((await controlGet("/api/v1/enrollments")).enrollments, list);
    await loadHistory(list, now);
    $("error").textContent = "";
    $("login").hidden = true;
    $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    window.vcdnDashboard = { appliances: list.map((a) => a.id), refreshed: window.vcdnDashboard.refreshed + 1, error: "" };
  } catch (e) {
    $("error").textContent = e.message;
    window.vcdnDashboard.error = e.message;
    if (/ 401| 403/.test(e.message)) $("login").hidden = false;
  }
}

$("token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem("vcdn-token", $("token").value.trim());
  refresh();
});
refresh();
setInterval(refresh, REFRESH_MS);
