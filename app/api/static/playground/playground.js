// The playground at GET /: builds requests to the service's own endpoints, shows the answer,
// plots f and its derivative along one input (uPlot), draws the traced graph (Graphviz in
// WebAssembly, @viz-js/viz, from the answer's DOT text). Both libraries are vendored under
// ./vendor (pinned, see vendor.json); no layout or charting code is written here.
import uPlot from "./vendor/uplot/uPlot.esm.js";
import { instance as vizInstance } from "./vendor/viz-js/viz.js";

const EXAMPLES = [
  {
    name: "sin(x) and its derivative (the tutorial's exercise)",
    expression: "sin(x)",
    inputs: { x: 1.0 },
    plot: { along: "x", from: -6.2832, to: 6.2832 },
  },
  { name: "2 * dot(x, x)", expression: "2 * dot(x, x)", inputs: { x: [0, 1, 2, 3] } },
  {
    name: "A program with while and if",
    expression:
      "b = a * 2\nwhile norm(b) < 1000:\n    b = b * 2\nif sum(b) > 0:\n    c = b\nelse:\n    c = 100 * b\nreturn sum(c)",
    inputs: { a: [0.3, -0.2, 0.5, 0.1] },
  },
  {
    name: "detach: no gradient through u",
    expression: "u = detach(x * x)\nreturn sum(u * x)",
    inputs: { x: [0, 1, 2, 3] },
  },
  {
    name: "A constant input (requires_grad false)",
    expression: "sum(multiply(x, exp(c)))",
    inputs: { x: [1, 2, 3], c: { data: [0.1, 0.2, 0.3], requires_grad: false } },
  },
  {
    name: "Softplus and tanh, one element plotted",
    expression: "sum(tanh(softplus(w * x)))",
    inputs: { x: [-1.0, 0.5, 2.0], w: 1.5 },
    plot: { along: "x[1]" },
  },
  {
    name: "Jacobian of a vector function",
    expression:
      "stack([x[0] ** 3 + 2 * x[1] ** 2 + 3 * x[2], 3 * x[0] + 2 * x[1] ** 2 + x[2] ** 3, 2 * x[0] + x[1] ** 3 + 3 * x[2] ** 2])",
    inputs: { x: [1, 2, 3] },
    endpoint: "jacobian",
  },
  {
    name: "Hessian of the Rosenbrock function",
    expression: "sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)",
    inputs: { x: [-1.2, 1.0, 0.5] },
    endpoint: "hessian",
  },
  {
    name: "VJP with a cotangent",
    expression: "x * y",
    inputs: { x: [0, 1, 2, 3], y: [3, 4, 5, 6] },
    endpoint: "vjp",
    options: { cotangent: [2, 3, 4, 5] },
  },
  { name: "log at 0: a non-finite value", expression: "sum(log(x))", inputs: { x: [0.0, 1.0, 2.0] } },
];

const DERIVATIVE_FIELDS = ["gradients", "vjp", "jvp", "jacobian", "hessian", "hvp"];
const PLOT_CONCURRENCY = 4; // requests in flight at once while plotting
const PLOT_MAX_ELEMENTS = 64; // elements of one input offered in "Along"
const COLORS = { f: "#1f5fbf", df: "#c0392b" };

const $ = (id) => document.getElementById(id);
let apiKey = ""; // page memory only: never in the URL, storage or the curl text
let running = null; // AbortController of the computation in progress
let plot = null;
let vizReady = null;

// ---------------------------------------------------------------- the request

/** The page's fields, as plain data (what the link carries). */
function readState() {
  return {
    f: $("function").value,
    in: $("inputs").value,
    ep: $("endpoint").value,
    opt: $("options").value,
    along: $("plot-along").value,
    from: $("plot-from").value,
    to: $("plot-to").value,
    n: $("plot-points").value,
  };
}

function writeState(state) {
  $("function").value = state.f ?? "";
  $("inputs").value = state.in ?? "{}";
  $("endpoint").value = state.ep || "grad";
  $("options").value = state.opt ?? "";
  refreshAlong(state.along);
  $("plot-from").value = state.from ?? "";
  $("plot-to").value = state.to ?? "";
  $("plot-points").value = state.n || "61";
  if (state.from === undefined || state.from === "") defaultInterval();
}

