// The gslbd status page. Polls GET /status every 2 s and draws the map, the tables and the
// recent changes from it; runs GET /explain for the explain form; sets admin states with
// PUT /datacenters/{name}/admin after asking for the API token (kept in sessionStorage, so it
// lives as long as the tab) and a confirmation. Everything is built with DOM calls and
// textContent: nothing from the server is ever parsed as HTML.
"use strict";

const POLL_MS = 2000;
const TOKEN_KEY = "gslbd-api-token";

// State id (from /status) -> label and icon, so the state never rests on colour alone.
const STATES = {
  "up": { label: "up", icon: "\u2714" },
  "down": { label: "down", icon: "\u2716" },
  "drain": { label: "drained", icon: "\u2016" },
  "admin-down": { label: "admin down", icon: "\u2298" },
  "forced-up": { label: "forced up", icon: "\u2691" },
  "slow-start": { label: "slow start", icon: "\u2197" },
  "stale": { label: "stale", icon: "?" },
};
const ACTIONS = {
  obey: "follow the probes again",
  up: "count as up whatever the probes say",
  down: "never be answered (unless every datacenter is down and the name fails open)",
  drain: "get no new answers from now on; the page shows when the last ones expire",
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("data-") || k.startsWith("aria-") || k === "title" || k === "type" || k === "role") e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function stateBadge(state) {
  const s = STATES[state] || { label: state, icon: "?" };
  return el("span", { class: "badge st-" + state, "data-state": state },
    el("span", { class: "icon", "aria-hidden": "true", text: s.icon }), " " + s.label);
}

const fmtMs = (v) => (v === null || v === undefined ? "\u2013" : v < 10 ? v.toFixed(1) + " ms" : Math.round(v) + " ms");
const fmtLoad = (v) => (v === null || v === undefined ? "\u2013" : Math.round(v * 100) + " %");
const fmtTime = (unixMs) => new Date(unixMs).toLocaleTimeString();
function fmtAgo(ms) {
  const s = Math.round(ms / 1000);
  if (s < 60) return s + " s ago";
  if (s < 3600) return Math.floor(s / 60) + " min ago";
  return Math.floor(s / 3600) + " h ago";
}
function fmtDuration(secs) {
  if (secs < 120) return secs + " s";
  if (secs < 7200) return Math.floor(secs / 60) + " min";
  if (secs < 172800) return Math.floor(secs / 3600) + " h";
  return Math.floor(secs / 86400) + " days";
}

// ---- map ---------------------------------------------------------------------------------

// The same equirectangular projection as tools/world-map/convert.mjs, in percent of the map.
const mapX = (lon) => ((lon + 180) / 360) * 100;
const mapY = (lat) => ((90 - lat) / 150) * 100;

let last = null; // the last /status

function tipText(d) {
  const s = STATES[d.state] || { label: d.state };
  return [
    d.name + ": " + s.label,
    "load " + fmtLoad(d.load) + ", latency " + fmtMs(d.latency_ms),
    d.deciding,
  ];
}

function showTip(marker, d) {
  const tip = $("tip");
  tip.replaceChildren(...tipText(d).map((t, i) => el(i ? "div" : "strong", { text: t })));
  tip.hidden = false;
  const map = $("map").getBoundingClientRect();
  const m = marker.getBoundingClientRect();
  const w = Math.min(260, map.width - 8);
  tip.style.width = w + "px";
  let left = m.left - map.left + m.width / 2 - w / 2;
  left = Math.max(4, Math.min(map.width - w - 4, left));
  tip.style.left = left + "px";
  tip.style.top = m.bottom - map.top + 4 + "px";
  tip.dataset.dc = d.name;
}

function hideTip() {
  $("tip").hidden = true;
  $("tip").dataset.dc = "";
}

