// tapedeck ui: plain JavaScript, no build step, no network beyond this server.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
};

const state = {
  view: "explore", q: "", from: "", to: "", id: "", t: "", snapshot: "",
  rows: [], next: null, selected: -1, live: false, columns: [], functions: [],
  snapshotsWritable: false, report: "", noiseFile: null,
};

// ---- URL <-> state -------------------------------------------------------------------------
function readUrl() {
  const p = new URLSearchParams(location.search);
  state.view = p.get("view") || "explore";
  state.q = p.get("q") || "";
  state.from = p.get("from") || "";
  state.to = p.get("to") || "";
  state.id = p.get("id") || "";
  state.t = p.get("t") || "";
  state.snapshot = p.get("snapshot") || "";
  state.report = p.get("report") || "";
}
function writeUrl(push) {
  const p = new URLSearchParams();
  if (state.view !== "explore") p.set("view", state.view);
  if (state.q) p.set("q", state.q);
  if (state.from) p.set("from", state.from);
  if (state.to) p.set("to", state.to);
  if (state.view === "explore" && state.id) { p.set("id", state.id); if (state.t) p.set("t", state.t); }
  if (state.view === "snapshots" && state.snapshot) p.set("snapshot", state.snapshot);
  if (state.view === "replays" && state.report !== "") p.set("report", state.report);
  const url = "?" + p.toString();
  if (url !== location.search) (push ? history.pushState : history.replaceState).call(history, null, "", url);
}
function filterParams(extra = {}) {
  const p = new URLSearchParams();
  if (state.q) p.set("q", state.q);
  if (state.from) p.set("from", state.from);
  if (state.to) p.set("to", state.to);
  for (const [k, v] of Object.entries(extra)) if (v !== undefined && v !== null && v !== "") p.set(k, v);
  return p.toString();
}

// ---- fetch with progress -------------------------------------------------------------------
let busy = 0;
async function api(path, options = {}) {
  const status = $("#status");
  const began = performance.now();
  busy++;
  const timer = setInterval(() => {
    status.textContent = `querying… ${((performance.now() - began) / 1000).toFixed(1)} s`;
  }, 250);
  try {
    const response = await fetch(path, options);
    const text = await response.text();
    let body;
    try { body = text ? JSON.parse(text) : {}; } catch { body = { error: text }; }
    if (!response.ok) {
      const error = new Error(body.error || `${response.status} ${response.statusText}`);
      error.status = response.status; error.body = body;
      throw error;
    }
    return body;
  } finally {
    clearInterval(timer);
    busy--;
    if (!busy) status.textContent = "";
  }
}
function showError(error) {
  const box = $("#error");
  if (!error) { box.hidden = true; box.textContent = ""; return; }
  box.hidden = false;
  box.textContent = error.message || String(error);
}