class FieldError extends Error {
  constructor(field, message) {
    super(message);
    this.field = field;
  }
}

function parseJSONField(id, fallback) {
  const text = $(id).value.trim();
  if (!text) return fallback;
  try {
    return JSON.parse(text);
  } catch (e) {
    const lines = id === "inputs" ? parseAssignments(text) : null;
    if (lines) return lines;
    throw new FieldError(id, `${$(id).labels[0].textContent} is not JSON: ${e.message}`);
  }
}

/** Inputs written as the CLI takes them, one `name = JSON` a line (or `;`-separated). */
function parseAssignments(text) {
  const inputs = {};
  for (const part of text.split(/[\n;]/)) {
    if (!part.trim()) continue;
    const m = /^\s*([^=\s]+)\s*=(.*)$/.exec(part);
    if (!m) return null;
    try {
      inputs[m[1]] = JSON.parse(m[2]);
    } catch (e) {
      return null;
    }
  }
  return Object.keys(inputs).length ? inputs : null;
}

/** The function part of a body: JSON-graph text becomes `graph`, anything else `expression`. */
function functionPart(text) {
  if (text.trim().startsWith("{")) {
    try {
      const spec = JSON.parse(text);
      return { graph: spec.graph ?? spec };
    } catch (e) {
      // not JSON: send it as source, and let the service say where it is wrong
    }
  }
  return { expression: text };
}

/** The main request: what Compute sends (the curl command and the link say the same). */
function mainRequest(state) {
  const inputs = parseJSONField("inputs", {});
  const options = parseJSONField("options", {});
  if (typeof inputs !== "object" || Array.isArray(inputs) || inputs === null)
    throw new FieldError("inputs", "Inputs must be a JSON object: {\"x\": [1, 2]}");
  if (typeof options !== "object" || Array.isArray(options) || options === null)
    throw new FieldError("options", "Options must be a JSON object");
  return {
    path: state.ep,
    body: { ...functionPart(state.f), inputs, include_graph: "dot", ...options },
  };
}

/**
 * The request that computes the plot: f and df/d(element) at every point of `xs`, in ONE /jvp.
 *
 * THE one place that decides how plot points become requests. The chosen input is stacked
 * over the points with `batch: [name]` (API.md, "Many points and directions in one request"):
 * the service evaluates every point in one vectorised pass, and `value` and `jvp` gain a
 * leading axis B (one entry per point). The tangent (1 at the chosen element) has the
 * per-point shape, so every point shares it. readPlotAnswer splits the answer.
 */
function plotRequest(state, along, xs) {
  const inputs = parseJSONField("inputs", {});
  const input = inputs[along.name];
  return {
    path: "jvp",
    body: {
      ...functionPart(state.f),
      inputs: { ...inputs, [along.name]: stackedElement(input, along.index, xs) },
      tangents: { [along.name]: oneHot(valueOf(input), along.index) },
      batch: [along.name],
      include_graph: false,
    },
  };
}

/** [f, df] per point from plotRequest's answer (null where not finite). */
function readPlotAnswer(answer, count) {
  const values = perPoint(answer.body.value, count);
  const jvps = perPoint(answer.body.jvp, count);
  return values.map((v, i) => [firstNumber(v), firstNumber(jvps[i])]);
}

/**
 * The B entries of a batched answer array: the array itself, or, for a function with several
 * outputs (a list of outputs, each with the leading axis B), its first output's.
 */
function perPoint(v, count) {
  if (Array.isArray(v) && v.length === count) return v;
  if (Array.isArray(v) && Array.isArray(v[0]) && v[0].length === count) return v[0];
  return new Array(count).fill(null);
}

/**
 * The fallback when the service refuses the batch (a program whose control flow differs
 * between the points, or a batch over a limit): one /jvp per point, as before `batch`.
 */
