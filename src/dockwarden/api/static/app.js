// dockwarden dashboard: no framework, no build step, no network beyond this daemon.
// Reads /api/v1/* (a bearer token when the listener asks for one), follows the
// event stream with fetch() (so the token goes in a header, never in a URL),
// and asks for the write token once per tab (sessionStorage) when a button needs it.
"use strict";

const TOKEN_KEY = "dockwarden.token";
const FEED_MAX = 200;
const $ = (id) => document.getElementById(id);
let samples = {};
let pendingWrite = null;
let refreshTimer = null;

// ------------------------------------------------------------------ helpers

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else if (k === "text") e.textContent = v;
    else e[k] = v;
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

function bytes(n) {
  if (n === null || n === undefined) return "–";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0, f = n;
  while (f >= 1024 && i < u.length - 1) { f /= 1024; i++; }
  return i === 0 ? `${f} B` : `${f.toFixed(1)} ${u[i]}`;
}

function duration(s) {
  if (s === null || s === undefined) return "–";
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} d`;
}

function clock(ts) { return ts ? ts.slice(11, 19) : ""; }

function token() { return sessionStorage.getItem(TOKEN_KEY); }

function headers(extra) {
  const h = Object.assign({ Accept: "application/json" }, extra || {});
  const t = token();
  if (t) h.Authorization = "Bearer " + t;
  return h;
}

function toast(msg, bad) {
  const t = $("toast");
  t.textContent = msg;
  t.className = "toast show" + (bad ? " bad" : "");
  clearTimeout(t._timer);
  t._timer = setTimeout(() => { t.className = "toast"; }, 4000);
}

async function getJSON(path) {
  const r = await fetch(path, { headers: headers(), cache: "no-store" });
  if (r.status === 401) { askToken("This dashboard's listener needs a token to read."); throw new Error("401"); }
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r.json();
}

// ------------------------------------------------------------------ token

function askToken(why) {
  const d = $("token-dialog");
  if (d.open) return;
  $("token-input").value = "";
  if (why) toast(why);
  d.showModal();
  $("token-input").focus();
}

function setupToken() {
  $("token-button").addEventListener("click", () => askToken());
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const v = $("token-input").value.trim();
    if (v) sessionStorage.setItem(TOKEN_KEY, v);
    $("token-dialog").close();
    updateTokenButton();
    refresh();
    if (pendingWrite) { const p = pendingWrite; pendingWrite = null; p(); }
  });
  $("token-forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    $("token-dialog").close();
    pendingWrite = null;
    updateTokenButton();
  });
  $("token-cancel").addEventListener("click", () => { pendingWrite = null; $("token-dialog").close(); });
  updateTokenButton();
}

function updateTokenButton() {
  $("token-button").textContent = token() ? "token ✓" : "token";
}

async function write(path, label, button) {
  const go = async () => {
    if (button) button.disabled = true;
    try {
      const r = await fetch(path, { method: "POST", headers: headers(), cache: "no-store" });
      const body = await r.json().catch(() => ({}));
      if (r.status === 401 || r.status === 403) {
        if (r.status === 403) toast("this token may only read; give the write token", true);
        sessionStorage.removeItem(TOKEN_KEY);
        updateTokenButton();
        pendingWrite = go;
        askToken();
        return;
      }
      if (!r.ok) { toast(`${label}: ${body.message || body.detail || "HTTP " + r.status}`, true); return; }
      toast(body.message || `${label}: done`);
      refresh();
    } catch (e) {
      toast(`${label}: ${e.message}`, true);
    } finally {
      if (button) button.disabled = false;
    }
  };
  if (!token()) { pendingWrite = go; askToken("Writes need the write token."); return; }
  go();
}

// ------------------------------------------------------------------ sparklines

function spark(points, cls, max) {
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", "0 0 90 24");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("aria-hidden", "true");
  const vals = points.filter((p) => p[1] !== null && p[1] !== undefined);
  if (vals.length >= 2) {
    const t0 = vals[0][0], t1 = vals[vals.length - 1][0];
    const top = Math.max(max || 0, ...vals.map((p) => p[1])) || 1;
    const d = vals.map((p, i) => {
      const x = t1 > t0 ? ((p[0] - t0) / (t1 - t0)) * 88 + 1 : (i / (vals.length - 1)) * 88 + 1;
      const y = 23 - (p[1] / top) * 22;
      return `${i ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)}`;
    }).join(" ");
    const path = document.createElementNS(NS, "path");
    path.setAttribute("d", d);
    path.setAttribute("class", cls);
    svg.append(path);
  }
  return svg;
}

// ------------------------------------------------------------------ render

function renderStatus(st) {
  const sum = $("summary");
  sum.textContent = st.summary;
  sum.className = "summary " + st.summary;
  $("node").textContent = "node " + st.node;
  $("observed").textContent = "observed " + clock(st.observed_at) + " UTC";
  $("engine").textContent = st.engine_ok ? `${st.services.length} services` : "engine unreachable: " + (st.engine_error || "");
  $("services-count").textContent = `(${st.services.filter((s) => s.up).length}/${st.services.length} up)`;
  const box = $("services");
  box.replaceChildren();
  for (const s of st.services) box.append(serviceRow(s));
  if (!st.services.length) box.append(el("p", { class: "empty", text: "no tracked services" }));
  $("untracked").textContent = st.untracked.length
    ? "untracked: " + st.untracked.map((u) => `${u.container} (${u.state})`).join(", ") : "";
  renderDrift(st);
}

function serviceRow(s) {
  const g = s.guard || {};
  const paused = !!g.paused;
  const state = s.state === "running" ? (s.health === "unhealthy" ? "down" : s.health === "starting" ? "starting" : "up")
    : (s.intent === "stopped" ? "stopped" : "down");
  const tags = el("div", { class: "tags" });
  tags.append(el("span", { class: "tag" + (s.intent === "stopped" ? " warn" : ""), text: "intent " + s.intent }));
  tags.append(el("span", { class: "tag", text: "mode " + s.mode }));
  if (s.health) tags.append(el("span", { class: "tag" + (s.health === "healthy" ? " ok" : s.health === "unhealthy" ? " bad" : " warn"), text: s.health }));
  if (paused) tags.append(el("span", { class: "tag warn", text: "paused" }));
  if (s.circuit_open) tags.append(el("span", { class: "tag bad", text: "circuit open" }));
  if (g.attempts) tags.append(el("span", { class: "tag", text: `attempts ${g.attempts}` }));
  const pts = samples[s.name] || [];
  const cpu = el("div", { class: "metric" }, el("span", { class: "label", text: "CPU" }),
    spark(pts.map((p) => [p[0], p[1]]), "spark-cpu", 5),
    el("span", { text: s.cpu_percent === null || s.cpu_percent === undefined ? "–" : s.cpu_percent.toFixed(1) + "%" }));
  const mem = el("div", { class: "metric" }, el("span", { class: "label", text: "mem" }),
    spark(pts.map((p) => [p[0], p[2]]), "spark-mem", 0), el("span", { text: bytes(s.memory_bytes) }));
  const acts = el("div", { class: "actions" });
  const api = `/api/v1/services/${encodeURIComponent(s.name)}/`;
  const btn = (verb, cls) => {
    const b = el("button", { type: "button", class: cls || "", text: verb, "data-verb": verb, "data-service": s.name });
    b.addEventListener("click", () => write(api + verb, `${verb} ${s.name}`, b));
    return b;
  };
  if (s.state === "running") acts.append(btn("stop", "danger")); else acts.append(btn("start"));
  acts.append(paused || s.circuit_open ? btn("resume") : btn("pause"));
  return el("div", { class: "svc", "data-service": s.name, "data-state": s.state },
    el("div", {}, el("div", { class: "name" }, el("span", { class: "dot " + (paused ? "paused" : state) }), s.name),
      el("div", { class: "sub", text: `${s.container} · ${s.state}` + (s.exit_code ? ` (exit ${s.exit_code})` : "") })),
    tags, cpu, mem, acts);
}

function renderDrift(st) {
  const ul = $("drift");
  ul.replaceChildren();
  const recs = {};
  for (const r of st.recommendations) recs[r.subject] = r;
  for (const f of st.findings) {
    const r = recs[f.subject];
    ul.append(el("li", { class: f.priority, "data-subject": f.subject },
      el("span", { class: "prio " + f.priority, text: f.priority }),
      el("div", { class: "grow" }, el("b", { text: `${f.subject} ` }), el("span", { class: "muted", text: f.drift }),
        el("div", { text: f.reason }),
        r ? el("div", { class: "muted", text: `→ ${r.action}: ${r.decision}` }) : null)));
  }
  if (!st.findings.length) ul.append(el("li", { class: "empty", text: "no drift" }));
}

function renderIncidents(doc) {
  const ul = $("incidents");
  ul.replaceChildren();
  for (const i of doc.incidents) {
    const li = el("li", { class: i.priority, "data-incident": String(i.id), "data-state": i.state },
      el("span", { class: "prio " + i.priority, text: i.priority }),
      el("div", { class: "grow" }, el("b", { text: `#${i.id} ${i.subject} ` }), el("span", { class: "muted", text: i.kind }),
        el("div", { text: i.reason }),
        el("div", { class: "muted", text: `${i.state} since ${clock(i.opened_at)} UTC` + (i.flaps ? ` · ${i.flaps} flaps` : "") })));
    if (i.state === "open") {
      const b = el("button", { type: "button", class: "ack", text: "ack", "data-id": String(i.id) });
      b.addEventListener("click", () => write(`/api/v1/incidents/${i.id}/ack`, `ack #${i.id}`, b));
      li.append(b);
    } else {
      li.append(el("span", { class: "tag", text: i.state }));
    }
    ul.append(li);
  }
  if (!doc.incidents.length) ul.append(el("li", { class: "empty", text: "no open incidents" }));
}

