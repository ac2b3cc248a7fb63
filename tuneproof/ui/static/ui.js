// tuneproof ui: a little JavaScript over the app's JSON routes. No framework, no CDN.
"use strict";
const $ = (sel, root) => (root || document).querySelector(sel);
const el = (tag, attrs, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") e.textContent = v; else if (v !== null && v !== undefined && v !== false) e.setAttribute(k, v);
  }
  for (const kid of kids) if (kid !== null && kid !== undefined) e.append(kid);
  return e;
};
async function api(method, url, body) {
  const opts = { method, headers: { "X-Tuneproof-UI": "1" } };
  if (body instanceof Blob) { opts.body = body; }
  else if (body !== undefined) { opts.body = JSON.stringify(body); opts.headers["content-type"] = "application/json"; }
  const r = await fetch(url, opts);
  const data = await r.json().catch(() => ({}));
  if (!r.ok) { const err = new Error(data.error || data.detail || r.statusText); err.data = data; err.status = r.status; throw err; }
  return data;
}
const fmt = (x) => (x === null || x === undefined) ? "—" : (typeof x === "number" ? (Math.abs(x) < 1000 ? x.toFixed(3) : String(x)) : String(x));
const interval = (m) => m ? `${fmt(m.value ?? m.diff)} [${fmt(m.low)}, ${fmt(m.high)}]` : "—";
function problemList(problems, title) {
  if (!problems || !problems.length) return el("div", { class: "problems none", text: `${title}: no problems` });
  const box = el("div", { class: "problems" }, el("b", { text: `${title}: ${problems.length} problem(s)` }));
  const ul = el("ul");
  for (const p of problems) ul.append(el("li", { text: `${p.where}: ${p.message}` }));
  box.append(ul);
  return box;
}
async function fillSelect(select, files, keep) {
  for (const f of files) select.append(el("option", { value: f, text: f }));
  if (keep && files.includes(keep)) select.value = keep;
}

// ---------------------------------------------------------------- Data
async function dataPage() {
  const fileSel = $("#data-file");
  const files = (await api("GET", "/api/files?kind=data")).files;
  await fillSelect(fileSel, files, localStorage.getItem("tp.data"));
  let profile = null;
  async function load(labelColumn) {
    if (!fileSel.value) return;
    const q = new URLSearchParams({ path: fileSel.value });
    if (labelColumn) q.set("label_column", labelColumn);
    profile = await api("GET", "/api/data/profile?" + q);
    localStorage.setItem("tp.data", profile.path);
    $("#data-summary").textContent = `${profile.path}: ${profile.rows} rows, columns ${profile.columns.join(", ")}` +
      (profile.read_problems.length ? `; ${profile.read_problems.length} reading problem(s)` : "");
    for (const [id, guess] of [["#text-column", profile.text_column], ["#label-column", profile.label_column]]) {
      const s = $(id); s.replaceChildren();
      for (const c of profile.columns) s.append(el("option", { value: c, text: c }));
      if (guess) s.value = guess;
    }
    const table = $("#preview"); table.replaceChildren();
    table.append(el("thead", {}, el("tr", {}, ...profile.columns.map((c) => el("th", { text: c })))));
    const tb = el("tbody");
    for (const row of profile.preview) tb.append(el("tr", {}, ...profile.columns.map((c) => el("td", { text: row[c] === null ? "" : String(row[c]) }))));
    table.append(tb);
    drawLabels();
    $("#columns-section").hidden = false; $("#preview-section").hidden = false;
    $("#data-problems").replaceChildren();
  }
  function drawLabels() {
    const box = $("#labels"); box.replaceChildren();
    const counts = profile.label_counts; const total = Object.values(counts).reduce((a, b) => a + b, 0) || 1;
    const t = el("table", { id: "label-table" });
    for (const [label, n] of Object.entries(counts)) {
      const bar = el("div", { class: "bar" }, el("span", { style: `width:${(100 * n / total).toFixed(1)}%` }), el("em", { text: `${n} (${(100 * n / total).toFixed(1)}%)` }));
      t.append(el("tr", {}, el("td", {}, el("input", { type: "checkbox", class: "keep", value: label, checked: "checked" })), el("th", { text: label }), el("td", {}, bar)));
    }
    box.append(Object.keys(counts).length ? t : el("p", { class: "muted", text: "this column has no label-like values" }));
  }
  const choice = () => {
    const labels = [...document.querySelectorAll("input.keep")].filter((c) => c.checked).map((c) => c.value);
    const all = Object.keys(profile.label_counts);
    return { path: profile.path, text_column: $("#text-column").value, label_column: $("#label-column").value,
             labels: labels.length === all.length ? null : labels };
  };
  fileSel.addEventListener("change", () => load());
  $("#label-column").addEventListener("change", () => load($("#label-column").value).then(() => {}));
  $("#upload").addEventListener("change", async (ev) => {
    const f = ev.target.files[0]; if (!f) return;
    const r = await api("POST", "/api/upload?name=" + encodeURIComponent(f.name), f);
    fileSel.append(el("option", { value: r.path, text: r.path })); fileSel.value = r.path; load();
  });
  $("#data-check").addEventListener("click", async () => {
    const box = $("#data-problems"); box.replaceChildren(el("p", { class: "muted", text: "validating…" }));
    try {
      const r = await api("POST", "/api/data/validate", choice());
      box.replaceChildren(problemList(r.problems, "protocol"), problemList(r.data_problems, "data"));
    } catch (e) { box.replaceChildren(problemList((e.data && e.data.problems) || [{ where: "data", message: e.message }], "data")); }
  });
  $("#to-protocol").addEventListener("click", () => {
    localStorage.setItem("tp.choice", JSON.stringify(choice()));
    location.href = "/protocol?from=data";
  });
  if (fileSel.value) load();
}