function pointRequests(state, along, xs) {
  const inputs = parseJSONField("inputs", {});
  const fn = functionPart(state.f);
  const tangent = oneHot(valueOf(inputs[along.name]), along.index);
  return xs.map((x) => ({
    path: "jvp",
    body: {
      ...fn,
      inputs: { ...inputs, [along.name]: withElement(inputs[along.name], along.index, x) },
      tangents: { [along.name]: tangent },
      include_graph: false,
    },
  }));
}

/** [f, df] per point from the answers of pointRequests (null where not finite or failed). */
function readPointAnswers(answers) {
  return answers.map((a) =>
    a.ok ? [firstNumber(a.body.value), firstNumber(a.body.jvp)] : [null, null],
  );
}

// ---------------------------------------------------------------- values and elements

function valueOf(input) {
  return input !== null && typeof input === "object" && !Array.isArray(input) ? input.data : input;
}

function shapeOf(v) {
  const shape = [];
  while (Array.isArray(v)) {
    shape.push(v.length);
    v = v[0];
  }
  return shape;
}

function flatten(v) {
  return Array.isArray(v) ? v.flatMap(flatten) : [v];
}

/** A copy of nested list `v` with the flat element `index` set to `x` (index null: a scalar). */
function setFlat(v, index, x) {
  if (index === null) return x;
  let k = 0;
  const walk = (a) => (Array.isArray(a) ? a.map(walk) : k++ === index ? x : a);
  return walk(v);
}

/** The input stacked over `xs`: one copy per point, with its element `index` set to x. */
function stackedElement(input, index, xs) {
  if (input !== null && typeof input === "object" && !Array.isArray(input)) {
    // the plotted input is differentiated even if the request made it a constant
    return { ...input, data: xs.map((x) => setFlat(input.data, index, x)), requires_grad: true };
  }
  return xs.map((x) => setFlat(input, index, x));
}

function withElement(input, index, x) {
  if (input !== null && typeof input === "object" && !Array.isArray(input)) {
    // the plotted input is differentiated even if the request made it a constant
    return { ...input, data: setFlat(input.data, index, x), requires_grad: true };
  }
  return setFlat(input, index, x);
}

function oneHot(value, index) {
  return index === null ? 1.0 : zerosLike(value, index);
}

function zerosLike(value, hot) {
  let k = 0;
  const walk = (a) => (Array.isArray(a) ? a.map(walk) : k++ === hot ? 1.0 : 0.0);
  return walk(value);
}

function toNumber(v) {
  if (typeof v === "number") return v;
  if (v === "nan") return NaN;
  if (v === "inf") return Infinity;
  if (v === "-inf") return -Infinity;
  return NaN;
}

/** The first element of a (nested) answer array, or null if it is not finite. */
function firstNumber(v) {
  while (Array.isArray(v)) v = v[0];
  const x = toNumber(v);
  return Number.isFinite(x) ? x : null;
}

function multiIndex(shape, flat) {
  const idx = [];
  for (let d = shape.length - 1; d >= 0; d--) {
    idx.unshift(flat % shape[d]);
    flat = Math.floor(flat / shape[d]);
  }
  return idx;
}

/** "x" or "x[1]" / "x[0,2]" into {name, index (flat, or null for a scalar)}. */
function parseAlong(text, inputs) {
  const m = /^(.+?)(?:\[([\d,\s]+)\])?$/.exec(text || "");
  if (!m || !(m[1] in inputs)) return null;
  const shape = shapeOf(valueOf(inputs[m[1]]));
  if (!m[2]) return shape.length === 0 ? { name: m[1], index: null, label: m[1] } : null;
  const idx = m[2].split(",").map((s) => parseInt(s, 10));
  if (idx.length !== shape.length || idx.some((i, d) => !(i >= 0 && i < shape[d]))) return null;
  const flat = idx.reduce((acc, i, d) => acc * shape[d] + i, 0);
  return { name: m[1], index: flat, label: text };
}

function alongChoices(inputs) {
  const choices = [];
  for (const [name, input] of Object.entries(inputs)) {
    const value = valueOf(input);
    const shape = shapeOf(value);
    if (shape.length === 0) {
      if (typeof value === "number") choices.push(name);
      continue;
    }
    const count = Math.min(flatten(value).length, PLOT_MAX_ELEMENTS);
    for (let k = 0; k < count; k++) choices.push(`${name}[${multiIndex(shape, k).join(",")}]`);
  }
  return choices;
}

