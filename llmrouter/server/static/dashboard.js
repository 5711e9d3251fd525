// llmrouter dashboard (Apache-2.0, part of llmrouter): polls /v1/stats and draws plain SVG. No framework,
// no CDN; every value is written with textContent, so nothing from the server is parsed as HTML.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const POLL_MS = 5000;
const RECENT_SHOWN = 30;
const state = { window: "1h", timer: null, reportsShown: false };

// --- the API key: #key=... once, then the tab's sessionStorage ---------------------------------
function takeKeyFromHash() {
  const m = location.hash.match(/key=([^&]+)/);
  if (m) {
    sessionStorage.setItem("llmrouter-key", decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
}

async function api(path) {
  const key = sessionStorage.getItem("llmrouter-key");
  const r = await fetch(path, { headers: key ? { authorization: "Bearer " + key } : {} });
  if (r.status === 401) {
    showLogin();
    throw new Error("an API key is needed");
  }
  if (!r.ok) throw new Error(path + ": HTTP " + r.status);
  return r;
}

function showLogin() {
  document.getElementById("login").hidden = false;
  document.getElementById("main").hidden = true;
}

// --- small DOM helpers --------------------------------------------------------------------------
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c instanceof Node ? c : String(c));
  return e;
}

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

const int = (n) => (n || 0).toLocaleString("en-US");
const usd = (n) => ((n || 0) < 0 ? "-$" : "$") + Math.abs(n || 0).toFixed(6);
const routeName = (r) => (r === "-" ? "(no route: a bypass, or failed first)" : r);
const ms = (n) => (n === null || n === undefined ? "–" : n < 10 ? n.toFixed(2) : n.toFixed(0));
const pct = (n) => (n === null || n === undefined ? "–" : n.toFixed(2));

// --- cards --------------------------------------------------------------------------------------
function card(id, label, value, sub, cls) {
  return el("div", { class: "card", id: "card-" + id },
    el("div", { class: "label" }, label),
    el("div", { class: "value " + (cls || ""), "data-k": id }, value),
    el("div", { class: "sub" }, sub || ""));
}

function drawCards(s) {
  const t = s.totals;
  const table = Object.values(s.tables)[0] || {};
  const saved = (v) => (v >= 0 ? "good" : "bad");
  const share = (v, of) => (of > 0 ? Math.round((100 * v) / of) + "% of " + usd(of) : "");
  document.getElementById("cards").replaceChildren(
    card("requests", "Requests", int(t.requests), int(t.answers) + " answered"),
    card("errors", "Errors", int(t.errors), int(t.fallbacks) + " fallbacks", t.errors ? "bad" : ""),
    card("cost", "Spend", usd(t.cost_usd)),
    card("saved-top", "Saved vs all on " + (table.top_route || "the top route"), usd(t.saved_vs_top_usd),
      share(t.saved_vs_top_usd, t.cost_if_top_usd), saved(t.saved_vs_top_usd)),
    table.baseline_route
      ? card("saved-baseline", "Saved vs all on " + table.baseline_route + " (baseline)", usd(t.saved_vs_baseline_usd),
        share(t.saved_vs_baseline_usd, t.cost_if_baseline_usd), saved(t.saved_vs_baseline_usd))
      : card("saved-baseline", "Baseline route", "–", "set [dashboard] baseline_route"),
    card("decision", "Router latency tax", ms(t.decision_ms.p50) + " ms", "p50; p95 " + ms(t.decision_ms.p95) + " ms"),
    card("e2e", "End-to-end", ms(t.e2e_ms.p50) + " ms", "p50; p95 " + ms(t.e2e_ms.p95) + " ms"),
    card("escalations", "Escalations", int(t.escalations), int(t.cap_hits) + " cap hits", t.cap_hits ? "warn" : ""),
    card("feedback", "Feedback", t.feedback.n ? pct(t.feedback.mean) : "–", int(t.feedback.n) + " scores"));
}