// ---- formatting ----------------------------------------------------------------------------
const fmtTime = (ns) => {
  if (!ns) return "";
  const ms = Number(BigInt(ns) / 1000000n);
  return new Date(ms).toISOString().replace("T", " ").replace("Z", "");
};
const fmtMs = (ns) => (Number(ns) / 1e6).toFixed(Number(ns) < 1e7 ? 2 : 1) + " ms";
const fmtSize = (n) => { n = Number(n); return n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1048576).toFixed(1)} MiB`; };
const sqlString = (s) => "'" + String(s).replace(/'/g, "''") + "'";
const statusClass = (s) => `s${String(s)[0]}`;

// ---- explore: the list ---------------------------------------------------------------------
const LIST = [
  ["start_time", (r) => fmtTime(r.start_time), null],
  ["direction", (r) => r.direction, "direction"],
  ["service", (r) => r.service, "service"],
  ["method", (r) => r.method, "method"],
  ["authority", (r) => r.authority, "authority"],
  ["path", (r) => r.path, "path"],
  ["status", (r) => r.status, "status"],
  ["duration_ns", (r) => fmtMs(r.duration_ns), null],
  ["request_body_size", (r) => fmtSize(r.request_body_size), null],
  ["response_body_size", (r) => fmtSize(r.response_body_size), null],
];

function addFilter(column, value) {
  const literal = typeof value === "number" ? String(value) : sqlString(value);
  const clause = `${column} = ${literal}`;
  state.q = state.q ? `(${state.q}) AND ${clause}` : clause;
  $("#filter").value = state.q;
  state.id = "";
  apply(true);
}

function rowElement(row, index) {
  const tr = el("tr", {
    class: "row", tabindex: "0", "data-id": row.id, "data-index": index,
    "aria-selected": String(index === state.selected),
    onclick: (e) => { if (!e.target.closest("button")) select(index, true); },
  });
  for (const [key, text, column] of LIST) {
    const value = row[key];
    const td = el("td", { class: key === "status" ? statusClass(value) : null, title: String(text(row) ?? "") }, text(row));
    if (column && value !== "" && value !== null) {
      td.append(el("button", {
        type: "button", class: "add", "data-column": column,
        "aria-label": `filter ${column} = ${value}`, title: `add ${column} = ${value} to the filter`,
        onclick: () => addFilter(column, value),
      }, "+"));
    }
    tr.append(td);
  }
  return tr;
}

function renderRows() {
  const body = $("#rows tbody");
  body.replaceChildren(...state.rows.map(rowElement));
  $("#more").hidden = !state.next;
  if (!state.rows.length) body.append(el("tr", {}, el("td", { colspan: LIST.length, class: "muted" }, "no exchanges match")));
}

async function loadRows() {
  const took = performance.now();
  const page = await api("api/exchanges?" + filterParams({ limit: 100 }));
  state.rows = page.rows;
  state.next = page.next;
  state.selected = state.rows.findIndex((r) => r.id === state.id);
  renderRows();
  $("#status").textContent = `${page.rows.length}${page.next ? "+" : ""} rows in ${(performance.now() - took).toFixed(0)} ms`;
}

async function loadMore() {
  if (!state.next) return;
  const page = await api("api/exchanges?" + filterParams({ limit: 100, before: state.next.before, skip: state.next.skip }));
  const start = state.rows.length;
  state.rows.push(...page.rows);
  state.next = page.next;
  const body = $("#rows tbody");
  page.rows.forEach((r, i) => body.append(rowElement(r, start + i)));
  $("#more").hidden = !state.next;
}

// Live: every two seconds, ask for rows newer than the newest shown and put them on top.
let liveTimer = null;
async function pollLive() {
  if (!state.live || state.view !== "explore" || busy) return;
  const newest = state.rows.length ? state.rows[0].start_time : "";
  try {
    const page = await api("api/exchanges?" + filterParams({ limit: 200, after: newest }));
    if (!page.rows.length) return;
    state.rows.unshift(...page.rows);
    if (state.selected >= 0) state.selected += page.rows.length;
    renderRows();
    for (let i = 0; i < page.rows.length; i++) $("#rows tbody").children[i].classList.add("fresh");
  } catch (error) { showError(error); }
}
function setLive(on) {
  state.live = on;
  clearInterval(liveTimer);
  if (on) liveTimer = setInterval(pollLive, 2000);
}

function select(index, open) {
  if (index < 0 || index >= state.rows.length) return;
  state.selected = index;
  for (const tr of document.querySelectorAll("#rows tr.row")) tr.setAttribute("aria-selected", String(Number(tr.dataset.index) === index));
  const tr = $(`#rows tr.row[data-index="${index}"]`);
  if (tr) { tr.focus({ preventScroll: false }); }
  if (open) {
    const row = state.rows[index];
    state.id = row.id; state.t = row.start_time;
    writeUrl(false);
    loadDetail().catch(showError);
  }
}

// ---- explore: the detail pane --------------------------------------------------------------
function jsonTree(value, key) {
  const label = key === undefined ? null : el("span", { class: "jk" }, JSON.stringify(key) + ": ");
  if (value === null || typeof value !== "object") {
    const cls = typeof value === "string" ? "js" : typeof value === "number" ? "jn" : "jb";
    return el("li", {}, label, el("span", { class: cls }, JSON.stringify(value)));
  }
  const entries = Array.isArray(value) ? value.map((v, i) => [i, v]) : Object.entries(value);
  const open = Array.isArray(value) ? "[" : "{";
  return el("li", {}, el("details", { open: true },
    el("summary", {}, label, `${open} ${entries.length} ${Array.isArray(value) ? "items" : "keys"}`),
    el("ul", {}, entries.map(([k, v]) => jsonTree(v, Array.isArray(value) ? undefined : k)))));
}

function bodyView(body) {
  const info = el("div", { class: "muted" },
    body.content_type ? `${body.content_type}, ` : "",
    `${fmtSize(body.size)}`, body.truncated ? ` (captured ${fmtSize(body.captured)}, truncated)` : "");
  const redacted = (body.redactions || []).map((r) => el("span", { class: "redacted", "data-redaction": r }, `redacted: ${r}`));
  let view;
  switch (body.kind) {
    case "empty": view = el("div", { class: "muted" }, "no body"); break;
    case "json": view = el("ul", { class: "json tree", "data-kind": "json" }, jsonTree(body.json)); break;
    case "text": view = el("pre", { "data-kind": "text" }, body.text); break;
    case "hex": view = el("pre", { class: "hex", "data-kind": "hex" }, body.hex); break;
    case "grpc": view = el("div", { "data-kind": "grpc" }, body.frames.map((f, i) => el("div", {},
      el("div", { class: "muted" }, `message ${i + 1}: ${f.length} bytes${f.compressed ? ", compressed" : ""}`),
      f.fields ? el("table", { class: "headers" }, f.fields.map((x) => el("tr", {}, el("td", {}, `#${x.field} ${x.wire}`), el("td", {}, x.value)))) : null,
      el("pre", { class: "hex" }, f.hex)))); break;
    default: view = el("pre", {}, JSON.stringify(body));
  }
  return el("div", {}, info, redacted, view);
}

function headersView(headers) {
  if (!headers.length) return el("div", { class: "muted" }, "none");
  return el("table", { class: "headers" }, headers.map((h) => el("tr", { "data-header": h.name },
    el("td", {}, h.name),
    el("td", {}, h.redacted ? [el("span", { class: "redacted", title: h.value }, "redacted"), " ", el("span", { class: "muted" }, h.value)] : h.value))));
}