function renderStorage(doc) {
  const box = $("storage");
  box.replaceChildren();
  if (!doc.available) { box.append(el("p", { class: "empty", text: doc.reason })); return; }
  const fs = doc.filesystem;
  const kinds = ["images", "containers", "volumes", "build_cache"];
  const names = { images: "images", containers: "writable layers", volumes: "volumes", build_cache: "build cache" };
  if (fs) {
    const bar = el("div", { class: "bar", title: `${fs.path}: ${fs.percent}% used` });
    let docker = 0;
    const seg = (cls, n, label) => {
      const s = el("span", { class: "seg-" + cls, title: `${label}: ${bytes(n)}` });
      s.style.width = `${Math.max(0, (n / fs.total_bytes) * 100)}%`;
      bar.append(s);
    };
    for (const k of kinds) { const n = (doc[k] || {}).bytes || 0; docker += n; seg(k, n, names[k]); }
    seg("other", Math.max(0, fs.used_bytes - docker), "other files");
    seg("free", fs.free_bytes, "free");
    box.append(el("div", { class: "muted", text: `${fs.path} (${fs.fstype || "?"}) ${fs.percent}% used of ${bytes(fs.total_bytes)}` }), bar);
    const legend = el("div", { class: "legend" });
    for (const k of kinds) legend.append(el("span", {}, el("i", { class: "seg-" + k }), `${names[k]} ${bytes((doc[k] || {}).bytes)}`));
    legend.append(el("span", {}, el("i", { class: "seg-other" }), "other"));
    box.append(legend);
  }
  const t = doc.trend;
  if (t) {
    const soon = t.eta_full_s !== null && t.eta_full_s < 86400;
    const growing = t.rate_6h_bytes_per_s !== null || t.rate_24h_bytes_per_s !== null;
    const eta = t.eta_full_s !== null
      ? `full in ${duration(t.eta_full_s)}` + (t.eta_p1_s !== null ? ` · P1 in ${duration(t.eta_p1_s)}` : "")
      : growing ? "not growing toward full" : "no trend yet (samples over 30 min needed)";
    box.append(el("div", { class: "eta" + (soon ? " soon" : ""), text: eta }), el("div", { class: "muted small", text: t.line }));
  }
  const rec = kinds.reduce((a, k) => a + ((doc[k] || {}).reclaimable_bytes || 0), 0);
  box.append(el("div", { class: "muted", text: `reclaimable ${bytes(rec)} · dangling images ${doc.images.dangling_count || 0}` }));
}