// --- charts: horizontal bars and columns, drawn by hand --------------------------------------
function bars(id, items) {
  const box = document.getElementById(id);
  const rows = items.slice(0, 8);
  const max = Math.max(1, ...rows.map((r) => r[1]));
  const h = Math.max(150, rows.length * 18 + 4);
  box.setAttribute("viewBox", `0 0 400 ${h}`);
  box.replaceChildren(...rows.flatMap(([name, v], i) => [
    svg("text", { x: 0, y: i * 18 + 13 }, name),
    svg("rect", { class: "bar", x: 110, y: i * 18 + 3, height: 13, width: Math.max(1, (240 * v) / max) }),
    svg("text", { x: 114 + (240 * v) / max, y: i * 18 + 13 }, int(v)),
  ]));
  if (!rows.length) box.replaceChildren(svg("text", { x: 0, y: 14 }, "no traffic in this window"));
}

function columns(id, bins) {
  const box = document.getElementById(id);
  const max = Math.max(1, ...bins.map((b) => b.n));
  box.setAttribute("viewBox", "0 0 400 150");
  box.replaceChildren(...bins.flatMap((b, i) => {
    const hgt = (110 * b.n) / max;
    return [svg("rect", { class: "bar", x: i * 40 + 4, y: 125 - hgt, width: 32, height: Math.max(hgt, 0.5) }),
      svg("text", { x: i * 40 + 6, y: 140 }, b.from.toFixed(1)),
      svg("text", { x: i * 40 + 6, y: 120 - hgt }, b.n ? int(b.n) : "")];
  }));
}

function latency(id, routes) {
  const box = document.getElementById(id);
  const rows = routes.slice(0, 8);
  const max = Math.max(1, ...rows.map((r) => r.e2e_ms.p95 || 0), ...rows.map((r) => r.decision_ms.p95 || 0));
  const h = Math.max(150, rows.length * 30 + 4);
  box.setAttribute("viewBox", `0 0 400 ${h}`);
  box.replaceChildren(...rows.flatMap((r, i) => {
    const d = ((r.decision_ms.p95 || 0) * 240) / max, e = ((r.e2e_ms.p95 || 0) * 240) / max;
    return [svg("text", { x: 0, y: i * 30 + 14 }, r.route),
      svg("rect", { class: "bar", x: 110, y: i * 30 + 3, height: 11, width: Math.max(d, 0.5) }),
      svg("rect", { class: "bar2", x: 110, y: i * 30 + 15, height: 11, width: Math.max(e, 0.5) }),
      svg("text", { x: 114 + Math.max(d, e), y: i * 30 + 20 }, ms(r.decision_ms.p95) + " / " + ms(r.e2e_ms.p95))];
  }));
}

// --- tables ---------------------------------------------------------------------------------------
function table(id, head, rows, keyName) {
  const thead = el("tr", {}, ...head.map(([, label]) => el("th", {}, label)));
  const body = rows.map((r) => el("tr", { "data-key": r[keyName] === undefined ? "" : String(r[keyName]) },
    ...head.map(([k, , fmt]) => {
      const v = typeof k === "function" ? k(r) : r[k];
      const td = el("td", { "data-k": typeof k === "function" ? "" : k, class: k === "text" ? "text" : "" },
        fmt ? fmt(v) : v === null || v === undefined ? "–" : v);
      if (typeof v === "number") td.setAttribute("data-value", String(v));
      return td;
    })));
  document.getElementById(id).replaceChildren(thead, ...body);
}

const COUNTS = [["requests", "requests", int], ["answers", "answers", int], ["errors", "errors", int]];
const SPEND = [["cost_usd", "spend", usd]];