function curlOf(x) {
  const scheme = x.scheme || "http";
  const quote = (s) => "'" + String(s).replace(/'/g, "'\\''") + "'";
  const parts = ["curl", "-X", x.method, quote(`${scheme}://${x.authority}${x.path}`)];
  for (const h of x.request.headers) {
    if (h.name.startsWith(":") || h.name === "content-length") continue;
    parts.push("-H", quote(`${h.name}: ${h.value}`));
  }
  const b = x.request.body;
  if (b.kind === "json") parts.push("--data-raw", quote(JSON.stringify(b.json)));
  else if (b.kind === "text") parts.push("--data-raw", quote(b.text));
  else if (b.kind !== "empty") parts.push("--data-binary", "@body.bin");
  return parts.join(" ");
}

function traceView(tree, currentId) {
  const item = (node) => el("li", {},
    el("a", {
      href: "#", "data-id": node.id, class: node.id === currentId ? "current" : null,
      onclick: (e) => { e.preventDefault(); state.id = node.id; state.t = node.start_time; writeUrl(true); loadDetail().catch(showError); },
    }, `${node.direction} ${node.workload}: ${node.method} ${node.authority}${node.path} → ${node.status} (${fmtMs(node.duration_ns)})`),
    node.children.length ? el("ul", {}, node.children.map(item)) : null);
  return el("ul", { class: "trace tree" }, tree.roots.map(item));
}

async function loadDetail() {
  const pane = $("#detail");
  if (!state.id) { pane.hidden = true; return; }
  const x = await api(`api/exchanges/${encodeURIComponent(state.id)}?` + new URLSearchParams(state.t ? { t: state.t } : {}));
  pane.hidden = false;
  const curl = curlOf(x);
  pane.replaceChildren(...[
    el("div", {},
      el("button", { type: "button", onclick: () => { state.id = ""; writeUrl(false); pane.hidden = true; }, "aria-label": "close detail" }, "✕ close"),
      " ",
      el("button", { type: "button", id: "copy-curl", onclick: async (e) => {
        try { await navigator.clipboard.writeText(curl); e.target.textContent = "copied"; }
        catch { $("#curl").hidden = false; }
      } }, "Copy as curl")),
    el("h2", {}, `${x.method} ${x.authority}${x.path} `, el("span", { class: statusClass(x.status) }, String(x.status))),
    el("pre", { id: "curl", hidden: true }, curl),
    el("dl", { class: "meta" },
      ...[["time", x.time], ["direction", x.direction], ["service / workload", `${x.service ?? ""} / ${x.workload}`],
        ["protocol", x.protocol], ["latency", fmtMs(x.duration_ns)], ["response headers after", fmtMs(x.response_headers_ns)],
        ["Envoy flags", x.response_flags || "-"], ["code details", x.response_code_details || "-"],
        ["upstream cluster", x.upstream_cluster || "-"], ["route", x.route_name || "-"], ["peer", x.peer_address || "-"],
        ["pod", `${x.namespace}/${x.pod}`], ["trace", x.trace_id || "-"], ["id", x.id], ["sample rate", x.sample_rate]]
        .flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, String(v))])),
    x.redactions.length ? el("div", { id: "redactions" }, el("h3", {}, "Redactions"), x.redactions.map((r) => el("span", { class: "redacted" }, r))) : null,
    el("div", { class: "sides" },
      el("section", { id: "request", "aria-label": "request" },
        el("h3", {}, "Request headers"), headersView(x.request.headers),
        el("h3", {}, "Request body"), bodyView(x.request.body),
        x.request.trailers.length ? [el("h3", {}, "Request trailers"), headersView(x.request.trailers)] : null),
      el("section", { id: "response", "aria-label": "response" },
        el("h3", {}, "Response headers"), headersView(x.response.headers),
        el("h3", {}, "Response body"), bodyView(x.response.body),
        x.response.trailers.length ? [el("h3", {}, "Response trailers"), headersView(x.response.trailers)] : null)),
    el("h3", {}, "Trace"),
    el("div", { id: "trace" }, x.trace_id ? el("span", { class: "muted" }, "loading…") : el("span", { class: "muted" }, "no trace id")),
  ].filter(Boolean));
  if (x.trace_id) {
    const tree = await api(`api/traces/${encodeURIComponent(x.trace_id)}`);
    $("#trace").replaceChildren(traceView(tree, x.id));
  }
}