// ---------------------------------------------------------------- Protocol (form from the JSON Schema)
// Every widget is chosen from the schema node alone (object, optional object, list, map, union, leaf),
// so a field added to the pydantic models gets its widget without a line here. Paths are written as
// the protocol loader names problems ("gates[0].metric"), so a problem lands on its widget.
const deref = (schema, p) => (p && p.$ref ? schema.$defs[p.$ref.split("/").pop()] : p);
const pathText = (p) => p.reduce((s, k) => (typeof k === "number" ? `${s}[${k}]` : (s ? `${s}.${k}` : String(k))), "");
const getAt = (obj, path) => path.reduce((o, k) => (o !== null && typeof o === "object" ? o[k] : undefined), obj);
// Optional sections switched on: an empty one means "on, with its defaults" and must stay.
const pinned = new Set();
function setAt(obj, path, value) {
  let o = obj;
  path.slice(0, -1).forEach((k, i) => {
    const wantList = typeof path[i + 1] === "number";
    if (o[k] === null || typeof o[k] !== "object" || Array.isArray(o[k]) !== wantList) o[k] = wantList ? [] : {};
    o = o[k];
  });
  const last = path[path.length - 1];
  if (value === undefined && !Array.isArray(o)) delete o[last]; else o[last] = value;
  // Drop mappings left empty, so a cleared field returns to the default instead of writing {}.
  for (let i = path.length - 1; i > 0; i--) {
    const parent = getAt(obj, path.slice(0, i));
    if (pinned.has(pathText(path.slice(0, i)))) break;
    if (parent && typeof parent === "object" && !Array.isArray(parent) && Object.keys(parent).length === 0) {
      const up = i === 1 ? obj : getAt(obj, path.slice(0, i - 1));
      if (Array.isArray(up)) break;
      delete up[path[i - 1]];
    } else break;
  }
}
// The options of a node: anyOf/oneOf members (null apart), or the node itself.
function options(schema, prop) {
  const all = prop.anyOf || prop.oneOf || [prop];
  return { opts: all.filter((o) => o.type !== "null").map((o) => ({ raw: o, node: deref(schema, o) })),
           nullable: all.some((o) => o.type === "null") };
}
function shapeOf(node) {
  if (node.enum || node.const !== undefined) return "enum";
  if (node.type === "object" && node.properties) return "object";
  if (node.type === "object" && node.additionalProperties && typeof node.additionalProperties === "object") return "map";
  if (node.type === "array" && node.items) return "list";
  if (["boolean", "integer", "number", "string"].includes(node.type)) return node.type;
  return "json";
}
function variantName(node) {
  if (node.const !== undefined) return String(node.const);
  if (node.title && node.type === "object") {
    const tag = Object.values(node.properties || {}).find((p) => p.const !== undefined);
    return tag ? String(tag.const) : node.title;
  }
  return { string: "text", number: "number", integer: "whole number", boolean: "yes/no", array: "list", object: "mapping" }[node.type] || "value";
}
function fits(node, v) {
  const shape = shapeOf(node);
  if (shape === "enum") return (node.enum || [node.const]).includes(v);
  if (shape === "object") {
    if (v === null || typeof v !== "object" || Array.isArray(v)) return false;
    const props = node.properties;
    return Object.keys(v).every((k) => k in props) &&
      Object.entries(props).every(([k, p]) => p.const === undefined || v[k] === undefined || v[k] === p.const);
  }
  if (shape === "map") return v !== null && typeof v === "object" && !Array.isArray(v);
  if (shape === "list") return Array.isArray(v);
  if (shape === "integer") return Number.isInteger(v);
  if (shape === "number") return typeof v === "number";
  if (shape === "string" || shape === "boolean") return typeof v === shape;
  return true;
}
function emptyOf(node) {
  const shape = shapeOf(node);
  if (shape === "object") {
    const out = {};
    for (const [k, p] of Object.entries(node.properties)) if (p.const !== undefined) out[k] = p.const;
    return out;
  }
  const number = node.default ?? node.minimum ?? 0; // a number variant needs a number to stay chosen
  return { map: {}, list: [], string: "", enum: node.enum ? node.enum[0] : node.const, boolean: false,
           number, integer: number }[shape];
}
const problemBox = (path) => el("div", { class: "problem", "data-problem-for": pathText(path) });
const helpText = (prop, required) => (prop.description || "") +
  (prop.default !== undefined ? ` Default: ${JSON.stringify(prop.default)}.` : (required ? " Required." : ""));