function drawTables(s) {
  table("routes", [["route", "route", routeName], ...COUNTS, ["escalations", "escalations", int], ["cap_hits", "cap hits", int],
    ["fallbacks", "fallbacks", int], ...SPEND, ["saved_vs_top_usd", "saved vs top", usd],
    ["saved_vs_baseline_usd", "saved vs baseline", usd],
    [(r) => r.decision_ms.p50, "decision p50 ms", ms], [(r) => r.decision_ms.p95, "decision p95 ms", ms],
    [(r) => r.e2e_ms.p50, "end-to-end p50 ms", ms], [(r) => r.e2e_ms.p95, "end-to-end p95 ms", ms],
    [(r) => r.feedback.mean, "feedback", pct], [(r) => r.feedback.n, "scores", int]], s.routes, "route");
  table("targets", [["target", "target"], ["breaker", "breaker"], ...COUNTS,
    ["failed_attempts", "failed attempts", int], ["fallbacks", "fell back to it", int],
    ...SPEND], s.targets, "target");
  table("surfaces", [["surface", "surface"], ...COUNTS, ...SPEND], s.surfaces, "surface");
  table("tenants", [["tenant", "tenant"], ...COUNTS, ...SPEND], s.tenants, "tenant");
  table("alerts", [[(a) => new Date(a.ts * 1000).toLocaleTimeString(), "time"], ["kind", "alert"],
    [(a) => JSON.stringify(a.detail), "detail"]], s.alerts, "kind");
  const recentHead = [[(r) => new Date(r.ts * 1000).toLocaleTimeString(), "time"], ["route", "route"],
    ["confidence", "confidence", pct], ["source", "source"], ["target", "target"], ["decision_ms", "decision ms", ms],
    ["e2e_ms", "latency ms", ms], ["cost", "cost", usd], ["status", "status"]];
  if (s.recent.some((r) => r.text !== undefined)) recentHead.push(["text", "request text"]);
  table("recent", recentHead, s.recent.slice(0, RECENT_SHOWN), "route");
}

// --- reports: the latest eval report and bench results, with their plots -------------------------
async function image(folder, name) {
  const blob = await (await api(`/v1/reports/${folder}/${encodeURIComponent(name)}`)).blob();
  return el("img", { src: URL.createObjectURL(blob), alt: name });
}

async function report(title, r) {
  const text = await (await api(`/v1/reports/${r.folder}/${encodeURIComponent(r.name)}`)).text();
  const box = el("details", { class: "report" }, el("summary", {}, title + " — " + r.name + " (" +
    new Date(r.mtime * 1000).toLocaleString() + ")"), el("pre", {}, text));
  for (const p of r.plots) box.append(await image(r.folder, p));
  return box;
}

async function drawReports() {
  const data = await (await api("/v1/reports")).json();
  const parts = [];
  if (data.eval) parts.push(await report("eval", data.eval));
  for (const b of data.bench) parts.push(await report("bench", b));
  if (!parts.length) parts.push(el("p", { class: "muted" }, "no eval or bench report in " + data.folders.join(", ")));
  document.getElementById("reports").replaceChildren(...parts);
}

// --- the loop -------------------------------------------------------------------------------------
async function refresh() {
  const status = document.getElementById("status");
  try {
    const s = await (await api("/v1/stats?window=" + state.window)).json();
    drawCards(s);
    bars("chart-routes", s.routes.map((r) => [r.route === "-" ? "(no route)" : r.route, r.requests]));
    bars("chart-sources", Object.entries(s.sources).sort((a, b) => b[1] - a[1]));
    columns("chart-confidence", s.confidence);
    latency("chart-latency", s.routes.filter((r) => r.route !== "-"));
    drawTables(s);
    if (!state.reportsShown) {
      state.reportsShown = true;
      await drawReports();
    }
    status.textContent = "updated " + new Date().toLocaleTimeString() + " · window " + state.window;
    document.body.setAttribute("data-loaded", "1");
  } catch (err) {
    status.textContent = String(err.message || err);
  }
}

function schedule() {
  clearInterval(state.timer);
  if (document.getElementById("live").checked) state.timer = setInterval(refresh, POLL_MS);
}

function pick(window) {
  state.window = window;
  for (const b of document.querySelectorAll("#windows button")) b.classList.toggle("on", b.dataset.window === window);
  refresh();
}

document.addEventListener("DOMContentLoaded", () => {
  takeKeyFromHash();
  for (const b of document.querySelectorAll("#windows button")) b.addEventListener("click", () => pick(b.dataset.window));
  document.getElementById("live").addEventListener("change", schedule);
  document.getElementById("login").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem("llmrouter-key", document.getElementById("key").value.trim());
    document.getElementById("login").hidden = true;
    document.getElementById("main").hidden = false;
    refresh();
  });
  pick(new URLSearchParams(location.search).get("window") || "1h");
  schedule();
});