// ---- completion ----------------------------------------------------------------------------
let completionIndex = -1;
function currentWord(input) {
  const upto = input.value.slice(0, input.selectionStart);
  const m = /[A-Za-z_][A-Za-z0-9_]*$/.exec(upto);
  return m ? { word: m[0], start: upto.length - m[0].length } : null;
}
function updateCompletions() {
  const input = $("#filter"), list = $("#completions");
  const current = currentWord(input);
  const names = [...state.columns.map((c) => c.name), ...state.functions];
  const matches = current ? names.filter((n) => n.startsWith(current.word.toLowerCase()) && n !== current.word) : [];
  completionIndex = matches.length ? 0 : -1;
  list.replaceChildren(...matches.slice(0, 30).map((name, i) => el("li", {
    role: "option", "aria-selected": String(i === 0), "data-value": name,
    onmousedown: (e) => { e.preventDefault(); acceptCompletion(name); },
  }, name)));
  list.hidden = !matches.length;
  input.setAttribute("aria-expanded", String(!list.hidden));
}
function acceptCompletion(name) {
  const input = $("#filter");
  const current = currentWord(input);
  if (!current) return;
  const end = input.selectionStart;
  input.value = input.value.slice(0, current.start) + name + input.value.slice(end);
  const caret = current.start + name.length;
  input.setSelectionRange(caret, caret);
  $("#completions").hidden = true;
  input.setAttribute("aria-expanded", "false");
}
function moveCompletion(delta) {
  const items = [...$("#completions").children];
  if (!items.length) return;
  completionIndex = (completionIndex + delta + items.length) % items.length;
  items.forEach((li, i) => li.setAttribute("aria-selected", String(i === completionIndex)));
  items[completionIndex].scrollIntoView({ block: "nearest" });
}

// ---- service map ---------------------------------------------------------------------------
async function loadMap() {
  const data = await api("api/map?" + filterParams());
  const box = $("#map");
  if (!data.nodes.length) { box.replaceChildren(el("p", { class: "muted" }, "no traffic matches")); return; }
  // Layers: clients first, then by longest path from a node with no callers.
  const incoming = new Map(data.nodes.map((n) => [n.id, []]));
  for (const e of data.edges) incoming.get(e.target).push(e.source);
  const depth = new Map();
  const depthOf = (id, seen = new Set()) => {
    if (depth.has(id)) return depth.get(id);
    if (seen.has(id)) return 0;
    seen.add(id);
    const d = incoming.get(id).length ? 1 + Math.max(...incoming.get(id).map((s) => depthOf(s, seen))) : 0;
    depth.set(id, d);
    return d;
  };
  data.nodes.forEach((n) => depthOf(n.id));
  const layers = [];
  for (const n of data.nodes) (layers[depth.get(n.id)] ||= []).push(n);
  const W = 220, H = 90, NW = 170, NH = 40;
  const pos = new Map();
  layers.forEach((layer, x) => layer.forEach((n, y) => pos.set(n.id, { x: 20 + x * W, y: 20 + y * H })));
  const width = 40 + layers.length * W, height = 40 + Math.max(...layers.map((l) => l.length)) * H;
  const NS = "http://www.w3.org/2000/svg";
  const svg = (tag, attrs, ...kids) => {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    for (const kid of kids) node.append(kid instanceof Node ? kid : document.createTextNode(kid));
    return node;
  };
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": "service map" });
  root.append(svg("defs", {}, svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5", markerWidth: "8", markerHeight: "8", orient: "auto" },
    svg("path", { d: "M0,0 L10,5 L0,10 z", fill: "#57606a" }))));
  for (const e of data.edges) {
    const a = pos.get(e.source), b = pos.get(e.target);
    const x1 = a.x + NW, y1 = a.y + NH / 2, x2 = b.x, y2 = b.y + NH / 2;
    const bad = e.error_share > 0.01;
    const g = svg("g", { class: "edge", "data-source": e.source, "data-target": e.target });
    g.append(svg("path", { d: `M${x1},${y1} C${x1 + 30},${y1} ${x2 - 30},${y2} ${x2},${y2}`, fill: "none",
      stroke: bad ? "#a40e26" : "#57606a", "stroke-width": String(1 + Math.min(4, Math.log10(1 + e.calls))), "marker-end": "url(#arrow)" }));
    g.append(svg("text", { x: (x1 + x2) / 2 - 40, y: (y1 + y2) / 2 - 6, fill: bad ? "#a40e26" : "#1b1f24" },
      `${e.rate_per_s.toFixed(1)}/s · ${(e.error_share * 100).toFixed(1)}% err · p99 ${e.p99_ms.toFixed(1)} ms`));
    g.append(svg("title", {}, `${e.source} → ${e.target}: ${e.calls} calls`));
    root.append(g);
  }
  for (const n of data.nodes) {
    const p = pos.get(n.id);
    const fill = n.kind === "service" ? "#ddf4ff" : n.kind === "clients" ? "#f6f8fa" : "#fff8c5";
    root.append(svg("g", { class: "node", "data-node": n.id },
      svg("rect", { x: p.x, y: p.y, width: NW, height: NH, rx: 6, fill, stroke: "#57606a" }),
      svg("text", { x: p.x + 8, y: p.y + 24 }, n.id.length > 24 ? n.id.slice(0, 23) + "…" : n.id),
      svg("title", {}, `${n.kind}: ${n.id}`)));
  }
  box.replaceChildren(root);
}

// ---- snapshots -----------------------------------------------------------------------------
const ACTIONS = ["substitute", "propagate", "resign", "shift", "ignore", "keep"];