// One protocol value at `path`: the widget its schema node calls for.
function widget(ctx, prop, path, opts) {
  const { schema, state } = ctx;
  const { opts: choices, nullable } = options(schema, prop);
  if (!choices.length) return leaf(ctx, {}, prop, path, nullable, opts);
  if (choices.length === 1) {
    const node = choices[0].node;
    return shapeOf(node) === "object" ? optionalObject(ctx, node, prop, path) : shaped(ctx, node, prop, path, nullable, opts);
  }
  return union(ctx, choices, prop, path, nullable, opts);
}
function shaped(ctx, node, prop, path, nullable, opts) {
  const shape = shapeOf(node);
  if (shape === "object") return objectFields(ctx, node, path, el("div", { class: "object" }));
  if (shape === "list") return list(ctx, node, prop, path);
  if (shape === "map") return map(ctx, node, prop, path);
  return leaf(ctx, node, prop, path, nullable, opts);
}
function leaf(ctx, node, prop, path, nullable, opts) {
  const shape = shapeOf(node), dotted = pathText(path), inList = opts && opts.inList;
  const current = getAt(ctx.state, path);
  const id = "f-" + dotted.replace(/[^A-Za-z0-9]/g, "-");
  let input;
  if (shape === "enum" || shape === "boolean") {
    const values = shape === "boolean" ? [true, false] : (node.enum || [node.const]);
    input = el("select", { id });
    if (!inList) input.append(el("option", { value: "", text: "default" + (prop.default !== undefined ? ` (${JSON.stringify(prop.default)})` : "") }));
    for (const v of values) input.append(el("option", { value: JSON.stringify(v), text: String(v) }));
    if (nullable) input.append(el("option", { value: "null", text: "null" }));
    if (current !== undefined) input.value = JSON.stringify(current);
  } else if (shape === "json") {
    input = el("textarea", { id, rows: 2, placeholder: prop.default !== undefined ? JSON.stringify(prop.default) : "JSON" });
    if (current !== undefined) input.value = JSON.stringify(current);
  } else {
    const number = shape === "integer" || shape === "number";
    input = el("input", { id, type: number ? "number" : "text", step: shape === "integer" ? "1" : "any",
      placeholder: prop.default !== undefined && prop.default !== null ? String(prop.default) : ((opts && opts.required) ? "required" : "") });
    if (current !== undefined && current !== null) input.value = String(current);
  }
  input.dataset.path = dotted;
  const problem = problemBox(path);
  input.addEventListener("input", () => {
    let value; const raw = input.value; input.classList.remove("invalid"); problem.textContent = "";
    if (raw === "") value = inList ? (shape === "string" ? "" : null) : undefined;
    else if (shape === "enum" || shape === "boolean") value = JSON.parse(raw);
    else if (shape === "integer" || shape === "number") value = Number(raw);
    else if (shape === "json") {
      try { value = JSON.parse(raw); } catch (e) { input.classList.add("invalid"); problem.textContent = "not valid JSON: " + e.message; return; }
    } else value = raw;
    setAt(ctx.state, path, value); ctx.changed();
  });
  return el("span", { class: "leaf" }, input, problem);
}
function field(ctx, key, prop, path, required) {
  const dotted = pathText(path);
  const body = widget(ctx, prop, path, { required });
  const structured = body.classList.contains("section");
  if (structured) return body;
  return el("div", { class: "field" }, el("label", { for: "f-" + dotted.replace(/[^A-Za-z0-9]/g, "-"), text: dotted }), body,
            el("small", { text: helpText(prop, required) }));
}
const OPEN_SECTIONS = ["model", "data", "split", "train", "gates"];
function section(ctx, prop, path, build) {
  const dotted = pathText(path);
  const det = el("details", { class: "section", "data-section": dotted,
                              open: (path.length === 1 && OPEN_SECTIONS.includes(path[0])) || typeof path[path.length - 1] === "number" ? "open" : null });
  det.append(el("summary", { text: dotted }), el("small", { class: "muted", text: helpText(prop, false) }), problemBox(path));
  build(det);
  return det;
}
function objectFields(ctx, node, path, container) {
  const required = new Set(node.required || []);
  for (const [key, p] of Object.entries(node.properties)) {
    if (p.const !== undefined && path.length) continue; // a union's tag: the variant picker sets it
    container.append(field(ctx, key, p, [...path, key], required.has(key)));
  }
  return container;
}
// A nested model: always there (its defaults apply), or optional ("off when unset").
function optionalObject(ctx, node, prop, path) {
  const { nullable } = options(ctx.schema, prop);
  return section(ctx, prop, path, (det) => {
    const body = el("div", { class: "object" });
    const draw = () => { body.replaceChildren(); const v = getAt(ctx.state, path); if (!nullable || (v !== undefined && v !== null)) objectFields(ctx, node, path, body); };
    if (nullable) {
      const v = getAt(ctx.state, path);
      const on = el("input", { type: "checkbox", "data-toggle-for": pathText(path), checked: v !== undefined && v !== null ? "checked" : null });
      if (on.checked) pinned.add(pathText(path));
      on.addEventListener("change", () => {
        if (on.checked) pinned.add(pathText(path)); else pinned.delete(pathText(path));
        setAt(ctx.state, path, on.checked ? emptyOf(node) : undefined); draw(); ctx.changed();
      });
      det.append(el("label", { class: "toggle" }, on, ` set ${pathText(path)}`));
    }
    det.append(body); draw();
  });
}
function list(ctx, node, prop, path) {
  const item = node.items;
  return section(ctx, prop, path, (det) => {
    det.classList.add("widget-list");
    const rows = el("div", { class: "items" });
    const note = el("small", { class: "muted" });
    const draw = () => {
      rows.replaceChildren();
      const v = getAt(ctx.state, path);
      note.textContent = v === undefined ? `unset: the default ${JSON.stringify(prop.default ?? null)} applies` : `${v.length} item(s)`;
      (v || []).forEach((_, i) => {
        const remove = el("button", { type: "button", class: "small", "data-remove-for": pathText([...path, i]), title: "remove", text: "×" });
        remove.addEventListener("click", () => { const arr = getAt(ctx.state, path); arr.splice(i, 1); draw(); ctx.changed(); });
        rows.append(el("div", { class: "widget-item" }, el("div", { class: "widget-body" }, widget(ctx, item, [...path, i], { inList: true })), remove));
      });
    };
    const add = el("button", { type: "button", class: "small", "data-add-for": pathText(path), text: "+ add" });
    add.addEventListener("click", () => {
      const arr = getAt(ctx.state, path) || [];
      const { opts } = options(ctx.schema, item);
      setAt(ctx.state, path, [...arr, emptyOf(opts[0].node)]); draw(); ctx.changed();
    });
    const reset = el("button", { type: "button", class: "small", "data-default-for": pathText(path), text: "↺ default" });
    reset.addEventListener("click", () => { setAt(ctx.state, path, undefined); draw(); ctx.changed(); });
    det.append(note, rows, el("div", { class: "row" }, add, reset));
    draw();
  });
}
function map(ctx, node, prop, path) {
  const value = node.additionalProperties, keys = node.propertyNames && node.propertyNames.enum;
  return section(ctx, prop, path, (det) => {
    const rows = el("div", { class: "items" });
    const draw = () => {
      rows.replaceChildren();
      for (const k of Object.keys(getAt(ctx.state, path) || {})) {
        const remove = el("button", { type: "button", class: "small", "data-remove-for": pathText([...path, k]), text: "×" });
        remove.addEventListener("click", () => { setAt(ctx.state, [...path, k], undefined); draw(); ctx.changed(); });
        const w = widget(ctx, value, [...path, k], { inList: true });
        if (w.tagName === "DETAILS") w.open = true; // an entry just added is edited next
        rows.append(el("div", { class: "widget-map-row" }, el("b", { text: k }), el("div", { class: "widget-body" }, w), remove));
      }
    };
    const name = keys ? el("select", { "data-key-for": pathText(path) }, ...keys.map((k) => el("option", { value: k, text: k })))
                      : el("input", { "data-key-for": pathText(path), placeholder: "key" });
    const add = el("button", { type: "button", class: "small", "data-add-for": pathText(path), text: "+ add" });
    add.addEventListener("click", () => {
      const k = name.value.trim(); if (!k || (getAt(ctx.state, path) || {})[k] !== undefined) return;
      setAt(ctx.state, [...path, k], emptyOf(deref(ctx.schema, options(ctx.schema, value).opts[0].raw))); draw(); ctx.changed();
    });
    det.append(rows, el("div", { class: "row" }, name, add));
    draw();
  });
}
function union(ctx, choices, prop, path, nullable, opts) {
  const dotted = pathText(path);
  const pick = el("select", { class: "widget-variant", "data-variant-for": dotted });
  if (!(opts && opts.inList)) pick.append(el("option", { value: "", text: "default" + (prop.default !== undefined ? ` (${JSON.stringify(prop.default)})` : "") }));
  choices.forEach((c, i) => pick.append(el("option", { value: String(i), text: variantName(c.node) })));
  if (nullable) pick.append(el("option", { value: "null", text: "null" }));
  const body = el("div", { class: "widget-body" });
  const draw = () => {
    body.replaceChildren();
    const v = getAt(ctx.state, path);
    if (v === undefined) { pick.value = pick.querySelector('option[value=""]') ? "" : "0"; return; }
    if (v === null) { pick.value = "null"; return; }
    const i = choices.findIndex((c) => fits(c.node, v));
    pick.value = String(Math.max(i, 0));
    const c = choices[Math.max(i, 0)];
    if (shapeOf(c.node) === "enum") return; // a constant: the picker is the value
    body.append(shaped(ctx, c.node, c.node.description ? c.node : prop, path, false, { inList: true }));
  };
  pick.addEventListener("change", () => {
    const v = pick.value === "" ? undefined : pick.value === "null" ? null : emptyOf(choices[Number(pick.value)].node);
    setAt(ctx.state, path, v); draw(); ctx.changed();
  });
  draw();
  return el("div", { class: "union" }, pick, body);
}
function renderForm(schema, state, changed, container) {
  pinned.clear();
  objectFields({ schema, state, changed }, schema, [], container);
}
function showProblems(problems) {
  document.querySelectorAll("[data-problem-for]").forEach((e) => { e.textContent = ""; });
  document.querySelectorAll(".invalid").forEach((e) => e.classList.remove("invalid"));
  const general = [];
  for (const pr of problems) {
    let path = pr.where, target = null;
    while (path) {
      target = document.querySelector(`[data-problem-for="${CSS.escape(path)}"]`);
      if (target) break;
      const cut = Math.max(path.lastIndexOf("."), path.lastIndexOf("["));
      path = cut > 0 ? path.slice(0, cut) : "";
    }
    if (!target) { general.push(pr); continue; }
    target.textContent = (target.textContent ? target.textContent + "; " : "") + (path === pr.where ? "" : pr.where + ": ") + pr.message;
    const input = document.querySelector(`[data-path="${CSS.escape(path)}"]`);
    if (input) input.classList.add("invalid");
    for (let det = target.closest("details"); det; det = det.parentElement && det.parentElement.closest("details")) det.open = true;
  }
  $("#general-problems").replaceChildren(...(general.length ? [problemList(general, "protocol")] : []));
  $("#problem-count").replaceChildren(problemList(problems, "live check"));
}
async function protocolPage() {
  const schema = await api("GET", "/api/schema");
  const taskSel = $("#task");
  for (const t of schema.properties.task.enum) taskSel.append(el("option", { value: t, text: t }));
  let state = {};
  let timer = null;
  const check = async () => {
    const r = await api("POST", "/api/protocol/check", { protocol: state });
    $("#yaml").textContent = r.yaml; showProblems(r.problems);
  };
  const changed = () => { clearTimeout(timer); timer = setTimeout(check, 250); };
  const render = () => { const form = $("#form"); form.replaceChildren(); renderForm(schema, state, changed, form); check(); };
  async function loadTemplate() {
    const stored = localStorage.getItem("tp.choice");
    const choice = stored ? JSON.parse(stored) : null;
    const r = await api("POST", "/api/template?task=" + encodeURIComponent(taskSel.value), choice || undefined);
    state = r.protocol;
    $("#template-note").textContent = choice ? `from ${choice.path} (${choice.text_column} → ${choice.label_column})` : "a minimal template";
    if (state.name) $("#save-name").value = state.name + ".yaml";
    render();
  }
  taskSel.value = "classification";
  taskSel.addEventListener("change", loadTemplate);
  $("#load-template").addEventListener("click", loadTemplate);
  $("#save").addEventListener("click", async () => {
    const box = $("#save-status"); box.replaceChildren(el("p", { class: "muted", text: "saving and validating with the data…" }));
    try {
      const r = await api("POST", "/api/protocol/save", { path: $("#save-name").value, protocol: state });
      if (!r.saved) { showProblems(r.problems); box.replaceChildren(el("p", { class: "problems", text: "not saved: fix the problems first" })); return; }
      localStorage.setItem("tp.protocol", r.path);
      box.replaceChildren(el("p", { id: "saved", text: `saved ${r.path}` }), problemList(r.problems, "validate"),
                          el("a", { href: "/run", text: "Run it →" }));
    } catch (e) { box.replaceChildren(problemList([{ where: "save", message: e.message }], "save")); }
  });
  await loadTemplate();
}