function refreshAlong(wanted) {
  let inputs = {};
  try {
    inputs = parseJSONField("inputs", {}) || {};
  } catch (e) {
    return; // the Inputs field is being edited: keep the choices it had
  }
  const select = $("plot-along");
  const keep = wanted ?? select.value;
  select.replaceChildren(
    ...alongChoices(inputs).map((c) => new Option(c, c, false, c === keep)),
  );
}

function defaultInterval() {
  let inputs = {};
  try {
    inputs = parseJSONField("inputs", {});
  } catch (e) {
    return;
  }
  const along = parseAlong($("plot-along").value, inputs);
  if (!along) return;
  const x0 = toNumber(flatten(valueOf(inputs[along.name]))[along.index ?? 0]);
  const half = Math.max(Math.PI, Math.abs(x0));
  $("plot-from").value = +(x0 - half).toFixed(4);
  $("plot-to").value = +(x0 + half).toFixed(4);
}

// ---------------------------------------------------------------- talking to the service

async function send(request, signal) {
  const headers = { "Content-Type": "application/json", Accept: "application/json" };
  if (apiKey) headers.Authorization = `Bearer ${apiKey}`;
  const response = await fetch(request.path, {
    method: "POST",
    headers,
    body: JSON.stringify(request.body),
    signal,
  });
  let body = null;
  try {
    body = await response.json();
  } catch (e) {
    body = { title: `HTTP ${response.status}`, detail: "the answer was not JSON" };
  }
  return { ok: response.ok, status: response.status, body };
}

/** `send` each request, at most `limit` at a time; answers in the requests' order. */
async function sendAll(requests, limit, signal) {
  const answers = new Array(requests.length);
  let next = 0;
  async function worker() {
    while (next < requests.length) {
      const i = next++;
      try {
        answers[i] = await send(requests[i], signal);
      } catch (e) {
        if (signal.aborted) throw e;
        answers[i] = { ok: false, status: 0, body: { title: "Network error", detail: String(e) } };
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, requests.length) }, worker));
  return answers;
}

// ---------------------------------------------------------------- showing the answer

function formatNumber(v) {
  if (typeof v !== "number") return String(v);
  if (Number.isInteger(v) && Math.abs(v) < 1e15) return v.toFixed(1);
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-4 || a >= 1e8) ? v.toExponential(6) : String(+v.toPrecision(8));
}

/** A (nested) array as NumPy prints one: rows under rows, numbers aligned per array. */
function formatArray(v) {
  if (v !== null && typeof v === "object" && !Array.isArray(v)) {
    return v.b64 ? `<${v.dtype} array of shape (${v.shape}) in base64>` : JSON.stringify(v);
  }
  if (!Array.isArray(v)) return formatNumber(v);
  const cells = flatten(v).map(formatNumber);
  const width = Math.max(...cells.map((c) => c.length), 0);
  let k = 0;
  const walk = (a, depth) => {
    if (!Array.isArray(a)) return cells[k++].padStart(width);
    const sep = a.length && Array.isArray(a[0]) ? ",\n" + " ".repeat(depth + 1) : ", ";
    const blank = a.length && Array.isArray(a[0]) && Array.isArray(a[0][0]) ? "\n" : "";
    return "[" + a.map((x) => walk(x, depth + 1)).join(sep.replace("\n", "\n" + blank)) + "]";
  };
  return walk(v, 0);
}

function addEntry(list, term, value, id) {
  const dt = document.createElement("dt");
  dt.textContent = term;
  const dd = document.createElement("dd");
  const pre = document.createElement("pre");
  pre.id = id;
  pre.textContent = value;
  dd.append(pre);
  list.append(dt, dd);
}