async function loadSnapshots() {
  const data = await api("api/snapshots");
  state.snapshotsWritable = data.writable;
  $("#snapshots-readonly").hidden = data.writable;
  $("#cut-form").hidden = !data.writable;
  if (data.writable) {
    const services = await api("api/services");
    const select = $("#cut-service");
    const keep = select.value;
    select.replaceChildren(...services.services.map((s) => el("option", { value: s }, s)));
    if (keep) select.value = keep;
  }
  $("#snapshot-list").replaceChildren(...data.snapshots.map((s) => el("li", {},
    el("a", { href: `?view=snapshots&snapshot=${encodeURIComponent(s.name)}`, "data-snapshot": s.name,
      onclick: (e) => { e.preventDefault(); state.snapshot = s.name; writeUrl(true); loadSnapshot().catch(showError); } },
    `${s.name} (${s.service ?? "?"}, ${s.rules ?? "?"} rules)`))));
  if (state.snapshot) await loadSnapshot();
}

function renderSnapshot(snap, message) {
  const box = $("#snapshot");
  box.replaceChildren(...[
    el("h2", {}, snap.name, " ", el("span", { class: "muted" }, snap.id || "")),
    el("div", { id: "validity", class: snap.valid ? "s2" : "problems" }, snap.valid ? "valid (tapedeck snapshot validate)" : `${snap.problems.length} problem(s)`),
    message ? el("div", { id: "rule-message", role: "status" }, message) : null,
    snap.problems.length ? el("ul", { class: "problems", id: "problems" }, snap.problems.map((p) => el("li", {}, p))) : null,
    el("table", { class: "rules", id: "rules" },
      el("thead", {}, el("tr", {}, el("th", {}, "rule"), el("th", {}, "kind"), el("th", {}, "replay"), el("th", {}, "evidence"), el("th", {}, ""))),
      el("tbody", {}, snap.rules.map((r) => el("tr", { "data-rule": r.index },
        el("td", {}, r.name, r.uses.length ? el("div", { class: "muted" }, "used at: " + r.uses.join("; ")) : null),
        el("td", {}, r.kind),
        el("td", {}, el("select", { "aria-label": `replay action of ${r.name}`, class: "action", disabled: !state.snapshotsWritable,
          onchange: (e) => editRule(snap.name, r.index, e.target.value) },
          ACTIONS.map((a) => el("option", { value: a, selected: a === r.replay }, a)))),
        el("td", {}, r.evidence ? [
          `${r.evidence.exchanges} exchanges, ${r.evidence.distinct} distinct`,
          r.evidence.example ? el("div", { class: "muted" }, `e.g. ${r.evidence.example}`) : null,
          el("a", { href: "#", class: "evidence", onclick: (e) => { e.preventDefault(); openEvidence(snap.name, r.evidence.first); } },
            `${r.evidence.first.file}:${r.evidence.first.line}`),
          r.evidence.first_use ? [" → ", el("a", { href: "#", class: "evidence", onclick: (e) => { e.preventDefault(); openEvidence(snap.name, r.evidence.first_use); } },
            `${r.evidence.first_use.file}:${r.evidence.first_use.line}`)] : null,
        ] : el("span", { class: "muted" }, "written by hand")),
        el("td", {}, el("button", { type: "button", class: "delete", disabled: !state.snapshotsWritable,
          "aria-label": `delete rule ${r.name}`, onclick: () => deleteRule(snap.name, r.index, r.name) }, "delete")))))),
    el("div", { id: "evidence" }),
  ].filter(Boolean));
}

async function loadSnapshot(message) {
  const snap = await api(`api/snapshots/${encodeURIComponent(state.snapshot)}`);
  renderSnapshot(snap, message);
}

async function editRule(name, index, replay) {
  try {
    const snap = await api(`api/snapshots/${encodeURIComponent(name)}/rules/${index}`, {
      method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify({ replay }) });
    renderSnapshot(snap, `rule ${index}: replay is now ${replay}; written and validated`);
  } catch (error) {
    const problems = error.body && error.body.problems ? "\n" + error.body.problems.join("\n") : "";
    await loadSnapshot();
    showError(new Error(error.message + problems));
  }
}

async function deleteRule(name, index, ruleName) {
  if (!confirm(`Delete rule "${ruleName}"?`)) return;
  try {
    const snap = await api(`api/snapshots/${encodeURIComponent(name)}/rules/${index}`, { method: "DELETE" });
    renderSnapshot(snap, `rule "${ruleName}" deleted; written and validated`);
  } catch (error) { showError(error); }
}

async function openEvidence(name, position) {
  const data = await api(`api/snapshots/${encodeURIComponent(name)}/entries?` + new URLSearchParams(position));
  const id = data.entry.id;
  $("#evidence").replaceChildren(
    el("h3", {}, `${data.file}:${data.line}`),
    el("a", { href: `?${new URLSearchParams({ q: `encode(id, 'hex') = '${id}'`, id })}`, id: "evidence-open" }, "open this exchange in Explore"),
    el("ul", { class: "json tree" }, jsonTree(data.entry)));
}

