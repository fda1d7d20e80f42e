// The vcdn web player: ask steering for ranked URLs, play the first with hls.js, and move
// to the next URL when one fails (the same idea as onebox.hlsclient, in the browser).
"use strict";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const video = $("video");

// What the page did, for people (the panels) and for tests (window.vcdnPlayer).
const state = {
  title: "", urls: [], index: -1, failed: [], fragments: [], fatal: [], failovers: 0,
  appliance: "", rendition: "", playing: false,
  // Live: latency = wall clock minus the program date time at the playing position.
  live: false, latency: null, latencies: [],
  stalls: 0,  // playback stopped to wait for data after it had started
  stallSeconds: [],  // how long each stall lasted, once playback resumed
};
let stalledAt = 0;
let restartedAt = 0;
// A live player stuck this long (hls.js can give up on a rendition without a fatal error
// when its upstream failed for a while) starts over at the live edge of the same URL.
const LIVE_STUCK_MS = 6000;
window.vcdnPlayer = state;
let hls = null;
let applianceNames = {};  // "host:port" -> "a1 (site-a)", when the operator token is known

// Fail fast on a dead appliance: no answer (status 0, which hls.js never retries) or a
// timeout after one quick retry is fatal, and we fail over. An appliance that answers
// 5xx is alive and its upstream (the origin) in trouble, which the next appliance would
// share: keep asking it for about ten seconds, long enough for an origin to restart.
// Measured in time, not retries: hls.js counts the errors of every fragment loader
// together (video and the audio rendition fail side by side), so a count runs out in
// under a second when both are refused.
const UPSTREAM_PATIENCE_MS = 10000;
let upstreamTroubleSince = 0;
const FAST = {
  default: {
    maxTimeToFirstByteMs: 4000, maxLoadTimeMs: 10000,
    timeoutRetry: { maxNumRetry: 1, retryDelayMs: 0, maxRetryDelayMs: 0 },
    errorRetry: {
      maxNumRetry: 1, retryDelayMs: 500, maxRetryDelayMs: 2000,
      shouldRetry: (config, count, isTimeout, response, retry) => {
        if (!(response && response.code >= 500)) return retry;
        const now = performance.now();
        if (count === 0 || !upstreamTroubleSince) upstreamTroubleSince = now;
        return now - upstreamTroubleSince < UPSTREAM_PATIENCE_MS;
      },
    },
  },
};

function log(text) {
  const line = `${new Date().toISOString().slice(11, 23)} ${text}\n`;
  $("log").textContent = line + $("log").textContent;
}

function hostOf(url) {
  try { return new URL(url).host; } catch { return url; }
}

function renderUrls() {
  const list = $("urls");
  list.replaceChildren();
  state.urls.forEach((url, i) => {
    const host = hostOf(url);
    const name = applianceNames[host] ? `${applianceNames[host]} ` : "";
    const li = el("li", {}, `${name}${host}`);
    if (i === state.index) li.className = "current";
    if (state.failed.includes(i)) li.className = "failed";
    list.append(li);
  });
}

function showAppliance() {
  const host = hostOf(state.urls[state.index] || "");
  state.appliance = applianceNames[host] ? `${applianceNames[host]} at ${host}` : host;
  $("appliance").textContent = state.appliance || "-";
}

async function loadNames() {
  if (!operatorToken()) return;
  try {
    const body = await controlAppliances();
    for (const a of body.appliances) applianceNames[hostOf(a.public_url)] = `${a.id} (${a.site})`;
    const titles = await controlGet("/api/v1/titles");
    const list = $("titles");
    list.replaceChildren(...titles.titles.map((t) => el("option", { value: t.title })));
  } catch (e) {
    log(`control API: ${e.message}`);
  }
}

let dash = null;
let shakaPlayer = null;
// ?protocol=dash plays the DASH manifest (steering's `dash` URLs) with dash.js instead,
// ?protocol=shaka the same manifest with Shaka Player.
const protocol = ["dash", "shaka"].includes(params.get("protocol")) ? params.get("protocol") : "hls";
// ?latency=low: a low-latency HLS event, played PART-HOLD-BACK behind live.
const lowLatency = params.get("latency") === "low";

// The ClearKey license URL of an encrypted title: beside the manifest, under the same
// signed /s/{token}/{title}/ prefix; the appliance redirects it to the key service.
const licenseUrl = (manifestUrl) => new URL("keys/clearkey", manifestUrl).href;

