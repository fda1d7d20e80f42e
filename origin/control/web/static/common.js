// Shared by the player and the dashboard: the operator token and small formatters.
"use strict";

// The operator token travels in the URL fragment (never sent to a server) and is kept
// for this tab only, like a session.
function operatorToken() {
  const m = /(?:^|[#&])token=([^&]+)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem("vcdn-token", decodeURIComponent(m[1]));
    window.history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem("vcdn-token") || "";
}

async function controlGet(path) {
  const token = operatorToken();
  const resp = await fetch(path, { headers: token ? { Authorization: "Bearer " + token } : {} });
  if (!resp.ok) {
    const text = await resp.text();
    throw new Error(`${path} answered ${resp.status}: ${text.slice(0, 200)}`);
  }
  return resp.json();
}

// Every appliance, a page at a time (GET /api/v1/appliances?limit=&after=): one page is
// cheap for the control plane, the whole of a big fleet at once is not. The answer has
// the shape of the unpaged list; generated_at is the first page's.
async function controlAppliances(page = 1000) {
  let body = await controlGet(`/api/v1/appliances?limit=${page}`);
  const all = { appliances: body.appliances.slice(), heartbeat_interval: body.heartbeat_interval,
                generated_at: body.generated_at };
  for (let i = 0; body.next && i < 10000; i++) {
    body = await controlGet(`/api/v1/appliances?limit=${page}&after=${encodeURIComponent(body.next)}`);
    all.appliances.push(...body.appliances);
  }
  return all;
}

function fmtBytes(n) {
  if (n === null || n === undefined) return "-";
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (Math.abs(n) >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return (i ? n.toFixed(1) : String(Math.round(n))) + " " + units[i];
}

function fmtPct(x) {
  return x === null || x === undefined || Number.isNaN(x) ? "-" : (100 * x).toFixed(0) + "%";
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children) node.append(c instanceof Node ? c : String(c));
  return node;
}
