// The monitoring room's page. One file, no framework and nothing fetched from elsewhere (the room
// may have no Internet, and a CDN is one more thing that can fail): plain DOM, fetch() for the API,
// EventSource for live updates, inline SVG for the sensor curves. Every value that came from a
// site is inserted as text (esc()), never as markup.

#include "monitor/api.hpp"

namespace kg::monitor {

const std::string& dashboard_html() {
    static const std::string page = R"HTML(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Kitchen monitor</title>
<style>
  :root { --sev1: #c62828; --sev2: #ef6c00; --sev3: #607d8b; --ok: #2e7d32; --bg: #f4f5f7; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.4 system-ui, sans-serif; background: var(--bg); color: #222; }
  header { display: flex; gap: 1em; align-items: center; padding: .6em 1em; background: #263238; color: #fff; }
  header h1 { font-size: 1.1em; margin: 0; flex: 1; }
  #live { padding: .1em .6em; border-radius: 1em; background: #777; font-size: .85em; }
  #live.on { background: var(--ok); }
  main { display: grid; grid-template-columns: minmax(0, 3fr) minmax(0, 2fr); gap: 1em; padding: 1em; }
  section { background: #fff; border-radius: 6px; padding: .8em; box-shadow: 0 1px 2px #0002; margin-bottom: 1em; }
  h2 { font-size: 1em; margin: 0 0 .5em; }
  table { width: 100%; border-collapse: collapse; }
  th, td { text-align: left; padding: .3em .4em; border-bottom: 1px solid #eee; vertical-align: top; }
  th { font-weight: 600; color: #555; font-size: .85em; }
  tr.alert { cursor: pointer; }
  tr.alert:hover, tr.alert.selected { background: #e3f2fd; }
  tr.overdue td:first-child { box-shadow: inset 4px 0 var(--sev1); }
  .sev { display: inline-block; min-width: 2.2em; text-align: center; color: #fff; border-radius: 3px; font-weight: 600; }
  .sev1 { background: var(--sev1); } .sev2 { background: var(--sev2); } .sev3 { background: var(--sev3); }
  .state-online { color: var(--ok); font-weight: 600; } .state-offline { color: var(--sev1); font-weight: 600; }
  .state-silent { color: var(--sev2); font-weight: 600; } .state-unknown { color: #888; }
  .flag { color: var(--sev1); font-weight: 700; }
  .config-warning { color: var(--sev1); font-size: 0.85em; max-width: 32em; }
  .unknown-end { color: var(--sev2); font-weight: 600; }
  .muted { color: #777; font-size: .85em; }
  .filters { display: flex; gap: .6em; flex-wrap: wrap; margin-bottom: .6em; }
  button { cursor: pointer; padding: .25em .7em; }
  #detail img { max-width: 100%; border-radius: 4px; background: #000; }
  #detail textarea { width: 100%; min-height: 4em; }
  .error { color: var(--sev1); }
  #login { max-width: 22em; margin: 4em auto; }
  #login input { width: 100%; margin-bottom: .6em; padding: .4em; }
  .hidden { display: none !important; }
  svg.chart { width: 100%; height: 170px; background: #fafafa; border: 1px solid #eee; }
  ul.plain { list-style: none; padding: 0; margin: 0; }
  ul.plain li { padding: .15em 0; border-bottom: 1px dotted #eee; }
  #room-banner { padding: .6em 1em; background: var(--sev1); color: #fff; font-weight: 600; }
  #room-banner .detail { font-weight: normal; opacity: .9; }
  #room-note { font-size: .85em; color: #ffe082; }
</style>
</head>
<body>
<header>
  <h1>Kitchen monitor &mdash; monitoring room</h1>
  <span id="room-note"></span>
  <span id="live">offline</span>
  <span id="who"></span>
  <button id="logout" class="hidden">Sign out</button>
</header>
<div id="room-banner" class="hidden" role="alert"></div>

<section id="login" class="hidden">
  <h2>Sign in</h2>
  <form id="login-form">
    <input id="login-operator" placeholder="operator" autocomplete="username" required>
    <input id="login-password" type="password" placeholder="password" autocomplete="current-password" required>
    <button id="login-submit" type="submit">Sign in</button>
    <p id="login-error" class="error"></p>
  </form>
</section>

<main id="app" class="hidden">
  <div>
    <section>
      <h2>Open alerts <span id="alert-count" class="muted"></span></h2>
      <div class="filters">
        <label>Site <select id="f-site"><option value="">all</option></select></label>
        <label>Check <select id="f-check"><option value="">all</option></select></label>
        <label>Severity <select id="f-severity"><option value="">all</option><option value="1">1 immediate</option>
          <option value="2">2 deadline</option><option value="3">3 routine</option></select></label>
        <label>Status <select id="f-status"><option value="active">open + acknowledged</option><option value="open">open</option>
          <option value="acknowledged">acknowledged</option><option value="closed">closed</option><option value="all">all</option></select></label>
      </div>
      <table>
        <thead><tr><th>Sev</th><th>Site</th><th>Where</th><th>What</th><th>Since</th><th>Condition</th><th>Status</th><th></th></tr></thead>
        <tbody id="alerts"></tbody>
      </table>
    </section>
    <section>
      <h2>Sites</h2>
      <table>
        <thead><tr><th>Site</th><th>State</th><th>Last heartbeat</th><th>Cameras online</th><th>Sensors</th><th>Open alerts</th><th>Messages</th><th></th></tr></thead>
        <tbody id="sites"></tbody>
      </table>
      <p id="sites-error" class="error"></p>
    </section>
  </div>
  <div>
    <section id="detail">
      <h2 id="d-title">Select an alert</h2>
      <div id="d-body" class="hidden">
        <img id="d-snapshot" alt="snapshot" class="hidden">
        <p id="d-facts"></p>
        <h2>Handling</h2>
        <ul id="d-actions" class="plain"></ul>
        <textarea id="d-note" placeholder="what was checked / what was done"></textarea>
        <div>
          <button id="d-ack">Acknowledge</button>
          <button id="d-close">Close (with note)</button>
          <button id="d-addnote">Add note</button>
        </div>
        <p id="d-error" class="error"></p>
        <h2>History</h2>
        <ul id="d-history" class="plain"></ul>
      </div>
    </section>
    <section>
      <h2>Sensors today <select id="s-site"></select></h2>
      <div id="charts"><p class="muted">No readings.</p></div>
    </section>
  </div>
</main>

<script>
"use strict";
const $ = (s) => document.querySelector(s);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
const when = (iso) => iso ? new Date(iso).toLocaleString() : "";
const state = { selected: null, stream: null, signedIn: false, pending: new Set(), timer: null, sites: new Map(), siteFetches: new Set(), siteFetchesStarted: 0, sitesShown: 0,
  inFlight: new Set(), alertFetchesStarted: 0, alertsShown: 0, detailFetchesStarted: 0, detailShown: 0,
  detail: { last: 0, timer: null, busy: 0, again: false }, list: { last: 0, timer: null } };
// The gateway's condition. An end the gateway made because it stopped or restarted (its previous
// run was killed) says nothing about the condition: it must not read like a resolved one.
function condition(a) {
  if (a.condition !== "end") return { text: a.condition, unknown: false };
  if (!a.end_reason || a.end_reason === "cleared") return { text: "end (cleared)", unknown: false };
  return { text: `${a.end_reason}: not seen to clear`, unknown: true };
}
const conditionHtml = (a) => { const c = condition(a); return c.unknown ? `<span class="unknown-end">${esc(c.text)}</span>` : esc(c.text); };

// Why a camera or sensor cannot be read (an outage's cause, a camera state's last_error_cause), in
// words: whom to send is the room's first question (the network's people, whoever changed the
// password, whoever changes the sensor's battery).
const kCauseWords = {
  unauthorized: "refused the user or password", not_found: "no stream at that address",
  unreachable: "cannot be reached", no_video: "connects, but sends no video", stalled: "its stream stopped",
  dropped: "dropped the connection", ended: "its recording ended", error: "fails to be read",
  no_answer: "its unit does not answer", silent: "sends nothing",
};
const causeWords = (kind) => (Object.hasOwn(kCauseWords, kind) ? kCauseWords[kind] : String(kind));

// Every request on its way is known with its start, so the badge can tell when answers stopped coming.
async function api(path, options = {}, withResponse = false) {
  const request = { started: Date.now() };
  state.inFlight.add(request);
  try {
    const r = await fetch(path, Object.assign({ credentials: "same-origin" }, options));
    if (r.status === 401 && path !== "/api/login") { showLogin(); throw new Error("signed out"); }
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(body.error || r.statusText);
    return withResponse ? { body, response: r } : body;
  } finally { state.inFlight.delete(request); }
}
// The most rows the list asks for. Past it the page says how many it does not show, so a room
// with more alerts than that never takes the list for all of them.
const kListLimit = 1000;
const post = (path, body) => api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body || {}) });

function showLogin() {
  $("#login").classList.remove("hidden"); $("#app").classList.add("hidden"); $("#logout").classList.add("hidden");
  $("#who").textContent = "";
  state.signedIn = false;
  state.room = null; showRoom();
  closeStream();
}
function showApp(name) {
  $("#login").classList.add("hidden"); $("#app").classList.remove("hidden"); $("#logout").classList.remove("hidden");
  $("#who").textContent = name;
  state.signedIn = true;
  connectStream();
}
// "live" only while the stream is open and no answer has been awaited for longer than this: a page
// whose requests wait for a connection (the browser's are all taken) shows nothing new, whatever
// events its stream still brings.
const kStalledMs = 5000;
function showLive() {
  const e = $("#live");
  const open = !!state.stream && state.stream.readyState === EventSource.OPEN;
  const now = Date.now();
  const stalled = [...state.inFlight].some((r) => now - r.started > kStalledMs);
  const live = open && !stalled;
  e.textContent = live ? "live" : !state.signedIn ? "offline" : document.hidden ? "paused" : open ? "stalled" : "offline";
  e.title = live ? "" : open ? `an answer from the room has been awaited for over ${kStalledMs / 1000} s` : "";
  e.classList.toggle("on", live);
}
setInterval(showLive, 1000);

// Live updates: the stream says what changed, the page reloads just that list (coalesced). A site's
// row comes with its event: a city's room changes hundreds of sites a second, and refetching every
// site for each of them held the room's store for nothing anyone could see.
function schedule(kind) {
  state.pending.add(kind);
  if (state.timer) return;
  state.timer = setTimeout(() => {
    const kinds = state.pending; state.pending = new Set(); state.timer = null;
    if (kinds.has("alerts")) refreshAlerts();
    if (kinds.has("sites")) refreshSites();
    else if (kinds.has("rows")) renderSites();
    if (kinds.has("charts")) refreshCharts();
  }, 150);
}
function connectStream() {
  if (state.stream || !state.signedIn || document.hidden) return;
  const es = new EventSource("/api/stream");
  state.stream = es;
  es.onopen = () => { showLive(); refreshAll(); };
  es.onerror = () => {
    showLive();
    if (es.readyState === EventSource.CLOSED) {  // refused (signed out?) rather than interrupted
      state.stream = null;
      setTimeout(() => api("/api/me").then(() => connectStream()).catch(() => {}), 3000);
    }
  };
  es.addEventListener("alert", (e) => {
    const a = JSON.parse(e.data);
    scheduleList();  // its site's open count comes as a "site" event
    if (a.id === state.selected) scheduleDetail();
  });
  // The rows of the sites that changed, at most once a second.
  es.addEventListener("sites", (e) => {
    const rows = JSON.parse(e.data).rows || [];
    for (const row of rows) laySiteRow(state.sites, row);
    // A list being fetched is older than these rows: they are laid over it when it comes.
    for (const f of state.siteFetches) f.rows.push(...rows);
    schedule("rows");
  });
  es.addEventListener("rollup", (e) => { if (JSON.parse(e.data).site === $("#s-site").value) schedule("charts"); });
}

function closeStream() {
  if (state.stream) { state.stream.close(); state.stream = null; }
  showLive();
}

// A tab nobody sees holds no stream. Chromium opens at most 6 HTTP/1.1 connections to one host for
// all its tabs (the room speaks HTTP/1.1 only), and a stream holds one for good: with a tab per
// notification link, the 6th tab never got a connection, and the first, its requests waiting for
// one, stopped updating while it still said "live". So a tab closes its stream when hidden, left
// (pagehide) or frozen, and connects again when shown, reloading everything (onopen): a hidden tab
// shows nothing anyway. Sharing one stream between the tabs (BroadcastChannel) would hold one
// connection for any number of them, visible or not, but needs one tab chosen to hold it and
// another to take over when that one is closed, hidden or frozen (a frozen holder starves every
// other tab without an error): more to get wrong than reconnecting when shown. What this leaves:
// six or more windows on one room visible at once still exceed the limit; the badge then says
// "stalled" or "offline", not "live".
function resumeStream() { if (!document.hidden) connectStream(); }
document.addEventListener("visibilitychange", () => (document.hidden ? closeStream() : resumeStream()));
window.addEventListener("pagehide", closeStream);
window.addEventListener("pageshow", resumeStream);  // back from the back/forward cache
document.addEventListener("freeze", closeStream);
document.addEventListener("resume", resumeStream);

function refreshAll() { refreshRoom(); refreshSites(); refreshAlerts(); refreshChecks(); refreshDetail(); refreshCharts(); }

// The room's own link to the broker (/api/me, every 5 s while shown). While it is down nothing comes
// from any site: the page says so above everything and shows no site's state as known, where it
// showed every canteen going silent. Once it is back the list is read again: the states are judged
// anew as the sites' retained states come.
const kRoomEveryMs = 5000;
const clock = (iso) => new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
function showRoom() {
  const b = state.room, banner = $("#room-banner"), note = $("#room-note");
  const down = !!b && !b.connected;
  banner.classList.toggle("hidden", !down);
  banner.innerHTML = !down ? "" : `The room is not connected to the broker since ${esc(clock(b.since))}: the sites' states are not known.` +
    (b.last_error ? ` <span class="detail">Last error: ${esc(b.last_error)}${b.last_error_at ? ` (${esc(when(b.last_error_at))})` : ""}</span>` : "");
  note.textContent = b && b.connected && b.settling_until ? `connected at ${clock(b.since)}: sites' states coming in` : "";
  note.title = b && b.settling_until ? `a site not heard from since is judged silent from ${when(b.settling_until)}` : "";
}
async function refreshRoom() {
  if (!state.signedIn || document.hidden) return;
  let me;
  try { me = await api("/api/me"); } catch (e) { return; }
  const before = state.room;
  state.room = me.broker || null;
  showRoom();
  if (!before || !state.room) return;
  if (before.connected !== state.room.connected || before.since !== state.room.since) { renderSites(); readSiteListAgain(); }
}
setInterval(refreshRoom, kRoomEveryMs);

function fillSelect(sel, values, keepFirst) {
  const current = sel.value;
  const first = keepFirst ? sel.options[0].outerHTML : "";
  sel.innerHTML = first + values.map((v) => `<option value="${esc(v)}">${esc(v)}</option>`).join("");
  if ([...sel.options].some((o) => o.value === current)) sel.value = current;
}

async function refreshChecks() {
  try { fillSelect($("#f-check"), await api("/api/checks"), true); } catch (e) {}
}

// What the room is missing of the site's numbered stream (null: its gateway does not number them).
function messages(s) {
  if (s.missing_messages == null) return `<span class="muted">not numbered</span>`;
  const parts = [];
  if (s.missing_messages) parts.push(`<span class="state-silent">${s.missing_messages} missing</span>`);
  if (s.lost_messages) parts.push(`<span class="flag">${s.lost_messages} lost</span>`);
  return parts.join("<br>") || "all received";
}

// The whole list: when the stream connects (rows may have been missed meanwhile) and every 20 s, so
// two fetches may be on their way at once. Each answer is shown unless one of a fetch started later
// already is (then it is the older), with the rows that came over the stream while it was on its way
// laid over it: an answer is not held back for a later fetch that may fail, and no row is lost to it.
async function refreshSites() {
  const fetching = { started: ++state.siteFetchesStarted, rows: [] };
  state.siteFetches.add(fetching);
  let sites;
  try { sites = await api("/api/sites"); } catch (e) { return; } finally { state.siteFetches.delete(fetching); }
  if (fetching.started < state.sitesShown) return;
  state.sitesShown = fetching.started;
  state.sites = new Map(sites.map((s) => [s.site, s]));
  for (const row of fetching.rows) laySiteRow(state.sites, row);
  renderSites();
}
// A row from the stream: a site's new state, or {site, removed} for one an operator retired.
function laySiteRow(sites, row) {
  if (row.removed) sites.delete(row.site);
  else sites.set(row.site, row);
}

// A site's state as shown. While the room is not connected a row read before says what the room knew
// then: shown as not known, with that as its last state.
function siteState(s) {
  const deaf = !!state.room && !state.room.connected;
  const shown = deaf ? "unknown" : s.state;
  const last = deaf ? (s.last_state || s.state) : s.last_state;
  const lines = [];
  if (shown === "unknown" && last && last !== "unknown") lines.push(`last: ${last}`);
  if (!deaf && s.state === "online" && s.state_note) lines.push("not heard from since the room connected");
  const note = deaf && !s.state_note ? "the room is not connected to the broker: the site's state is not known" : (s.state_note || "");
  return `<td class="state state-${esc(shown)}" title="${esc(note)}">${esc(shown)}` +
    lines.map((l) => `<div class="muted">${esc(l)}</div>`).join("") + "</td>";
}
// Only a site that is offline or silent can be retired (the room says why not otherwise), and not
// while the room cannot hear any.
function retireButton(s) {
  const deaf = !!state.room && !state.room.connected;
  return !deaf && ["offline", "silent", "unknown"].includes(s.state)
    ? `<button class="retire" data-site="${esc(s.site)}" title="stop watching this site: decommissioned or renamed">Retire</button>` : "";
}

function renderSites() {
  const sites = [...state.sites.values()].sort((a, b) => (a.site < b.site ? -1 : a.site > b.site ? 1 : 0));
  $("#sites").innerHTML = sites.map((s) => {
    const cams = s.cameras || [];
    const online = cams.filter((c) => c.online).length;
    // Which are not, and why as far as their gateway knows.
    // A failure from before the camera's last frame is not why it is down now (a camera that was
    // streaming when its gateway stopped): only one since.
    const down = cams.filter((c) => !c.online).map((c) => {
      const why = c.last_error_cause && c.last_error_time && (!c.last_frame_time || c.last_error_time >= c.last_frame_time);
      return `<div class="muted">${esc(c.camera)}${why ? `: ${esc(causeWords(c.last_error_cause))}` : ""}</div>`;
    }).join("");
    const age = s.heartbeat_age_s == null ? "never" : `${when(s.last_seen)} (${Math.round(s.heartbeat_age_s)} s ago)`;
    const sensors = (s.sensors || []).map((x) => `${esc(x.sensor)}: ${x.value == null ? "-" : esc(x.value)} ${esc(x.unit || "")}`).join("<br>");
    // What its gateway warned of its own configuration: settings that cannot work as meant are
    // mostly silent (an alert that never comes), so the room is told, not only the box's log.
    const warnings = (s.config_warnings || []).map((w) => `<div class="config-warning">configuration: ${esc(w)}</div>`).join("");
    return `<tr data-site="${esc(s.site)}"><td>${esc(s.site)}<div class="muted">${esc(s.name || "")}</div>${warnings}</td>` +
      `${siteState(s)}<td>${esc(age)}</td>` +
      `<td>${online} / ${cams.length}${down}</td><td class="muted">${sensors}</td>` +
      `<td>${s.open_alerts}${s.open_tier1 ? ` <span class="flag">(${s.open_tier1} tier 1)</span>` : ""}</td>` +
      `<td class="messages">${messages(s)}</td><td>${retireButton(s)}</td></tr>`;
  }).join("") || `<tr><td colspan="8" class="muted">No site has reported yet.</td></tr>`;
  const ids = sites.map((s) => s.site);
  // Refilled only when a site came or went: an open drop-down would close at every live update.
  if (ids.join("\n") === state.siteIds) return;
  state.siteIds = ids.join("\n");
  fillSelect($("#f-site"), ids, true);
  const sensorSel = $("#s-site"); const before = sensorSel.value;
  fillSelect(sensorSel, ids, false);
  if (sensorSel.value !== before) refreshCharts();
}

function alertQuery() {
  const q = new URLSearchParams();
  for (const [key, id] of [["site", "#f-site"], ["check", "#f-check"], ["severity", "#f-severity"], ["status", "#f-status"]])
    if ($(id).value) q.set(key, $(id).value);
  q.set("limit", kListLimit);
  return String(q);
}

// The list is fetched at every alert event (coalesced), filter change, action and refresh, so several
// fetches may be on their way, and on a slow link their answers come in any order: an unfiltered
// answer coming last drew 100 sites' rows under a filter showing one. An answer is drawn only if no
// later-started fetch's answer was drawn already, and only if it was asked with the filters chosen
// now (as refreshSites: an answer is not held back for a later fetch that may fail).
async function refreshAlerts() {
  const started = ++state.alertFetchesStarted;
  const query = alertQuery();
  let alerts, total;
  try {
    const { body, response } = await api("/api/alerts?" + query, {}, true);
    alerts = body; total = Number(response.headers.get("X-Total-Count") ?? body.length);
  } catch (e) { return; }
  if (started < state.alertsShown) return;
  // Filters changed with no change event (a site's option refilled away): the newest asks again.
  if (query !== alertQuery()) { if (started === state.alertFetchesStarted) schedule("alerts"); return; }
  state.alertsShown = started;
  const hidden = total - alerts.length;
  $("#alert-count").innerHTML = hidden > 0
    ? `(${alerts.length} shown, <span class="flag">${total} in all</span>)` : `(${alerts.length})`;
  $("#alerts").innerHTML = alerts.map((a) => {
    const where = esc(a.camera || a.sensor || "");
    const what = `${esc(a.check)} / ${esc(a.label)}${a.value != null ? ` ${esc(a.value)} ${esc(a.unit || "")}` : ""}` +
      (a.cause ? ` <span class="cause">(${esc(causeWords(a.cause.kind))})</span>` : "") +
      (a.windows_missed > 1 ? ` <span class="windows">(${esc(a.windows_missed)} windows missed)</span>` : "");
    const overdue = a.overdue ? ` <span class="flag">OVERDUE (${esc(a.overdue_reason)})</span>` : "";
    const ack = a.status === "open" ? `<button class="ack" data-id="${esc(a.id)}">Acknowledge</button>` : "";
    return `<tr class="alert${a.overdue ? " overdue" : ""}${a.id === state.selected ? " selected" : ""}" data-id="${esc(a.id)}">` +
      `<td><span class="sev sev${a.severity}">${a.severity}</span></td><td>${esc(a.site)}</td><td>${where}</td><td>${what}</td>` +
      `<td>${esc(when(a.start_time))}</td><td class="condition">${conditionHtml(a)}</td><td class="status">${esc(a.status)}${overdue}</td><td>${ack}</td></tr>`;
  }).join("") + (hidden > 0 ? `<tr id="alerts-more"><td colspan="8" class="flag">${hidden} more, less urgent or older,` +
    ` not shown: narrow the filters (site, check, severity).</td></tr>` : "") ||
    `<tr><td colspan="8" class="muted">No alerts.</td></tr>`;
}

// The list, for the stream's alert events: a city's room has alerts changing several times a second,
// and every dashboard fetched its list at each (coalesced to one every 150 ms, ~6 a second). At most
// one a second now, 150 ms after the first event of a quiet spell, the last after the last event;
// filters, actions and refreshes still fetch at once.
const kListEveryMs = 1000;
function scheduleList() {
  const l = state.list;
  if (l.timer) return;
  l.timer = setTimeout(() => { l.timer = null; l.last = Date.now(); refreshAlerts(); },
    Math.max(150, l.last + kListEveryMs - Date.now()));
}

// The selected alert's events come at the rate its site sends them (30 a second seen), and its
// detail with its whole history was fetched and drawn again at each: its refreshes from the stream
// are at most one a second, the last one after the last event, so its last state is shown. One is
// not started while another is on its way.
const kDetailEveryMs = 1000;
function scheduleDetail() {
  const d = state.detail;
  if (d.busy) { d.again = true; return; }
  if (d.timer) return;
  d.timer = setTimeout(() => { d.timer = null; refreshDetail(); }, Math.max(0, d.last + kDetailEveryMs - Date.now()));
}

// As the list: an answer is drawn only for the alert selected now, and only if no later-started
// fetch's answer was drawn already.
async function refreshDetail() {
  const id = state.selected;
  if (!id) return;
  const started = ++state.detailFetchesStarted;
  const d = state.detail;
  d.busy++; d.last = Date.now();
  let a;
  try { a = await api("/api/alerts/" + encodeURIComponent(id)); }
  catch (e) { if (id === state.selected && started > state.detailShown) $("#d-error").textContent = e.message; return; }
  finally { if (--d.busy === 0 && d.again) { d.again = false; scheduleDetail(); } }
  if (id !== state.selected || started < state.detailShown) return;
  state.detailShown = started;
  $("#d-body").classList.remove("hidden");
  $("#d-title").innerHTML = `<span class="sev sev${a.severity}">${a.severity}</span> ${esc(a.site)} &middot; ${esc(a.camera || a.sensor)} &middot; ${esc(a.check)}/${esc(a.label)}`;
  const img = $("#d-snapshot");
  if (a.has_snapshot) { const src = `/api/alerts/${encodeURIComponent(id)}/snapshot.jpg`; if (img.getAttribute("src") !== src) img.src = src; img.classList.remove("hidden"); }
  else { img.removeAttribute("src"); img.classList.add("hidden"); }
  // Only the steps still to do: a closed alert has no deadline left to show.
  const due = [a.status === "open" && a.acknowledge_due && `acknowledge by ${when(a.acknowledge_due)}`,
    a.status !== "closed" && a.close_due && `close by ${when(a.close_due)}`].filter(Boolean).join(", ");
  $("#d-facts").innerHTML = `Status <b>${esc(a.status)}</b>${a.overdue ? ` <span class="flag">OVERDUE (${esc(a.overdue_reason)})</span>` : ""}` +
    `<br>Condition ${conditionHtml(a)} since ${esc(when(a.start_time))}` +
    (!a.end_time ? "" : condition(a).unknown
      ? ` &middot; <span class="unknown-end">${a.end_reason === "outbox replaced" ? "the room" : "the gateway"} ended it at ${esc(when(a.end_time))} because ${a.end_reason === "gateway restarted" ? "it restarted after a crash or kill" : a.end_reason === "camera offline" ? "the camera went offline (its last frame)" : a.end_reason === "check failing" ? "the check failed on every frame (its last good frame)" : a.end_reason === "picture unusable" ? "the camera's picture was black, blank or covered (its last usable frame)" : a.end_reason === "sensor offline" ? "the sensor went silent (its last reading)" : a.end_reason === "sensor invalid" ? "the sensor read only impossible values (its last good reading)" : a.end_reason === "schedule ended" ? "its rule's schedule ended (outside it the condition is not judged)" : a.end_reason === "outbox replaced" ? "the gateway's outbox was replaced (a damaged file moved aside), and the end it held will not come" : "it stopped"}; whether the condition cleared is not known: check on site</span>`
      : `, ended ${esc(when(a.end_time))}`) +
    (a.cause ? `<br>Cause <b class="cause">${esc(causeWords(a.cause.kind))}</b>: ${esc(a.cause.text)}` : "") +
    (a.windows_missed ? `<br>Windows missed <b class="windows">${esc(a.windows_missed)}</b> (each window of the cabinet's schedule that ended without a complete cycle since it started)` : "") +
    `<br>Received ${esc(when(a.received_at))}${due ? ` &middot; ${esc(due)}` : ""}` +
    (a.clip && a.clip.path ? `<br>Clip at the site: ${esc(a.clip.path)} (${esc(a.clip.duration_s)} s)` : "");
  $("#d-actions").innerHTML = a.actions.map((x) =>
    `<li>${esc(when(x.time))} <b>${esc(x.operator)}</b> ${esc(x.action)} &rarr; ${esc(x.status)}${x.note ? `: ${esc(x.note)}` : ""}` +
    ` <span class="muted">${x.published_at ? "sent to site" : "sending..."}</span></li>`).join("") || `<li class="muted">Nobody has handled it yet.</li>`;
  const history = a.history.map((m) =>
    `<li>${esc(when(m.time))} ${esc(m.state)}${m.end_reason ? ` (${esc(m.end_reason)})` : ""}${m.cause ? ` [${esc(causeWords(m.cause.kind))}]` : ""}${m.windows_missed ? ` [${esc(m.windows_missed)} window${m.windows_missed > 1 ? "s" : ""} missed]` : ""} <span class="muted">score ${esc(Number(m.score).toFixed(2))}, received ${esc(when(m.received_at))}</span></li>`);
  // The room sends a long history's first and last messages only: say what is between them.
  if (a.history_total > a.history.length)
    history.splice(a.history.length / 2, 0, `<li class="muted">&hellip; ${esc(a.history_total - a.history.length)} more messages not shown &hellip;</li>`);
  $("#d-history").innerHTML = history.join("");
  $("#d-ack").disabled = a.status !== "open";
  $("#d-close").disabled = a.status !== "acknowledged";
}

async function act(id, action, note) {
  $("#d-error").textContent = "";
  try { await post(`/api/alerts/${encodeURIComponent(id)}/${action}`, { note: note || "" }); }
  catch (e) { $("#d-error").textContent = `${action}: ${e.message}`; return false; }
  refreshAlerts(); if (id === state.selected) refreshDetail();
  return true;
}

// Sensor curves: one SVG per sensor, the minute band (min..max) and the mean, over the
// operator's local day.
async function refreshCharts() {
  const site = $("#s-site").value;
  const box = $("#charts");
  if (!site) { box.innerHTML = `<p class="muted">No readings.</p>`; return; }
  const from = new Date(); from.setHours(0, 0, 0, 0);
  const to = new Date(from.getTime() + 86400000);
  let data;
  try { data = await api(`/api/sites/${encodeURIComponent(site)}/rollups?from=${from.toISOString()}&to=${to.toISOString()}`); } catch (e) { return; }
  if (!data.sensors.length) { box.innerHTML = `<p class="muted">No readings today.</p>`; return; }
  const W = 600, H = 170, L = 40, R = 10, T = 10, B = 20;
  box.innerHTML = data.sensors.map((s) => {
    const pts = s.points;
    let lo = Math.min(...pts.map((p) => p.min)), hi = Math.max(...pts.map((p) => p.max));
    if (hi - lo < 1e-9) { lo -= 1; hi += 1; }
    const x = (iso) => L + (W - L - R) * (new Date(iso) - from) / 86400000;
    const y = (v) => T + (H - T - B) * (hi - v) / (hi - lo);
    const band = pts.map((p) => `${x(p.minute).toFixed(1)},${y(p.max).toFixed(1)}`).concat(
      pts.slice().reverse().map((p) => `${x(p.minute).toFixed(1)},${y(p.min).toFixed(1)}`)).join(" ");
    const mean = pts.map((p) => `${x(p.minute).toFixed(1)},${y(p.mean).toFixed(1)}`).join(" ");
    const ticks = [0, 6, 12, 18, 24].map((h) => { const tx = L + (W - L - R) * h / 24;
      return `<line x1="${tx}" y1="${T}" x2="${tx}" y2="${H - B}" stroke="#e0e0e0"/><text x="${tx}" y="${H - 5}" font-size="10" text-anchor="middle">${h}:00</text>`; }).join("");
    const last = pts[pts.length - 1];
    return `<div class="chart-block" data-sensor="${esc(s.sensor)}"><b>${esc(s.sensor)}</b> <span class="muted">last ${esc(last.mean.toFixed(1))} ${esc(s.unit)}, ${pts.length} minutes</span>` +
      `<svg class="chart" viewBox="0 0 ${W} ${H}" preserveAspectRatio="none">${ticks}` +
      `<text x="2" y="${T + 8}" font-size="10">${esc(hi.toFixed(1))}</text><text x="2" y="${H - B}" font-size="10">${esc(lo.toFixed(1))}</text>` +
      `<polygon points="${band}" fill="#90caf9" fill-opacity="0.5" stroke="none"/>` +
      `<polyline points="${mean}" fill="none" stroke="#1565c0" stroke-width="1.5"/>` +
      (pts.length === 1 ? `<circle cx="${x(last.minute)}" cy="${y(last.mean)}" r="3" fill="#1565c0"/>` : "") + `</svg></div>`;
  }).join("");
}

$("#alerts").addEventListener("click", (e) => {
  const btn = e.target.closest("button.ack");
  if (btn) { e.stopPropagation(); act(btn.dataset.id, "acknowledge", ""); return; }
  const row = e.target.closest("tr.alert");
  if (!row) return;
  state.selected = row.dataset.id;
  // The address names the alert, so it can be passed on (notifications link to it the same way).
  history.replaceState(null, "", "#alert=" + encodeURIComponent(state.selected));
  document.querySelectorAll("tr.alert").forEach((r) => r.classList.toggle("selected", r.dataset.id === state.selected));
  $("#d-note").value = ""; $("#d-error").textContent = "";
  refreshDetail();
});
// Retiring a site (decommissioned, renamed) closes its open alerts in the operator's name and takes it
// out of the room: asked once more, with what it does, before it is done.
async function retire(site) {
  const s = state.sites.get(site) || {};
  const question = `Retire site ${site}${s.name ? ` (${s.name})` : ""}?\n\n` +
    `Its ${s.open_alerts || 0} open alert(s) will be closed in your name, its cameras and sensors forgotten, ` +
    `and it leaves the list of sites. If it publishes again, it comes back as a new site.`;
  if (!window.confirm(question)) return;
  $("#sites-error").textContent = "";
  try { await post(`/api/sites/${encodeURIComponent(site)}/retire`, {}); }
  catch (e) { $("#sites-error").textContent = `retire ${site}: ${e.message}`; return; }
  state.sites.delete(site);
  renderSites(); readSiteListAgain(); refreshAlerts();
}
function readSiteListAgain() { schedule("sites"); }
$("#sites").addEventListener("click", (e) => {
  const btn = e.target.closest("button.retire");
  if (btn) retire(btn.dataset.site);
});
$("#d-ack").addEventListener("click", () => act(state.selected, "acknowledge", $("#d-note").value));
$("#d-close").addEventListener("click", async () => { if (await act(state.selected, "close", $("#d-note").value)) $("#d-note").value = ""; });
$("#d-addnote").addEventListener("click", async () => { if (await act(state.selected, "note", $("#d-note").value)) $("#d-note").value = ""; });
for (const id of ["#f-site", "#f-check", "#f-severity", "#f-status"]) $(id).addEventListener("change", refreshAlerts);
$("#s-site").addEventListener("change", refreshCharts);
$("#login-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("#login-error").textContent = "";
  try {
    const me = await post("/api/login", { operator: $("#login-operator").value, password: $("#login-password").value });
    $("#login-password").value = "";
    showApp(me.operator);
  } catch (err) { $("#login-error").textContent = err.message; }
});
$("#logout").addEventListener("click", async () => { try { await post("/api/logout"); } catch (e) {} showLogin(); });
// Deadlines pass and heartbeats age without any message: re-read both now and then.
setInterval(() => { if (state.stream) { schedule("alerts"); schedule("sites"); } }, 20000);

// A link to one alert (#alert=<id>, from a notification) opens it once signed in.
const linkedAlert = () => new URLSearchParams(location.hash.slice(1)).get("alert");
if (linkedAlert()) state.selected = linkedAlert();
// A second link opened in this tab changes only the fragment: no page load, so follow it here.
window.addEventListener("hashchange", () => {
  const id = linkedAlert();
  if (!id || id === state.selected) return;
  state.selected = id;
  document.querySelectorAll("tr.alert").forEach((r) => r.classList.toggle("selected", r.dataset.id === id));
  refreshDetail();
});
api("/api/me").then((me) => showApp(me.operator)).catch(() => showLogin());
</script>
</body>
</html>
)HTML";
    return page;
}

}  // namespace kg::monitor