async function startShaka(url, index, position) {
  const player = new shaka.Player();
  shakaPlayer = player;
  window.vcdnShaka = player;
  player.configure({ drm: { servers: { "org.w3.clearkey": licenseUrl(url) } } });
  await player.attach(video);
  player.getNetworkingEngine().registerResponseFilter((type, response) => {
    if (type === shaka.net.NetworkingEngine.RequestType.SEGMENT) {
      state.fragments.push(response.uri);
      $("segments").textContent = String(state.fragments.length);
    }
  });
  const rendition = () => {
    const t = player.getVariantTracks().find((v) => v.active);
    if (!t) return;
    state.rendition = `${t.height}p, ${(t.bandwidth / 1000).toFixed(0)} kb/s`;
    $("rendition").textContent = state.rendition;
  };
  player.addEventListener("adaptation", rendition);
  player.addEventListener("variantchanged", rendition);
  player.addEventListener("error", (e) => {
    const err = e.detail || {};
    log(`Shaka error ${err.code} (severity ${err.severity})`);
    if (err.severity !== shaka.util.Error.Severity.CRITICAL) return;
    player.destroy();
    shakaPlayer = null;
    failover(index);
  });
  try {
    await player.load(url, position > 0 ? position : null);
    rendition();
    log(`DASH manifest: ${player.getVariantTracks().length} variants (Shaka)`);
    video.play().catch((e) => log(`play(): ${e.message}`));
  } catch (err) {
    log(`Shaka could not load ${url}: ${err.code}`);
    if (shakaPlayer === player) { player.destroy(); shakaPlayer = null; failover(index); }
  }
}

function failover(index) {
  state.failed.push(index);
  state.failovers += 1;
  $("failovers").textContent = String(state.failovers);
  // On demand: go on where we were. Live: the next appliance's stream has its own
  // timeline, so start at its live edge (which is where we were, give or take the wait).
  start(index + 1, state.live ? -1 : video.currentTime);
}

function startDash(url, index, position) {
  dash = dashjs.MediaPlayer().create();
  window.vcdnDash = dash;
  dash.updateSettings({ streaming: { abr: { limitBitrateByPortal: false } } });
  dash.setProtectionData({ "org.w3.clearkey": { serverURL: licenseUrl(url) } });
  dash.on(dashjs.MediaPlayer.events.STREAM_INITIALIZED, () => {
    const reps = dash.getRepresentationsByType ? dash.getRepresentationsByType("video") : [];
    log(`DASH manifest: ${reps.length} video representations`);
  });
  dash.on(dashjs.MediaPlayer.events.QUALITY_CHANGE_RENDERED, (e) => {
    if (e.mediaType !== "video") return;
    const rep = e.newRepresentation || {};
    state.rendition = `${rep.height}p, ${((rep.bandwidth || 0) / 1000).toFixed(0)} kb/s`;
    $("rendition").textContent = state.rendition;
  });
  dash.on(dashjs.MediaPlayer.events.FRAGMENT_LOADING_COMPLETED, (e) => {
    const req = e.request || {};
    if (req.url) state.fragments.push(req.url);
    $("segments").textContent = String(state.fragments.length);
  });
  dash.on(dashjs.MediaPlayer.events.ERROR, (e) => {
    const err = e.error || {};
    log(`fatal dash.js error ${err.code}: ${err.message}`);
    dash.reset();
    dash = null;
    failover(index);
  });
  dash.initialize(video, url, true, position > 0 ? position : undefined);
}

function start(index, position) {
  if (hls) { hls.destroy(); hls = null; }
  if (dash) { dash.reset(); dash = null; }
  if (shakaPlayer) { shakaPlayer.destroy(); shakaPlayer = null; }
  if (index >= state.urls.length) {
    $("status").textContent = "failed: no URL left";
    $("status").className = "error";
    state.fatal.push("every URL failed");
    log("every ranked URL failed");
    return;
  }
  state.index = index;
  renderUrls();
  showAppliance();
  const url = state.urls[index];
  log(`loading ${url}`);
  if (protocol === "dash") {
    startDash(url, index, position);
    return;
  }
  if (protocol === "shaka") {
    startShaka(url, index, position);
    return;
  }
  // Live: play 1.5 segments behind the newest one hls.js has seen (its default of three
  // adds 3 s with 2 s segments), and catch up to that by playing up to 50% faster
  // (pitch kept) when startup or a slow load left it further behind; past 5 segments
  // behind, jump forward. Low-latency HLS (latency=low): hls.js's lowLatencyMode plays
  // PART-HOLD-BACK behind; a set liveSyncDuration(Count) would override that.
  const sync = lowLatency
    ? { lowLatencyMode: true, maxLiveSyncPlaybackRate: 1.2 }
    : { liveSyncDurationCount: 1.5, liveMaxLatencyDurationCount: 5, maxLiveSyncPlaybackRate: 1.5 };
  hls = new Hls({
    fragLoadPolicy: FAST, playlistLoadPolicy: FAST, manifestLoadPolicy: FAST,
    startPosition: position || -1, capLevelToPlayerSize: false, ...sync,
  });
  hls.on(Hls.Events.LEVEL_LOADED, (_, data) => {
    const live = Boolean(data.details && data.details.live);
    if (live !== state.live) {
      state.live = live;
      $("live").hidden = !live;
      log(live ? "live stream" : "on demand");
    }
  });
  hls.on(Hls.Events.MANIFEST_PARSED, (_, data) => {
    log(`master playlist: ${data.levels.length} renditions`);
    video.play().catch((e) => log(`play(): ${e.message}`));
  });
  hls.on(Hls.Events.LEVEL_SWITCHED, (_, data) => {
    const level = hls.levels[data.level];
    state.rendition = `${level.height}p, ${(level.bitrate / 1000).toFixed(0)} kb/s`;
    $("rendition").textContent = state.rendition;
  });
  hls.on(Hls.Events.FRAG_LOADED, (_, data) => {
    upstreamTroubleSince = 0;
    state.fragments.push(data.frag.url);
    $("segments").textContent = String(state.fragments.length);
  });
  hls.on(Hls.Events.ERROR, (_, data) => {
    const code = data.response ? ` (status ${data.response.code})` : "";
    log(`${data.fatal ? "fatal" : "recoverable"} ${data.type}: ${data.details}${code}`);
    if (!data.fatal) return;
    if (data.type === Hls.ErrorTypes.MEDIA_ERROR && !state.recovered) {
      state.recovered = true;
      hls.recoverMediaError();
      return;
    }
    // A network failure of this appliance: continue on the next ranked URL, where we were.
    failover(index);
  });
  hls.loadSource(url);
  hls.attachMedia(video);
}