function renderPool(doc) {
  const box = $("pool");
  box.replaceChildren();
  if (!doc.configured) { box.append(el("p", { class: "empty", text: "no pool ([pool].image not set)" })); return; }
  const s = doc.status;
  const states = el("div", { class: "pool-states" });
  for (const k of ["healthy", "starting", "unhealthy", "rate_limited", "busy", "available"]) {
    states.append(el("div", { class: "pool-state" }, el("b", { text: String(s[k] || 0) }), k.replace("_", " ")));
  }
  box.append(el("div", { class: "muted", text: `${s.prefix}: ${s.image}, min ${s.min}, max ${s.max}, ${s.dispatches} dispatches` }), states);
}

// ------------------------------------------------------------------ event feed

function feedItem(ev, fresh) {
  const li = el("li", { class: fresh ? "fresh" : "", "data-type": ev.type, "data-service": ev.service || "" },
    el("span", { class: "t", text: clock(ev.ts) }), el("span", { class: "ty " + ev.type, text: ev.type }),
    el("span", { class: "sv", text: ev.service || "" }), el("span", { class: "rs", text: ev.reason || "" }));
  return li;
}

function addEvent(ev, fresh) {
  const feed = $("feed");
  feed.prepend(feedItem(ev, fresh));
  while (feed.children.length > FEED_MAX) feed.lastChild.remove();
}