function drawMap(dcs) {
  const box = $("markers");
  const openTip = $("tip").hidden ? "" : $("tip").dataset.dc;
  box.replaceChildren();
  const placed = [];
  for (const d of dcs) {
    if (!d.location) continue;
    const s = STATES[d.state] || { label: d.state, icon: "?" };
    const label = el("span", { class: "label", text: d.name + " " + s.icon });
    const m = el("button", {
      type: "button",
      class: "marker st-" + d.state,
      "data-dc": d.name,
      "data-state": d.state,
      "data-lat": d.location.lat,
      "data-lon": d.location.lon,
      "aria-label": d.name + ": " + s.label + ", load " + fmtLoad(d.load) + ", latency " + fmtMs(d.latency_ms),
    }, el("span", { class: "dot", "aria-hidden": "true" }), label);
    m.style.left = mapX(d.location.lon) + "%";
    // Near the right edge the label goes to the left of the dot, so the map does not cut it.
    if (mapX(d.location.lon) > 80) m.classList.add("flip");
    m.style.top = mapY(d.location.lat) + "%";
    m.addEventListener("mouseenter", () => showTip(m, d));
    m.addEventListener("mouseleave", hideTip);
    m.addEventListener("focus", () => showTip(m, d));
    m.addEventListener("blur", hideTip);
    // A tap shows the details (a hover already may have); a tap elsewhere hides them.
    m.addEventListener("click", (e) => {
      e.stopPropagation();
      showTip(m, d);
    });
    box.append(m);
    placed.push({ m, label });
    if (openTip === d.name) showTip(m, d);
  }
  // Nearby datacenters (fra, ams, lhr) would print their labels over each other: move a label
  // down until it overlaps no earlier one.
  const rects = [];
  for (const { label } of placed) {
    let r = label.getBoundingClientRect();
    let shift = 0;
    for (let i = 0; i < 8 && rects.some((o) => overlaps(o, r)); i++) {
      shift += r.height;
      label.style.top = shift + "px";
      r = label.getBoundingClientRect();
    }
    rects.push(r);
  }
}

const overlaps = (a, b) => a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;

function drawLegend() {
  $("legend").replaceChildren(...Object.keys(STATES).map((k) => el("li", {}, stateBadge(k))));
}

// ---- tables --------------------------------------------------------------------------------

function cell(label, ...content) {
  return el("td", { "data-label": label }, ...content);
}

function targetLine(t) {
  const result = !t.probed ? (t.warm ? "saved state" : "not probed yet") : t.last_reason || t.last_result || "";
  return el("li", { class: t.up ? "t-up" : "t-down" },
    el("span", { class: "icon", "aria-hidden": "true", text: t.up ? "\u2714" : "\u2716" }),
    " " + t.addr + " " + (t.up ? "up" : "down") + ": " + result +
    (t.last_latency_ms !== null && t.last_latency_ms !== undefined ? ", " + fmtMs(t.last_latency_ms) : "") +
    (t.last_ms_ago !== null && t.last_ms_ago !== undefined ? " (" + fmtAgo(t.last_ms_ago) + ")" : ""));
}

function drainText(d) {
  if (!d.drain) return "\u2013";
  if (d.drain.complete) return "complete since " + fmtTime(d.drain.complete_unix * 1000);
  const left = Math.max(0, Math.ceil((d.drain.max_ttl_secs * 1000 - d.drain.started_ms_ago) / 1000));
  return "draining: complete in " + left + " s";
}

function drawDatacenters(dcs) {
  const rows = dcs.map((d) => {
    const buttons = ["obey", "up", "down", "drain"].map((a) =>
      el("button", {
        type: "button",
        class: "act" + (d.admin === a ? " current" : ""),
        "data-dc": d.name,
        "data-action": a,
        "aria-pressed": d.admin === a ? "true" : "false",
        text: a,
      }));
    const addrs = d.targets.length
      ? el("ul", { class: "targets" }, d.targets.map(targetLine))
      : el("span", { text: (d.addresses || []).join(", ") + " (no check)" });
    // A hostname datacenter: its target and what it resolves to now.
    const where = d.target
      ? el("div", {}, [
          el("div", {
            class: "target-name",
            text: d.target.target + ": " + d.target.state +
              (d.target.age_secs != null ? ", " + d.target.age_secs + " s old" : "") +
              (d.target.error ? " (" + d.target.error + ")" : ""),
          }),
          addrs,
        ])
      : addrs;
    return el("tr", { "data-dc": d.name, "data-state": d.state },
      cell("Datacenter", el("strong", { text: d.name })),
      cell("State", stateBadge(d.state)),
      cell("Deciding input", d.deciding),
      cell("Addresses", where),
      cell("Load", fmtLoad(d.load) + (d.load_error ? " (" + d.load_error + ")" : "")),
      cell("Latency", fmtMs(d.latency_ms)),
      cell("Admin", d.admin),
      cell("Drain", drainText(d)),
      cell("Set admin state", el("div", { class: "acts" }, buttons)));
  });
  $("dcs").tBodies[0].replaceChildren(...rows);
}

