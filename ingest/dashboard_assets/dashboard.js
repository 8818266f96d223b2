// zapstream dashboard: fetches /dashboard/data for the chosen period and draws the
// figures as inline SVG. No library, nothing loaded from elsewhere. Text from the data
// is only ever set as textContent (never parsed as HTML).
"use strict";

const SVG = "http://www.w3.org/2000/svg";

function el(tag, attrs, text) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function fmtNum(v) {
  if (v === null || v === undefined) return "–";
  return Number.isInteger(v) ? v.toLocaleString("en") : v.toLocaleString("en", { maximumFractionDigits: 2 });
}

function fmtPct(v) {
  return v === null || v === undefined ? "–" : (v * 100).toFixed(1) + " %";
}

function fmtS(v) {
  if (v === null || v === undefined) return "–";
  if (Math.abs(v) < 120) return v.toFixed(v < 10 ? 2 : 1) + " s";
  if (Math.abs(v) < 7200) return (v / 60).toFixed(1) + " min";
  return (v / 3600).toFixed(1) + " h";
}

function empty(target, text) {
  target.replaceChildren(el("p", { class: "empty" }, text || "no data in this period"));
}

// Vertical bars over time: points = [{label, value}]
function vbars(target, points) {
  if (!points || !points.length || points.every((p) => !p.value)) return empty(target);
  const W = target.closest("figure.wide") ? 800 : 420, H = W === 800 ? 180 : 150, left = 40, bottom = 22, top = 8;
  const max = Math.max(...points.map((p) => p.value));
  const step = (W - left) / points.length;
  const svg = el("svg:svg", { viewBox: `0 0 ${W} ${H}`, class: "vbars", role: "img" });
  svg.appendChild(el("svg:line", { x1: left, y1: H - bottom, x2: W, y2: H - bottom, class: "axis" }));
  svg.appendChild(el("svg:text", { x: left - 6, y: top + 10, class: "ylabel", "text-anchor": "end" }, fmtNum(max)));
  svg.appendChild(el("svg:text", { x: left - 6, y: H - bottom, class: "ylabel", "text-anchor": "end" }, "0"));
  points.forEach((p, i) => {
    const h = max ? ((H - bottom - top) * p.value) / max : 0;
    const bar = el("svg:rect", {
      x: left + i * step + step * 0.1, y: H - bottom - h,
      width: Math.max(step * 0.8, 0.5), height: h, class: "bar",
    });
    bar.appendChild(el("svg:title", {}, `${p.label}: ${fmtNum(p.value)}`));
    svg.appendChild(bar);
  });
  const marks = points.length > 2 ? [0, Math.floor(points.length / 2), points.length - 1] : points.map((_, i) => i);
  for (const i of marks) {
    const anchor = marks.length > 1 && i === 0 ? "start" : marks.length > 1 && i === points.length - 1 ? "end" : "middle";
    const x = anchor === "start" ? left + i * step : anchor === "end" ? left + (i + 1) * step : left + i * step + step / 2;
    svg.appendChild(el("svg:text", { x: x, y: H - 6, class: "xlabel", "text-anchor": anchor },
      points[i].label.replace("T", " ").replace(":00:00Z", "h")));
  }
  target.replaceChildren(svg);
}

// Horizontal bars: items = [{label, value, note?}]
function hbars(target, items) {
  if (!items || !items.length || items.every((i) => !i.value)) return empty(target);
  const row = 24, W = 520, labelW = 170, H = items.length * row + 4;
  const max = Math.max(...items.map((i) => i.value));
  const svg = el("svg:svg", { viewBox: `0 0 ${W} ${H}`, class: "hbars", role: "img" });
  items.forEach((item, n) => {
    const y = n * row + 2;
    const w = max ? ((W - labelW - 90) * item.value) / max : 0;
    svg.appendChild(el("svg:text", { x: labelW - 8, y: y + 15, class: "hlabel", "text-anchor": "end" }, item.label));
    const bar = el("svg:rect", { x: labelW, y: y + 3, width: Math.max(w, item.value ? 1 : 0), height: row - 8, class: "bar" });
    bar.appendChild(el("svg:title", {}, `${item.label}: ${fmtNum(item.value)}`));
    svg.appendChild(bar);
    svg.appendChild(el("svg:text", { x: labelW + w + 6, y: y + 15, class: "hvalue" }, fmtNum(item.value) + (item.note ? ` ${item.note}` : "")));
  });
  target.replaceChildren(svg);
}

function tiles(r) {
  const d = r.delivery, h = r.handoffs, e = r.reengagements, c = r.conversations;
  const items = [
    ["Inbound messages", fmtNum(r.inbound.messages)],
    ["Active users", fmtNum(r.inbound.active_users)],
    ["Turns", fmtNum(r.intents.turns)],
    ["Conversations", fmtNum(c.count)],
    ["Turns per conversation", `${fmtNum(c.turns_per_conversation.mean)} (max ${fmtNum(c.turns_per_conversation.max)})`],
    ["First reply p50 / p95", `${fmtS(r.reply_latency.p50_s)} / ${fmtS(r.reply_latency.p95_s)}`],
    ["Decision p50 / p95", `${fmtS(r.decision_latency.p50_s)} / ${fmtS(r.decision_latency.p95_s)}`],
    ["Fallback rate", fmtPct(r.intents.fallback_rate)],
    ["Handoffs (rate)", `${fmtNum(h.opened)} (${fmtPct(h.rate)})`],
    ["Time to a human p50 / p95", `${fmtS(h.time_to_human_s.p50)} / ${fmtS(h.time_to_human_s.p95)}`],
    ["Delivered / read", `${fmtPct(d.delivery_rate)} / ${fmtPct(d.read_rate)}`],
    ["Delivery delay p50 / p95", `${fmtS(d.delivery_delay_s.p50)} / ${fmtS(d.delivery_delay_s.p95)}`],
    ["Read delay p50 / p95", `${fmtS(d.read_delay_s.p50)} / ${fmtS(d.read_delay_s.p95)}`],
    ["Re-engaged / returned", `${fmtNum(e.sent)} / ${fmtNum(e.returned)} (${fmtPct(e.return_rate)})`],
    ["Dead letters", fmtNum(r.dead_letters.outbound)],
  ];
  document.getElementById("tiles").replaceChildren(
    ...items.map(([label, value]) => {
      const tile = el("div", { class: "tile" });
      tile.append(el("span", { class: "label" }, label), el("span", { class: "value" }, value));
      return tile;
    }),
  );
}