async function play(title, steering) {
  state.title = title;
  state.urls = []; state.failed = []; state.index = -1;
  $("status").textContent = "asking steering";
  $("status").className = "";
  let body;
  try {
    const resp = await fetch(`${steering.replace(/\/$/, "")}/v1/playback/${encodeURIComponent(title)}`);
    body = await resp.json();
    if (!resp.ok) throw new Error(body.error || `status ${resp.status}`);
  } catch (e) {
    $("status").textContent = `steering: ${e.message}`;
    $("status").className = "error";
    state.fatal.push(`steering: ${e.message}`);
    log(`steering failed: ${e.message}`);
    return;
  }
  state.urls = protocol === "hls" ? body.urls : (body.dash || []);
  log(`steering ranked ${state.urls.length} ${protocol} URLs (sites ${(body.sites || []).join(", ")})`);
  $("status").textContent = "loading";
  start(0, -1);
}

function tick() {
  const t = video.currentTime;
  let ahead = 0;
  for (let i = 0; i < video.buffered.length; i++) {
    if (video.buffered.start(i) <= t + 0.1 && video.buffered.end(i) >= t) {
      ahead = video.buffered.end(i) - t;
    }
  }
  $("buffer").textContent = `${ahead.toFixed(1)} s ahead`;
  $("position").textContent = `${t.toFixed(1)} s` + (video.duration ? ` of ${video.duration.toFixed(1)} s` : "");
  state.playing = !video.paused && !video.ended && video.readyState >= 3;
  const date = hls && hls.playingDate;
  if (state.live && date && state.playing) {
    state.latency = (Date.now() - date.getTime()) / 1000;
    state.latencies.push(state.latency);
    $("latency").textContent = `${state.latency.toFixed(1)} s behind live`;
  }
  const now = performance.now();
  if (state.live && hls && stalledAt && now - Math.max(stalledAt, restartedAt) > LIVE_STUCK_MS) {
    restartedAt = now;
    log(`no progress for ${LIVE_STUCK_MS / 1000} s: starting again at the live edge`);
    start(state.index, -1);
  }
  if (state.index >= 0 && $("status").className !== "error") {
    $("status").textContent = video.ended ? "ended" : state.playing ? "playing" : "buffering";
  }
}

video.addEventListener("waiting", () => {
  if (state.playing && !stalledAt) {
    state.stalls += 1;
    stalledAt = performance.now();
    log("stalled: waiting for data");
  }
});
video.addEventListener("playing", () => {
  if (!stalledAt) return;
  const seconds = (performance.now() - stalledAt) / 1000;
  stalledAt = 0;
  state.stallSeconds.push(seconds);
  log(`playing again after ${seconds.toFixed(1)} s`);
});

function main() {
  if ((protocol === "dash" && !window.dashjs) || (protocol === "shaka" && !window.shaka)) {
    $("status").textContent = `${protocol === "dash" ? "dash.js" : "Shaka Player"} is not available (run \`make install\`)`;
    $("status").className = "error";
    return;
  }
  if (protocol === "hls" && (!window.Hls || !Hls.isSupported())) {
    $("status").textContent = "hls.js is not available (run `make install`), or this browser lacks Media Source Extensions";
    $("status").className = "error";
    return;
  }
  $("title").value = params.get("title") || "";
  $("steering").value = params.get("steering") || `${location.protocol}//${location.hostname}:8300`;
  $("pick").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const url = new URL(location.href);
    url.searchParams.set("title", $("title").value);
    url.searchParams.set("steering", $("steering").value);
    history.replaceState(null, "", url);
    play($("title").value.trim(), $("steering").value.trim());
  });
  setInterval(tick, 500);
  loadNames().then(() => {
    if ($("title").value) play($("title").value.trim(), $("steering").value.trim());
  });
}

main();