function drawNames(names, windowSecs) {
  $("window").textContent = "over the last " + windowSecs + " s";
  const rows = names.map((n) => {
    const pools = n.pools.map((p) => p.name + " (" + p.policy + ": " + p.datacenters.join(", ") +
      (p.fallback ? "; fallback " + p.fallback : "") + ")").join("; ");
    const shares = n.share.filter((s) => s.answers > 0);
    const bar = el("div", { class: "bar", "aria-hidden": "true" }, shares.map((s) => {
      const seg = el("span", { class: "seg" });
      seg.style.width = s.share * 100 + "%";
      return seg;
    }));
    const list = el("ul", { class: "shares" }, n.share.map((s) =>
      el("li", { "data-dc": s.datacenter, "data-answers": s.answers },
        s.datacenter + " " + Math.round(s.share * 100) + " % (" + s.answers + ")")));
    return el("tr", { "data-name": n.name },
      cell("Name", el("strong", { text: n.name })),
      cell("Pools", pools),
      cell("Answers", String(n.answers) + (n.all_down_answers ? ", all down: " + n.all_down_answers : "")),
      cell("Share", n.answers ? bar : null, list));
  });
  $("names").tBodies[0].replaceChildren(...rows);
}

function drawEvents(events) {
  const box = $("events");
  if (!events.length) {
    box.replaceChildren(el("li", { class: "none", text: "No state changes since the probes started." }));
    return;
  }
  box.replaceChildren(...events.slice(0, 30).map((e) =>
    el("li", { "data-dc": e.datacenter, "data-kind": e.kind },
      el("time", { text: fmtTime(e.at_unix_ms), title: fmtAgo(e.ago_ms) }), " ",
      el("strong", { text: e.datacenter }), e.address ? " " + e.address : "", " ",
      e.kind.replace("_", " ") + ": " + e.old + " \u2192 " + e.new, " \u2014 " + e.reason)));
}

function drawConfig(s) {
  const facts = [
    ["Version", s.version],
    ["Up for", fmtDuration(s.uptime_secs)],
    ["Configuration generation", String(s.generation)],
    ["Loaded", new Date(s.loaded_at_unix * 1000).toLocaleString()],
    ["Last reload", (s.last_reload.ok ? "ok" : "FAILED, still serving the previous configuration") +
      " at " + new Date(s.last_reload.at_unix * 1000).toLocaleString()],
    ["Zones", s.zones.map((z) => z.name + " (serial " + z.serial + ")").join(", ")],
    ["Ready", s.ready ? "yes" : "no (probes still running their first round)"],
  ];
  $("config").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
  const errs = s.last_reload.errors || [];
  $("reload-errors").replaceChildren(...(errs.length
    ? [el("p", { class: "error", text: "Errors of the last reload:" }), el("ul", { class: "error" }, errs.map((e) => el("li", { text: e })))]
    : []));
  $("summary").replaceChildren(
    "generation " + s.generation + ", last reload ",
    el("span", { class: s.last_reload.ok ? "ok" : "error", text: s.last_reload.ok ? "\u2714 ok" : "\u2716 failed" }),
    ", up " + fmtDuration(s.uptime_secs));
}

// ---- polling -------------------------------------------------------------------------------

let timer = null;