// ---------------------------------------------------------------- Run
function curveSvg(train, validation) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg"); svg.setAttribute("class", "curve"); svg.setAttribute("viewBox", "0 0 640 180");
  const pts = train.filter((p) => Number.isFinite(p[1]));
  if (!pts.length) return svg;
  const maxStep = Math.max(...pts.map((p) => p[0]), 1), ys = pts.map((p) => p[1]);
  const lo = Math.min(...ys), hi = Math.max(...ys), span = hi - lo || 1;
  const x = (s) => 40 + 590 * s / maxStep, y = (v) => 165 - 150 * (v - lo) / span;
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", pts.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" "));
  line.setAttribute("fill", "none"); line.setAttribute("stroke", "#2563eb"); line.setAttribute("stroke-width", "1.5");
  svg.append(line);
  for (const [step, metrics] of validation) {
    const keys = Object.keys(metrics); if (!keys.length) continue;
    const c = document.createElementNS(ns, "circle");
    c.setAttribute("cx", x(step)); c.setAttribute("cy", 20); c.setAttribute("r", 4); c.setAttribute("fill", "#15803d");
    const t = document.createElementNS(ns, "title"); t.textContent = `step ${step}: ` + keys.map((k) => `${k} ${fmt(metrics[k])}`).join(", ");
    c.append(t); svg.append(c);
  }
  const label = document.createElementNS(ns, "text"); label.setAttribute("x", 4); label.setAttribute("y", 12); label.setAttribute("font-size", "11");
  label.textContent = `loss ${fmt(lo)}–${fmt(hi)} · ● validation`; svg.append(label);
  return svg;
}
async function runPage() {
  const sel = $("#protocol-file");
  await fillSelect(sel, (await api("GET", "/api/files?kind=protocol")).files, localStorage.getItem("tp.protocol"));
  let current = new URLSearchParams(location.search).get("job");
  let timer = null;
  async function poll() {
    if (!current) return;
    const p = await api("GET", "/api/jobs/" + current);
    $("#job").hidden = false; $("#job-id").textContent = p.id;
    const st = $("#status"); st.textContent = p.status; st.className = "chip " + p.status;
    $("#stage").textContent = p.stage || "starting"; $("#step").textContent = p.step ? `${p.step}/${p.total_steps}` : "—";
    $("#loss").textContent = fmt(p.loss); $("#eta").textContent = p.eta || "—"; $("#run-dir").textContent = p.run_dir || "—";
    $("#progress-bar").style.width = p.status === "passed" || p.status === "rejected" ? "100%" : (p.total_steps ? `${(100 * p.step / p.total_steps).toFixed(0)}%` : "0%");
    $("#curves").replaceChildren(curveSvg(p.train_curve || [], p.validation_curve || []));
    $("#log").textContent = p.log_tail.join("\n");
    $("#stop").hidden = !p.alive;
    $("#resume").hidden = !(["interrupted", "stopped"].includes(p.status) && p.run_dir);
    const rep = $("#open-report");
    rep.hidden = !(p.run_dir && (p.status === "passed" || p.status === "rejected" || p.status === "failed"));
    if (p.run_dir) rep.href = "/view/" + p.run_dir;
    rep.textContent = "Open the report";
    if (p.alive || p.status === "starting") timer = setTimeout(poll, 1000);
    listJobs();
  }
  async function listJobs() {
    const t = $("#jobs"); const js = (await api("GET", "/api/jobs")).jobs;
    t.replaceChildren(el("tr", {}, ...["job", "protocol", "status", "stage", "run folder"].map((h) => el("th", { text: h }))));
    for (const j of js) t.append(el("tr", {}, el("td", {}, el("a", { href: "/run?job=" + j.id, text: j.id })), el("td", { text: j.protocol || ("resume " + j.resume) }),
                                    el("td", {}, el("span", { class: "chip " + j.status, text: j.status })), el("td", { text: j.stage || "" }), el("td", { text: j.run_dir || "" })));
  }
  const follow = (id) => { current = id; history.replaceState(null, "", "/run?job=" + id); clearTimeout(timer); poll(); };
  $("#start").addEventListener("click", async () => follow((await api("POST", "/api/runs/start", { protocol: sel.value })).job));
  $("#stop").addEventListener("click", async () => { await api("POST", `/api/jobs/${current}/stop`); clearTimeout(timer); poll(); });
  $("#resume").addEventListener("click", async () => follow((await api("POST", "/api/runs/resume", { run: $("#run-dir").textContent })).job));
  listJobs(); poll();
}