async function cutSnapshot(event) {
  event.preventDefault();
  const status = $("#cut-status");
  status.textContent = "cutting…";
  try {
    const body = { name: $("#cut-name").value, service: $("#cut-service").value, q: state.q, from: state.from, to: state.to };
    const made = await api("api/snapshots", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    status.textContent = `cut ${made.id}: ${made.inbound} inbound, ${made.outbound} outbound, ${made.rules} rules`;
    state.snapshot = made.name;
    writeUrl(true);
    await loadSnapshots();
  } catch (error) { status.textContent = ""; showError(error); }
}

// ---- replays -------------------------------------------------------------------------------
const VERDICT_CLASS = { pass: "s2", fail: "s5", inconclusive: "s4" };
const verdictBadge = (v, id) => el("span", { class: `verdict ${VERDICT_CLASS[v] || ""}`, id, "data-verdict": v }, String(v || "?").toUpperCase());
const pct = (x) => (x === null || x === undefined) ? "" : `${(x * 100).toFixed(2)} %`;
const num = (x, d = 2) => (x === null || x === undefined || Number.isNaN(x)) ? "" : Number(x).toFixed(d);
const cell = (v) => v === null || v === undefined ? el("span", { class: "muted" }, "absent") : el("code", {}, v);

async function loadReports() {
  const data = await api("api/reports");
  state.noiseFile = data.noise;
  $("#replays-readonly").hidden = !!data.noise;
  $("#report-list").replaceChildren(...data.reports.map((r) => el("li", {},
    el("a", { href: `?view=replays&report=${r.index}`, "data-report": r.index,
      "aria-current": String(r.index) === state.report ? "true" : null,
      onclick: (e) => { e.preventDefault(); state.report = String(r.index); writeUrl(true); loadReports().catch(showError); } },
    r.error ? `${r.dir}: ${r.error}` : [verdictBadge(r.verdict), ` ${r.dir}`, el("div", { class: "muted" }, `${r.started ?? ""}, ${r.requests ?? "?"} requests`)]))));
  if (!data.reports.length) $("#report").replaceChildren(el("p", { class: "muted" }, "No reports: start `tapedeck ui --report DIR` (a `tapedeck replay --report DIR` directory)."));
  else if (state.report !== "") await loadReport();
}

async function loadReport(message) {
  renderReport(await api(`api/reports/${encodeURIComponent(state.report)}`), message);
}

// As the gate writes them: a relative change in %, an error-rate difference in points.
const change = (x, unit) => x === null || x === undefined ? "" : unit === "pp"
  ? `${x >= 0 ? "+" : ""}${(x * 100).toFixed(2)}pp` : `${x >= 0 ? "+" : ""}${(x * 100).toFixed(1)}%`;

function gateTable(goal) {
  const rows = [goal.overall, ...goal.endpoints.filter((r) => r.endpoint !== goal.overall.endpoint)];
  const unit = goal.goal.metric === "errors" ? "pp" : goal.goal.metric === "rps" ? "/s" : "ms";
  return el("table", { class: "rules gate" },
    el("thead", {}, el("tr", {}, ["row", "verdict", `baseline`, `candidate`, "change", "interval", "n", "test", "p", "holm", ""].map((h) => el("th", {}, h)))),
    el("tbody", {}, rows.map((r) => el("tr", { "data-row": r.endpoint },
      el("td", {}, r.endpoint), el("td", {}, verdictBadge(r.verdict)),
      el("td", {}, `${num(r.baseline, 3)} ${unit === "pp" ? "" : unit}`), el("td", {}, `${num(r.candidate, 3)} ${unit === "pp" ? "" : unit}`),
      el("td", {}, change(r.estimate, unit)),
      el("td", {}, r.interval ? `[${change(r.interval[0], unit)}, ${change(r.interval[1], unit)}]` : ""),
      el("td", {}, r.n), el("td", {}, r.test || ""), el("td", {}, r.p_value === null ? "" : num(r.p_value, 3)),
      el("td", {}, r.p_adjusted === null || r.p_adjusted === undefined ? "" : num(r.p_adjusted, 3)),
      el("td", { class: "muted small" }, r.reason || "")))));
}

function distributionView(d) {
  const labels = d.quantiles.map((q) => q === 0 ? "min" : q === 1 ? "max" : `p${+(q * 100).toFixed(1)}`);
  const top = Math.max(1e-9, ...d.baseline, ...d.candidate);
  const bar = (v, cls) => el("span", { class: `bar ${cls}`, style: `width:${Math.max(1, (v / top) * 100).toFixed(1)}%` });
  return el("figure", { class: "dist", "data-endpoint": d.endpoint },
    el("figcaption", {}, d.endpoint === "*" ? "all requests" : d.endpoint, " ", d.verdict ? verdictBadge(d.verdict) : null),
    el("table", { class: "rules" },
      el("thead", {}, el("tr", {}, el("th", {}, "quantile"), el("th", {}, "baseline (ms)"), el("th", {}, "candidate (ms)"))),
      el("tbody", {}, labels.map((label, i) => el("tr", {},
        el("td", {}, label),
        el("td", { class: "barcell" }, bar(d.baseline[i], "base"), el("span", {}, num(d.baseline[i]))),
        el("td", { class: "barcell" }, bar(d.candidate[i], "cand"), el("span", {}, num(d.candidate[i]))))))));
}

function renderReport(data, message) {
  const r = data.report;
  const now = data.recomputed;
  const writable = !!data.noise && !!data.fields;
  const inFile = new Set((data.noise_rules || []).map((x) => `${x.endpoint}\u0000${x.field}`));
  const three = now ? now.three_way : r.three_way || [];
  const diffs = now ? now.diffs : r.diffs || [];
  const rules = now ? now.rules : (r.noise && r.noise.rules) || [];
  const slo = now ? now.slo : r.slo;
  const markButton = (endpoint, f) => {
    const key = `${endpoint}\u0000${f.field}`;
    if (f.outcome === "differs" && !f.deterministic) {
      return el("button", { type: "button", class: "mark", disabled: !writable, "data-field": f.field,
        "aria-label": `mark ${f.field} of ${endpoint} as noise`, onclick: () => markNoise(endpoint, f.field, true) }, "mark as noise");
    }
    if (f.outcome === "noise" && inFile.has(key)) {
      return el("button", { type: "button", class: "unmark", disabled: !writable, "data-field": f.field,
        "aria-label": `remove the noise rule for ${f.field} of ${endpoint}`, onclick: () => markNoise(endpoint, f.field, false) }, "unmark");
    }
    return f.deterministic ? el("span", { class: "muted", title: "the recorded value came from the mocks: never noise" }, "from mocks") : null;
  };
  $("#report").replaceChildren(...[
    el("h2", {}, data.dir, " ", el("span", { class: "muted" }, `snapshot ${r.snapshot.id}, ${r.started}, ${r.overall.requests} requests`)),
    el("div", { class: "verdicts" },
      el("div", {}, "verdict in the report: ", verdictBadge(r.verdict, "verdict-report")),
      now ? el("div", {}, `with the noise rules of ${data.noise}: `, verdictBadge(now.verdict, "verdict-now"),
        el("span", { class: "muted" }, ` (${now.overall_diffs} of ${r.overall.requests} responses differ; recomputed by the generator)`)) : null,
      data.noise_error ? el("div", { class: "problems", id: "noise-error" }, `${data.noise}: ${data.noise_error}`) : null,
      data.recompute_error ? el("div", { class: "muted" }, data.recompute_error) : null),
    message ? el("div", { id: "noise-message", role: "status" }, message) : null,
    r.gate ? el("section", { id: "gate" }, el("h3", {}, "Gate (baseline vs candidate)"),
      r.gate.goals.map((g) => el("div", { class: "goal", "data-goal": g.goal.text },
        el("h4", {}, g.goal.text, " ", verdictBadge(g.verdict)),
        el("pre", { class: "lines" }, [g.overall, ...g.endpoints.filter((x) => x.endpoint !== "overall")].map((x) => x.text).join("\n")),
        gateTable(g)))) : null,
    slo && slo.goals.length ? el("section", { id: "slo" }, el("h3", {}, "Goals (--slo) ", verdictBadge(slo.verdict)),
      el("table", { class: "rules" }, el("tbody", {}, slo.goals.map((g) => el("tr", { "data-goal": g.goal },
        el("td", {}, g.goal), el("td", {}, g.measured), el("td", {}, verdictBadge(g.pass ? "pass" : "fail"))))))) : null,
    (r.distributions || []).length ? el("section", { id: "distributions" }, el("h3", {}, "Latency: baseline and candidate"),
      el("div", { class: "dists" }, r.distributions.map(distributionView))) : null,
    el("section", { id: "diffs" }, el("h3", {}, `Differences left (${diffs.length} fields)`),
      diffs.length ? el("table", { class: "rules" },
        el("thead", {}, el("tr", {}, ["endpoint", "field", "responses", "from mocks", "compared as", ""].map((h) => el("th", {}, h)))),
        el("tbody", {}, diffs.map((g) => el("tr", { "data-field": g.field },
          el("td", {}, g.endpoint), el("td", {}, el("code", {}, g.field)), el("td", {}, g.count), el("td", {}, g.deterministic),
          el("td", {}, g.comparator), el("td", {}, markButton(g.endpoint, { field: g.field, outcome: g.count > g.deterministic ? "differs" : "", deterministic: false }))))))
        : el("p", { class: "muted" }, "none")),
    el("section", { id: "three-way" }, el("h3", {}, "Differing requests: recorded, baseline, candidate"),
      three.map((t) => el("div", { class: "three", "data-line": t.line },
        el("h4", {}, `${t.endpoint} `, el("span", { class: "muted" }, `inbound.jsonl line ${t.line}, copy ${t.copy}, iteration ${t.iteration}`)),
        el("table", { class: "rules threeway" },
          el("thead", {}, el("tr", {}, ["field", "recorded", "baseline", "candidate", "outcome", "decided by", ""].map((h) => el("th", {}, h)))),
          el("tbody", {}, t.fields.map((f) => el("tr", { "data-field": f.field, "data-outcome": f.outcome, class: `o-${f.outcome}` },
            el("td", {}, el("code", {}, f.field)), el("td", {}, cell(f.recorded)),
            el("td", {}, f.baseline === undefined ? el("span", { class: "muted" }, "-") : cell(f.baseline)),
            el("td", {}, cell(f.candidate)), el("td", {}, f.outcome), el("td", {}, f.by || "exact"),
            el("td", {}, markButton(t.endpoint, f))))))))),
    el("section", { id: "noise-rules" }, el("h3", {}, "Noise rules"),
      rules.length ? el("table", { class: "rules" },
        el("thead", {}, el("tr", {}, ["endpoint", "field", "source", "rate here", "applied", "why", "silenced"].map((h) => el("th", {}, h)))),
        el("tbody", {}, rules.map((x) => el("tr", { "data-field": x.field },
          el("td", {}, x.endpoint), el("td", {}, el("code", {}, x.field)), el("td", {}, x.source), el("td", {}, pct(x.rate)),
          el("td", {}, x.applied ? "yes" : "no"), el("td", {}, x.why), el("td", {}, x.suppressed)))))
        : el("p", { class: "muted" }, "none")),
  ].filter(Boolean));
}

async function markNoise(endpoint, field, add) {
  try {
    const data = await api(`api/reports/${encodeURIComponent(state.report)}/noise`, {
      method: add ? "POST" : "DELETE", headers: { "content-type": "application/json" }, body: JSON.stringify({ endpoint, field }) });
    const verdict = data.recomputed ? data.recomputed.verdict : "?";
    renderReport(data, `${add ? "added" : "removed"} the noise rule ${endpoint} ${field} in ${data.noise}; verdict now ${verdict}`);
    const again = $(`#three-way button[data-field="${CSS.escape(field)}"]`);
    if (again) again.focus();
  } catch (error) { showError(error); }
}

// ---- views ---------------------------------------------------------------------------------
async function apply(push) {
  showError(null);
  state.q = $("#filter").value.trim();
  state.from = $("#from").value.trim();
  state.to = $("#to").value.trim();
  writeUrl(push);
  $("#har").href = "api/har?" + filterParams();
  try { await render(); } catch (error) { showError(error); }
}

async function render() {
  $("#filter-form").hidden = state.view === "replays";
  for (const v of ["explore", "map", "snapshots", "replays"]) {
    $(`#view-${v}`).hidden = v !== state.view;
    const link = $(`#nav-${v}`);
    if (v === state.view) link.setAttribute("aria-current", "page"); else link.removeAttribute("aria-current");
  }
  if (state.view === "explore") { await loadRows(); await loadDetail(); }
  else if (state.view === "map") await loadMap();
  else if (state.view === "snapshots") await loadSnapshots();
  else if (state.view === "replays") await loadReports();
}

function syncInputs() {
  $("#filter").value = state.q; $("#from").value = state.from; $("#to").value = state.to;
  $("#har").href = "api/har?" + filterParams();
}

async function main() {
  readUrl();
  syncInputs();
  $("#filter-form").addEventListener("submit", (e) => { e.preventDefault(); state.id = ""; apply(true); });
  $("#more").addEventListener("click", () => loadMore().catch(showError));
  $("#live").addEventListener("change", (e) => setLive(e.target.checked));
  $("#cut-form").addEventListener("submit", cutSnapshot);
  for (const link of document.querySelectorAll("nav a")) {
    link.addEventListener("click", (e) => { e.preventDefault(); state.view = link.dataset.view; writeUrl(true); render().catch(showError); });
  }
  window.addEventListener("popstate", () => { readUrl(); syncInputs(); render().catch(showError); });
  const input = $("#filter");
  input.addEventListener("input", updateCompletions);
  input.addEventListener("blur", () => { $("#completions").hidden = true; });
  input.addEventListener("keydown", (e) => {
    const open = !$("#completions").hidden;
    if (open && (e.key === "ArrowDown" || e.key === "ArrowUp")) { e.preventDefault(); moveCompletion(e.key === "ArrowDown" ? 1 : -1); }
    else if (open && (e.key === "Tab" || e.key === "Enter") && completionIndex >= 0) {
      e.preventDefault(); acceptCompletion($("#completions").children[completionIndex].dataset.value);
    } else if (e.key === "Escape") { $("#completions").hidden = true; }
  });
  // Keyboard: / filter, j/k or arrows move, Enter opens, Esc closes the detail.
  document.addEventListener("keydown", (e) => {
    if (e.target.closest("input, select, textarea")) return;
    if (e.key === "/") { e.preventDefault(); input.focus(); }
    else if (state.view !== "explore") return;
    else if (e.key === "j" || e.key === "ArrowDown") { e.preventDefault(); select(Math.min(state.rows.length - 1, state.selected + 1), false); }
    else if (e.key === "k" || e.key === "ArrowUp") { e.preventDefault(); select(Math.max(0, state.selected - 1), false); }
    else if (e.key === "Enter" && state.selected >= 0 && !e.target.closest("button, a")) { e.preventDefault(); select(state.selected, true); }
    else if (e.key === "Escape") { state.id = ""; writeUrl(false); $("#detail").hidden = true; }
  });
  try {
    const [info, cols] = await Promise.all([api("api/info"), api("api/columns")]);
    $("#source").textContent = `reading ${info.source}${info.snapshots ? `; snapshots in ${info.snapshots}` : "; read-only"}${info.reports ? `; ${info.reports} replay report(s)` : ""}`;
    if (!info.traffic && !new URLSearchParams(location.search).get("view")) { state.view = "replays"; if (info.reports) state.report = state.report || "0"; writeUrl(false); }
    if (!info.traffic) { for (const v of ["explore", "map", "snapshots"]) $(`#nav-${v}`).hidden = true; }
    state.columns = cols.columns; state.functions = cols.functions;
  } catch (error) { showError(error); }
  try { await render(); } catch (error) { showError(error); }
  document.body.dataset.ready = "true";
}

main();