function showResult(answer) {
  const list = document.createElement("dl");
  addEntry(list, "value", formatArray(answer.value), "result-value");
  for (const field of DERIVATIVE_FIELDS) {
    const part = answer[field];
    if (part === undefined) continue;
    if (field === "jvp") {
      addEntry(list, "jvp", formatArray(part), "result-jvp");
      continue;
    }
    for (const [name, value] of Object.entries(part)) {
      if (field === "hessian") {
        for (const [other, block] of Object.entries(value)) {
          addEntry(list, `hessian[${name}][${other}]`, formatArray(block), `result-hessian-${name}-${other}`);
        }
      } else {
        addEntry(list, `${field}[${name}]`, formatArray(value), `result-${field}-${name}`);
      }
    }
  }
  if (answer.mode) addEntry(list, "mode", answer.mode, "result-mode");
  if (answer.check) addEntry(list, "check", JSON.stringify(answer.check), "result-check");
  for (const [i, w] of (answer.warnings || []).entries()) addEntry(list, "warning", w, `result-warning-${i}`);
  if (answer.timing_ms) addEntry(list, "time", `${answer.timing_ms.total} ms`, "result-time");
  $("result").replaceChildren(list);
}

/** Forget the last answer's result, plot and graph (an error must not sit beside old ones). */
function clearAnswer() {
  $("result").replaceChildren();
  plot?.destroy();
  plot = null;
  $("plot").replaceChildren();
  $("plot").setAttribute("aria-label", "plot of f and its derivative (not computed)");
  $("plot-note").textContent = "";
  $("graph").replaceChildren();
  $("graph").setAttribute("aria-label", "traced graph (not computed)");
  $("graph-note").textContent = "";
  delete $("graph").dataset.nodes;
}

function clearError() {
  $("error").hidden = true;
  $("error").replaceChildren();
  $("source-mark").hidden = true;
  for (const id of ["function", "inputs", "options", "api-key"]) $(id).removeAttribute("aria-invalid");
}

function where(loc) {
  if (Array.isArray(loc)) return loc.join(".");
  if (loc && loc.line) return `line ${loc.line}, column ${loc.column}`;
  if (loc && loc.node) return `graph node ${loc.node}`;
  return JSON.stringify(loc);
}

/** Show the problem+json `problem`; mark the source position or the field it points at. */
function showProblem(problem, status) {
  const box = $("error");
  const title = document.createElement("p");
  const strong = document.createElement("strong");
  strong.textContent = `${problem.title || "Error"}${status ? ` (${status})` : ""}`;
  title.append(strong, document.createTextNode(problem.detail ? `: ${problem.detail}` : ""));
  box.replaceChildren(title);
  const items = (problem.errors || []).map((e) => {
    const li = document.createElement("li");
    li.textContent = `${where(e.loc)}: ${e.msg}`;
    return li;
  });
  if (items.length) {
    const ul = document.createElement("ul");
    ul.append(...items);
    box.append(ul);
  }
  box.hidden = false;
  for (const e of problem.errors || []) {
    if (e.loc && e.loc.line) markSource(e.loc.line, e.loc.column);
    else if (Array.isArray(e.loc) && e.loc[1] === "inputs") $("inputs").setAttribute("aria-invalid", "true");
    else if (Array.isArray(e.loc) && ["expression", "graph"].includes(e.loc[1]))
      $("function").setAttribute("aria-invalid", "true");
    else if (Array.isArray(e.loc) && e.loc.length > 1) $("options").setAttribute("aria-invalid", "true");
  }
  if (status === 401) {
    $("api-key").setAttribute("aria-invalid", "true");
    $("api-key").focus();
  }
}

/** Mark line `line`, column `column` (1-based) of the Function text: shown and selected. */
function markSource(line, column) {
  const field = $("function");
  const lines = field.value.split("\n");
  const text = lines[line - 1] ?? "";
  const col = Math.max(1, Math.min(column || 1, text.length + 1));
  const mark = $("source-mark");
  const head = document.createElement("span");
  head.textContent = `line ${line}, column ${col}:\n`;
  const at = document.createElement("mark");
  at.textContent = text.slice(col - 1, col) || " ";
  const caret = document.createElement("span");
  caret.className = "caret";
  caret.textContent = "\n" + " ".repeat(col - 1) + "^";
  mark.replaceChildren(head, text.slice(0, col - 1), at, text.slice(col), caret);
  mark.dataset.line = line;
  mark.dataset.column = col;
  mark.hidden = false;
  field.setAttribute("aria-invalid", "true");
  const offset = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0) + col - 1;
  field.setSelectionRange(offset, Math.min(offset + 1, field.value.length));
}