async function follow(after) {
  let last = after;
  for (;;) {
    try {
      const h = headers(last === null ? { Accept: "text/event-stream" }
        : { Accept: "text/event-stream", "Last-Event-ID": String(last) });
      const r = await fetch("/api/v1/events/stream", { headers: h, cache: "no-store" });
      if (r.status === 401) { askToken("The event stream needs a token."); await sleep(3000); continue; }
      if (!r.ok || !r.body) throw new Error("HTTP " + r.status);
      $("live").className = "live on";
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          let id = null, data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith("id:")) id = parseInt(line.slice(3).trim(), 10);
            else if (line.startsWith("data:")) data += line.slice(5).trim();
          }
          if (data) {
            if (id !== null) last = id;
            addEvent(JSON.parse(data), true);
            scheduleRefresh();
          }
        }
      }
    } catch (e) { /* reconnect below */ }
    $("live").className = "live off";
    await sleep(2000);
  }
}

function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

// ------------------------------------------------------------------ refresh

function scheduleRefresh() {
  if (refreshTimer) return;
  refreshTimer = setTimeout(() => { refreshTimer = null; refresh(); }, 300);
}

async function refresh() {
  try { renderStatus(await getJSON("/api/v1/status")); } catch (e) { /* shown by the token dialog or next try */ }
  try { renderIncidents(await getJSON("/api/v1/incidents")); } catch (e) { /* idem */ }
}

async function refreshSlow() {
  try { samples = (await getJSON("/api/v1/samples")).samples; } catch (e) { /* idem */ }
  try { renderStorage(await getJSON("/api/v1/storage")); } catch (e) { /* idem */ }
  try { renderPool(await getJSON("/api/v1/pool")); } catch (e) { /* idem */ }
}

async function start() {
  setupToken();
  await refreshSlow();
  await refresh();
  let after = null;  // unknown: the stream starts from now
  try {
    const page = await getJSON("/api/v1/events?limit=50");
    for (const ev of page.events) addEvent(ev, false);
    after = page.next_after;
  } catch (e) { /* the stream starts from now */ }
  follow(after);
  setInterval(refresh, 5000);
  setInterval(refreshSlow, 30000);
}

document.addEventListener("DOMContentLoaded", start);