// ---------------------------------------------------------------- Runs
async function runsPage() {
  const runs = (await api("GET", "/api/runs")).runs;
  const t = $("#runs-table");
  const names = [...new Set(runs.flatMap((r) => Object.keys(r.metrics)))];
  t.append(el("tr", {}, ...["", "run", "protocol", "status", "gates", ...names, "report"].map((h) => el("th", { text: h }))));
  for (const r of runs) {
    t.append(el("tr", { "data-run": r.run }, el("td", {}, el("input", { type: "checkbox", class: "pick", value: r.run })), el("td", { text: r.run }),
      el("td", { text: r.protocol }), el("td", {}, el("span", { class: "chip " + r.status, text: r.status + (r.deployable ? " · deployable" : "") })),
      el("td", { text: r.gates.total ? `${r.gates.passed}/${r.gates.total} passed` : "—" }),
      ...names.map((n) => el("td", { text: interval(r.metrics[n]) })),
      el("td", {}, r.has_report ? el("a", { href: "/view/" + r.run, text: "report" }) : "")));
  }
  $("#compare").addEventListener("click", async () => {
    const picked = [...document.querySelectorAll("input.pick")].filter((c) => c.checked).map((c) => c.value);
    const box = $("#compare-result"); $("#compare-section").hidden = false;
    if (picked.length !== 2) { box.replaceChildren(el("p", { class: "problems", text: "tick exactly two runs" })); return; }
    const [b, a] = picked; // the table lists the newest first: A is the older run
    const r = await api("GET", `/api/compare?a=${encodeURIComponent(a)}&b=${encodeURIComponent(b)}`);
    const side = el("table", { id: "compare-metrics" }, el("tr", {}, el("th", { text: "metric" }), el("th", { text: "A " + a }), el("th", { text: "B " + b })));
    for (const [m, v] of Object.entries(r.metrics)) side.append(el("tr", {}, el("td", { text: m }), el("td", { text: interval(v.a) }), el("td", { text: interval(v.b) })));
    const kids = [side];
    if (Object.keys(r.paired).length) {
      const pt = el("table", { id: "compare-paired" }, el("tr", {}, ...["B − A on the same test rows", `difference [${Math.round(100 * r.confidence)}% interval]`, "verdict"].map((h) => el("th", { text: h }))));
      for (const [m, d] of Object.entries(r.paired)) pt.append(el("tr", {}, el("td", { text: m + (d.lower_is_better ? " (lower is better)" : "") + (d.n !== r.n ? ` · ${d.n} rows` : "") }), el("td", { text: interval(d) }), el("td", {}, el("b", { text: d.verdict }))));
      kids.push(el("h3", { text: `Paired bootstrap on ${r.n} shared test rows of these ${r.task} runs (${r.samples} resamples, as the runs drew)` }), pt);
      if (r.note) kids.push(el("p", { class: "muted", id: "compare-note", text: r.note }));
    } else kids.push(el("p", { class: "problems", text: r.reason }));
    box.replaceChildren(...kids);
  });
}