async function drawGraph(dot) {
  const box = $("graph");
  if (typeof dot !== "string") {
    box.replaceChildren();
    box.setAttribute("aria-label", "traced graph (none in the answer)");
    return;
  }
  vizReady ??= vizInstance();
  const svg = (await vizReady).renderSVGElement(dot);
  const nodes = svg.querySelectorAll("g.node").length;
  const edges = svg.querySelectorAll("g.edge").length;
  const bad = [...svg.querySelectorAll("g.node.nonfinite title")].map((t) => t.textContent);
  const cut = /graph cut: [^"]*/.exec(dot);
  const count = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
  let label = `traced graph: ${count(nodes, "node")}, ${count(edges, "edge")}`;
  if (bad.length) label += `; non-finite values arose at ${bad.join(", ")}`;
  if (cut) label += `; ${cut[0]}`;
  svg.setAttribute("aria-hidden", "true");
  box.replaceChildren(svg);
  box.setAttribute("aria-label", label);
  $("graph-note").textContent = label.replace("traced graph: ", "") + ".";
  box.dataset.nodes = nodes;
}

function plotInterval(along) {
  const from = parseFloat($("plot-from").value);
  const to = parseFloat($("plot-to").value);
  const n = Math.max(2, Math.min(401, parseInt($("plot-points").value, 10) || 61));
  if (!Number.isFinite(from) || !Number.isFinite(to) || from === to) {
    throw new FieldError("plot-from", "The plot's From and To must be two different numbers");
  }
  return Array.from({ length: n }, (_, i) => from + ((to - from) * i) / (n - 1));
}

async function drawPlot(state, signal) {
  const inputs = parseJSONField("inputs", {});
  const along = parseAlong(state.along, inputs);
  const box = $("plot");
  if (!along) {
    $("plot-note").textContent = "Nothing to plot: choose an input (a number or an element of an array).";
    return;
  }
  const xs = plotInterval(along);
  const { points, scalar, note } = await plotPoints(state, along, xs, signal);
  const fLabel = scalar ? "f" : "f[0]";
  const data = [xs, points.map((p) => p[0]), points.map((p) => p[1])];
  const opts = {
    width: Math.max(320, box.clientWidth || 640),
    height: 320,
    scales: { x: { time: false } },
    axes: [{ label: along.label }, {}],
    series: [
      { label: along.label },
      { label: fLabel, stroke: COLORS.f, width: 2, points: { show: false } },
      {
        label: `d${fLabel}/d${along.label}`,
        stroke: COLORS.df,
        width: 2,
        dash: [6, 4],
        points: { show: false },
      },
    ],
  };
  plot?.destroy();
  box.replaceChildren();
  plot = new uPlot(opts, data, box);
  box.setAttribute(
    "aria-label",
    `plot of ${fLabel} and d${fLabel}/d${along.label} for ${along.label} from ${xs[0]} to ${xs[xs.length - 1]} (${xs.length} points)`,
  );
  $("plot-note").textContent =
    fLabel === "f" ? note : `${note} The output is not a scalar: its first element is plotted.`;
}

/**
 * f and df at every point of `xs`: one batch request, or, if the service refuses it, one
 * request per point. Also whether the output is a scalar, and a note on how it was computed.
 */
async function plotPoints(state, along, xs, signal) {
  const [batch] = await sendAll([plotRequest(state, along, xs)], 1, signal);
  if (batch.ok) {
    return {
      points: readPlotAnswer(batch, xs.length),
      scalar: !Array.isArray(perPoint(batch.body.value, xs.length)[0]),
      note: `1 request: one /jvp with batch over the ${xs.length} points.`,
    };
  }
  const requests = pointRequests(state, along, xs);
  const answers = await sendAll(requests, PLOT_CONCURRENCY, signal);
  const failed = answers.filter((a) => !a.ok);
  const firstOk = answers.find((a) => a.ok);
  let note =
    `The batch request was refused (${batch.body.title}: ${batch.body.detail || ""}); ` +
    `${requests.length} requests instead (one /jvp per point, ${PLOT_CONCURRENCY} at a time).`;
  if (failed.length) {
    const first = failed[0].body;
    note += ` ${failed.length} points failed: ${first.title}: ${first.detail || ""}`;
  }
  return {
    points: readPointAnswers(answers),
    scalar: !firstOk || !Array.isArray(firstOk.body.value),
    note,
  };
}

// ---------------------------------------------------------------- link and curl

function stateURL(state) {
  const url = new URL(document.location.href);
  url.hash = new URLSearchParams(state).toString();
  return url.href;
}

function shellQuote(text) {
  return "'" + text.replace(/'/g, "'\\''") + "'";
}

function curlCommand(request) {
  const url = new URL(request.path, document.baseURI).href;
  const lines = [`curl -sS -X POST ${shellQuote(url)}`, "-H 'Content-Type: application/json'"];
  if (apiKey) lines.push('-H "Authorization: Bearer $AUTODIFF_API_KEY"');
  lines.push(`--data-binary ${shellQuote(JSON.stringify(request.body))}`);
  return lines.join(" \\\n  ");
}

function refreshShare() {
  const state = readState();
  $("permalink").href = stateURL(state);
  try {
    $("curl").value = curlCommand(mainRequest(state));
  } catch (e) {
    $("curl").value = `# ${e.message}`;
  }
}

// ---------------------------------------------------------------- compute

async function compute() {
  running?.abort();
  const controller = (running = new AbortController());
  const started = performance.now();
  clearError();
  $("status").textContent = "Computing…";
  $("compute").setAttribute("aria-busy", "true");
  const state = readState();
  history.replaceState(null, "", stateURL(state));
  refreshShare();
  try {
    const answer = await send(mainRequest(state), controller.signal);
    if (!answer.ok) {
      clearAnswer();
      showProblem(answer.body, answer.status);
      $("status").textContent = `Error ${answer.status}`;
      return;
    }
    showResult(answer.body);
    await Promise.all([drawGraph(answer.body.graph), drawPlot(state, controller.signal)]);
    const ms = Math.round(performance.now() - started);
    $("status").textContent = `Done in ${ms} ms`;
  } catch (e) {
    if (controller.signal.aborted) return;
    clearAnswer();
    if (e instanceof FieldError) {
      showProblem({ title: "Invalid field", detail: e.message });
      $(e.field).setAttribute("aria-invalid", "true");
    } else {
      showProblem({ title: "Error", detail: e.message });
    }
    $("status").textContent = "Error";
  } finally {
    $("compute").removeAttribute("aria-busy");
    if (running === controller) running = null;
  }
}

function loadExample(example) {
  writeState({
    f: example.expression,
    in: JSON.stringify(example.inputs),
    ep: example.endpoint || "grad",
    opt: example.options ? JSON.stringify(example.options) : "",
    along: example.plot?.along,
    from: example.plot?.from === undefined ? "" : String(example.plot.from),
    to: example.plot?.to === undefined ? "" : String(example.plot.to),
  });
  refreshShare();
}

function init() {
  const select = $("example");
  select.replaceChildren(...EXAMPLES.map((e, i) => new Option(e.name, String(i))));
  select.addEventListener("change", () => loadExample(EXAMPLES[+select.value]));
  $("request").addEventListener("submit", (event) => {
    event.preventDefault();
    compute();
  });
  for (const id of ["function", "inputs", "options"]) {
    $(id).addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        compute();
      }
    });
  }
  $("inputs").addEventListener("input", () => refreshAlong());
  $("plot-along").addEventListener("change", defaultInterval);
  $("api-key").addEventListener("input", () => {
    apiKey = $("api-key").value;
    refreshShare();
  });
  $("request").addEventListener("input", refreshShare);
  window.addEventListener("resize", () => plot?.setSize({ width: $("plot").clientWidth, height: 320 }));
  const linked = new URLSearchParams(document.location.hash.slice(1));
  if (linked.has("f")) {
    writeState(Object.fromEntries(linked));
    refreshShare();
    compute(); // a link reproduces its request
  } else {
    loadExample(EXAMPLES[0]);
  }
}

init();