function draw(r) {
  tiles(r);
  const byId = (id) => document.getElementById(id);
  const series = (rows, key) => (rows || []).map((x) => ({ label: x.at, value: x[key] }));
  if (r.inbound.per_hour) {
    vbars(byId("messages-hour"), series(r.inbound.per_hour, "messages"));
    vbars(byId("users-hour"), series(r.inbound.per_hour, "active_users"));
  } else {
    empty(byId("messages-hour"), "the period is too long for hours: see per day");
    empty(byId("users-hour"), "the period is too long for hours: see per day");
  }
  vbars(byId("messages-day"), series(r.inbound.per_day, "messages"));
  vbars(byId("users-day"), series(r.inbound.per_day, "active_users"));
  hbars(byId("intents"), r.intents.by_intent.map((i) => ({ label: i.intent, value: i.turns })));
  const d = r.delivery;
  hbars(byId("delivery"), [
    { label: "outbound", value: d.outbound },
    { label: "accepted by Meta", value: d.accepted },
    { label: "delivered", value: d.delivered, note: `(${fmtPct(d.delivery_rate)})` },
    { label: "read", value: d.read, note: `(${fmtPct(d.read_rate)})` },
    { label: "failed", value: d.failed },
    { label: "dead-lettered", value: d.dead_lettered },
    { label: "pending", value: d.pending },
  ]);
  hbars(byId("handoffs"), r.handoffs.by_outcome.map((x) => ({ label: x.outcome, value: x.count })));
  hbars(byId("reengagements"), r.reengagements.by_kind.map((x) => ({ label: x.kind, value: x.sent, note: `/ ${fmtNum(x.returned)}` })));
  hbars(byId("dead-letters"), r.dead_letters.by_error_code.map((x) => ({
    label: x.error_code === null ? "(no code)" : String(x.error_code), value: x.count,
  })));
  hbars(byId("processing"), r.dead_letters.processing.map((x) => ({ label: `${x.stage} · ${x.error_type}`, value: x.count })));
  const missing = r.missing_tables.length ? `Not in the DuckDB file yet (shown as empty): ${r.missing_tables.join(", ")}` : "";
  byId("missing").textContent = missing;
}

// datetime-local value (local time) <-> ISO in UTC
function toLocalInput(iso) {
  const t = new Date(iso);
  if (Number.isNaN(t.getTime())) return "";
  const local = new Date(t.getTime() - t.getTimezoneOffset() * 60000);
  return local.toISOString().slice(0, 16);
}

function fromLocalInput(value) {
  const t = new Date(value);
  return Number.isNaN(t.getTime()) ? "" : t.toISOString();
}

async function load(from, to) {
  const status = document.getElementById("status");
  document.body.dataset.state = "loading";
  status.textContent = "Loading…";
  const params = new URLSearchParams();
  if (from) params.set("from", from);
  if (to) params.set("to", to);
  history.replaceState(null, "", "/dashboard" + (params.toString() ? "?" + params : ""));
  let resp;
  try {
    resp = await fetch("/dashboard/data?" + params, { credentials: "same-origin", cache: "no-store" });
  } catch (err) {
    status.textContent = "The API does not answer: " + err;
    document.body.dataset.state = "error";
    return;
  }
  if (resp.status === 401) {
    location.reload(); // the session ended: the page answers with the login form
    return;
  }
  const body = await resp.json();
  if (!resp.ok) {
    status.textContent = body.detail || body.error || "error " + resp.status;
    document.body.dataset.state = "error";
    return;
  }
  draw(body);
  document.getElementById("from").value = toLocalInput(body.period.from);
  document.getElementById("to").value = toLocalInput(body.period.to);
  status.textContent = `${body.period.from} → ${body.period.to} (UTC, end excluded)`;
  document.body.dataset.state = "ready";
}

function start() {
  const form = document.getElementById("period");
  const preset = document.getElementById("preset");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (preset.value === "custom") {
      load(fromLocalInput(document.getElementById("from").value), fromLocalInput(document.getElementById("to").value));
    } else {
      load(preset.value, "");
    }
  });
  preset.addEventListener("change", () => {
    if (preset.value !== "custom") load(preset.value, "");
  });
  for (const id of ["from", "to"]) {
    document.getElementById(id).addEventListener("change", () => { preset.value = "custom"; });
  }
  const q = new URLSearchParams(location.search);
  const from = q.get("from"), to = q.get("to");
  if (from || to) {
    const known = [...preset.options].some((o) => o.value === from) && !to;
    preset.value = known ? from : "custom";
    load(from || "", to || "");
  } else {
    load(preset.value, "");
  }
}

document.addEventListener("DOMContentLoaded", start);