// ---------------------------------------------------------------- Try
function answerBlock(title, m, id) {
  const kids = [el("h3", { text: title })];
  if (!m) return el("div", { class: "answer" }, ...kids, el("p", { class: "muted", text: "no answer" }));
  if (m.generation !== undefined) kids.push(el("p", { class: "generation", id: id ? id + "-generation" : null, text: m.generation || "(empty)" }));
  if (m.label !== undefined) kids.push(el("p", { id: id ? id + "-label" : null }, "label: ", el("b", { text: String(m.label) })));
  if (m.probabilities) {
    const t = el("table");
    for (const [k, v] of Object.entries(m.probabilities)) t.append(el("tr", {}, el("th", { text: k }), el("td", {}, el("div", { class: "bar" }, el("span", { style: `width:${(100 * v).toFixed(1)}%` }), el("em", { text: fmt(v) })))));
    kids.push(t);
  }
  kids.push(el("details", {}, el("summary", { text: "raw answer" }), el("pre", { text: JSON.stringify(m, null, 2) })));
  return el("div", { class: "answer" }, ...kids);
}
async function tryPage() {
  const runs = (await api("GET", "/api/runs")).runs.filter((r) => r.has_model);
  const sel = $("#try-run");
  const taskOf = {};
  for (const r of runs) { taskOf[r.run] = r.task; sel.append(el("option", { value: r.run, text: `${r.run} (${r.status})` })); }
  let history = [];
  const isChat = () => taskOf[sel.value] === "sft";
  const reset = () => {
    history = []; $("#chat-log").replaceChildren(); $("#try-out").replaceChildren();
    $("#chat").hidden = !isChat(); $("#chat-reset").hidden = !isChat();
    $("#try-go").textContent = isChat() ? "Send" : "Answer";
    $("#try-text").placeholder = isChat() ? "what is the colour of the sky" : "a warm, funny film";
  };
  sel.addEventListener("change", reset);
  $("#chat-reset").addEventListener("click", reset);
  reset();
  $("#try-go").addEventListener("click", async () => {
    const out = $("#try-out"); out.replaceChildren(el("p", { class: "muted", text: "loading the models and answering…" }));
    const text = $("#try-text").value;
    try {
      if (isChat()) {
        const messages = [...history, { role: "user", content: text }];
        const r = await api("POST", "/api/try", { run: sel.value, messages });
        // The conversation goes on with the fine-tuned model's answer; the base model answers the same turns.
        history = [...messages, { role: "assistant", content: r.model.generation }];
        const turn = el("div", { class: "turn" }, el("p", { class: "user" }, el("b", { text: "you: " }), text),
          el("div", { class: "side-by-side" }, answerBlock("Fine-tuned model" + (r.deployable ? "" : " (not deployable)"), r.model, "chat-model"),
            answerBlock("Base model", r.base, "chat-base")));
        $("#chat-log").append(turn);
        $("#try-text").value = "";
        out.replaceChildren(...(r.base_warning ? [el("p", { class: "problems", text: r.base_warning })] : []));
        return;
      }
      const r = await api("POST", "/api/try", { run: sel.value, text });
      const kids = [answerBlock("Model" + (r.deployable ? "" : " (gates failed: not deployable)"), r.model, "try")];
      if (r.base) kids.push(answerBlock("Base model", r.base, "try-base"));
      out.replaceChildren(el("div", { class: "side-by-side" }, ...kids), ...(r.base_warning ? [el("p", { class: "problems", text: r.base_warning })] : []));
    } catch (e) { out.replaceChildren(problemList((e.data && e.data.problems && e.data.problems.length) ? e.data.problems : [{ where: "try", message: e.message }], "try")); }
  });
}

async function loginPage() {
  $("#login").addEventListener("click", async () => {
    try { await api("POST", "/api/login", { key: $("#key").value }); location.href = "/data"; }
    catch (e) { $("#login-status").textContent = e.message; }
  });
}

const PAGES = { data: dataPage, protocol: protocolPage, run: runPage, runs: runsPage, try: tryPage, login: loginPage };
const start = PAGES[document.body.dataset.page];
if (start) start().catch((e) => { const m = el("div", { class: "problems", text: "error: " + e.message }); document.querySelector("main").prepend(m); });