async function poll() {
  clearTimeout(timer);
  try {
    const r = await fetch("/status", { cache: "no-store" });
    if (!r.ok) throw new Error("HTTP " + r.status);
    const s = await r.json();
    last = s;
    drawMap(s.datacenters);
    drawDatacenters(s.datacenters);
    drawNames(s.names, s.answers_window_secs);
    drawEvents(s.events);
    drawConfig(s);
    $("conn").className = "ok";
    $("conn").textContent = "live, updated " + new Date().toLocaleTimeString();
    document.body.dataset.generation = String(s.health_generation ?? "");
    document.body.dataset.polls = String(Number(document.body.dataset.polls || 0) + 1);
  } catch (e) {
    $("conn").className = "error";
    $("conn").textContent = "cannot reach the server (" + e.message + "); retrying";
  }
  timer = setTimeout(poll, POLL_MS);
}

// ---- admin ---------------------------------------------------------------------------------

let pending = null; // { dc, action }

function askAdmin(dc, action) {
  pending = { dc, action };
  $("admin-question").textContent = "Set " + dc + " to " + action + "? It will " + ACTIONS[action] + ".";
  $("admin-token").value = sessionStorage.getItem(TOKEN_KEY) || "";
  $("admin-error").textContent = "";
  $("admin-confirm").textContent = "Confirm: " + action + " " + dc;
  $("admin-dialog").showModal();
  $("admin-token").focus();
}

async function confirmAdmin(ev) {
  ev.preventDefault();
  if (!pending) return;
  const { dc, action } = pending;
  const token = $("admin-token").value.trim();
  if (!token) {
    $("admin-error").textContent = "The API token is needed to change admin states.";
    return;
  }
  $("admin-confirm").disabled = true;
  try {
    const r = await fetch("/datacenters/" + encodeURIComponent(dc) + "/admin", {
      method: "PUT",
      headers: { "Authorization": "Bearer " + token, "Content-Type": "text/plain" },
      body: action,
    });
    let reason = "";
    try { reason = (await r.json()).error || ""; } catch (_) { /* not JSON */ }
    if (!r.ok) {
      if (r.status === 401 || r.status === 403) sessionStorage.removeItem(TOKEN_KEY);
      $("admin-error").textContent = "Refused (" + r.status + "): " + (reason || r.statusText);
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    $("admin-dialog").close();
    pending = null;
    $("admin-result").textContent = dc + ": admin state set to " + action + ".";
    poll();
  } catch (e) {
    $("admin-error").textContent = "Cannot reach the server: " + e.message;
  } finally {
    $("admin-confirm").disabled = false;
  }
}

// ---- explain -------------------------------------------------------------------------------

async function explain(ev) {
  ev.preventDefault();
  const f = new FormData($("explain-form"));
  const q = new URLSearchParams();
  for (const k of ["name", "type", "client", "ecs"]) {
    const v = String(f.get(k) || "").trim();
    if (v) q.set(k, v);
  }
  $("explain-summary").textContent = "asking\u2026";
  $("explain-text").textContent = "";
  try {
    const r = await fetch("/explain?" + q.toString(), { cache: "no-store" });
    const x = await r.json();
    if (!r.ok) {
      $("explain-summary").className = "error";
      $("explain-summary").textContent = "Refused (" + r.status + "): " + (x.error || r.statusText);
      return;
    }
    $("explain-summary").className = "ok";
    $("explain-summary").textContent = x.outcome + ": " + (x.answer.length ? x.answer.join(", ") : "no addresses") +
      ", TTL " + x.ttl + " s, ECS scope /" + x.ecs_scope;
    $("explain-text").textContent = x.text || JSON.stringify(x, null, 2);
  } catch (e) {
    $("explain-summary").className = "error";
    $("explain-summary").textContent = "Cannot reach the server: " + e.message;
  }
}

// ---- start ---------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  drawLegend();
  $("dcs").addEventListener("click", (e) => {
    const b = e.target.closest("button.act");
    if (b) askAdmin(b.dataset.dc, b.dataset.action);
  });
  $("admin-form").addEventListener("submit", confirmAdmin);
  $("admin-cancel").addEventListener("click", () => { pending = null; $("admin-dialog").close(); });
  $("explain-form").addEventListener("submit", explain);
  document.addEventListener("click", (e) => { if (!e.target.closest(".marker")) hideTip(); });
  window.addEventListener("resize", () => { if (last) drawMap(last.datacenters); });
  poll();
});
