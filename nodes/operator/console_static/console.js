// SuretyNet console: lists recent flows, draws one flow's journey as an SVG sequence
// diagram, and shows each node's health and key metrics. Reads only the console's JSON API.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const COLUMN = 160, TOP = 60, ROW = 44, LEFT = 90;

async function getJson(path) {
  const response = await fetch(path);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

async function loadNodes() {
  const body = document.querySelector("#nodes tbody");
  const { nodes } = await getJson("/api/nodes");
  body.replaceChildren();
  for (const node of nodes) {
    const row = body.insertRow();
    cell(row, node.entity_id);
    cell(row, node.role);
    const healthy = node.health === "SERVING";
    cell(row, node.health, healthy ? "serving" : "unhealthy");
    const metrics = node.metrics;
    if (metrics.state === "ok") {
      const td = cell(body.insertRow(), "", "muted");
      td.colSpan = 3;
      td.textContent = Object.entries(metrics.values)
        .map(([name, value]) => `${name} ${Number.isInteger(value) ? value : value.toFixed(3)}`)
        .join(" · ") || "metrics: none of the key families";
    } else {
      row.title = `metrics: ${metrics.state}`;
    }
  }
  const without = nodes.filter((n) => n.metrics.state !== "ok").length;
  document.getElementById("metrics-note").textContent = without
    ? `${without} of ${nodes.length} nodes serve no metrics (no metrics_address in network.json, or unreachable)`
    : "";
  document.getElementById("summary").textContent =
    `${nodes.length} nodes, ${nodes.filter((n) => n.health === "SERVING").length} serving`;
}

async function loadFlows(query) {
  const body = document.querySelector("#flows tbody");
  const { flows, errors } = await getJson("/api/flows?q=" + encodeURIComponent(query || ""));
  document.getElementById("errors").textContent = errors.length ? `unreadable: ${errors.join("; ")}` : "";
  body.replaceChildren();
  for (const flow of flows) {
    const row = body.insertRow();
    row.dataset.number = flow.number;
    cell(row, flow.number);
    cell(row, flow.kind);
    cell(row, flow.node);
    cell(row, flow.state);
    row.addEventListener("click", () => showJourney(flow.number));
  }
  if (!flows.length) cell(body.insertRow(), "no flow matches", "muted").colSpan = 4;
  return flows;
}

function element(name, attributes, parent, text) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  if (parent) parent.appendChild(node);
  return node;
}

function participantsOf(steps) {
  const order = [];
  const add = (name) => { if (name && !order.includes(name)) order.push(name); };
  // People and operators stand left of the nodes, as the ones who start each flow.
  const outside = (name) => ["member", "purchaser"].includes(name) || / operator$/.test(name);
  for (const step of steps) if (outside(step.from)) add(step.from);
  for (const step of steps) { add(step.from || step.node); add(step.to); }
  return order;
}

function drawDiagram(journey) {
  const svg = document.getElementById("diagram");
  svg.replaceChildren();
  const steps = journey.steps;
  const names = participantsOf(steps);
  const x = (name) => LEFT + names.indexOf(name) * COLUMN;
  const width = LEFT + Math.max(names.length, 1) * COLUMN;
  const height = TOP + (steps.length + 1) * ROW;
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  for (const name of names) {
    element("line", { class: "lifeline", x1: x(name), y1: TOP - 10, x2: x(name), y2: height - 10 }, svg);
    const box = element("g", { class: "participant", "data-name": name }, svg);
    element("rect", { x: x(name) - 70, y: 10, width: 140, height: 28, rx: 5 }, box);
    element("text", { x: x(name), y: 29, "text-anchor": "middle" }, box, name);
  }
  const first = steps.find((step) => step.at);
  const start = first ? Date.parse(first.at) : 0;
  steps.forEach((step, index) => {
    const y = TOP + 20 + index * ROW;
    const refused = Boolean(step.refusal_reason);
    const since = step.at && start ? `+${Math.round(Date.parse(step.at) - start)} ms` : "";
    element("text", { class: "time", x: 6, y: y + 4 }, svg, since);
    const sender = step.from || step.node;
    if (step.to) {
      const group = element("g", {
        class: "hop" + (refused ? " refused" : "") + (step.attempts > 1 ? " retried" : ""),
        "data-from": sender, "data-to": step.to, "data-label": step.label,
      }, svg);
      const x1 = x(sender), x2 = x(step.to);
      const direction = x2 >= x1 ? 1 : -1;
      element("line", { x1, y1: y, x2: x2 - direction * 8, y2: y }, group);
      element("polygon", {
        points: `${x2},${y} ${x2 - direction * 9},${y - 5} ${x2 - direction * 9},${y + 5}`,
      }, group);
      element("text", { x: (x1 + x2) / 2, y: y - 6, "text-anchor": "middle" }, group, step.label);
      element("title", {}, group, `${sender} → ${step.to}: ${step.method || step.step}\n${step.detail}`);
      if (refused) {
        element("text", { class: "reason", x: (x1 + x2) / 2, y: y + 15, "text-anchor": "middle" },
          group, `✕ ${step.refusal_reason}`);
      } else if (step.attempts > 1) {
        element("text", { class: "retry", x: (x1 + x2) / 2, y: y + 15, "text-anchor": "middle" },
          group, `↻ ${step.attempts} attempts`);
      }
    } else {
      const group = element("g", {
        class: "local" + (refused ? " refused" : "") + (step.attempts > 1 ? " retried" : ""),
        "data-from": sender, "data-label": step.label,
      }, svg);
      element("rect", { x: x(sender) - 75, y: y - 14, width: 150, height: 22, rx: 4 }, group);
      const retried = step.attempts > 1 ? ` ↻ ${step.attempts}` : "";
      const text = (refused ? `✕ ${step.label}: ${step.refusal_reason}` : step.label) + retried;
      element("text", { x: x(sender), y: y + 1, "text-anchor": "middle" }, group, text);
      element("title", {}, group, step.detail || step.step);
    }
  });
}

async function showJourney(number) {
  document.querySelectorAll("#flows tbody tr").forEach((row) =>
    row.classList.toggle("chosen", row.dataset.number === number));
  const title = document.getElementById("journey-title");
  title.textContent = `Journey of ${number} …`;
  const journey = await getJson("/api/journey?order=" + encodeURIComponent(number));
  title.textContent = journey.finals.length
    ? `Journey of ${number}: ${journey.steps.length} steps`
    : `No node holds records of ${number}`;
  drawDiagram(journey);
  const body = document.querySelector("#finals tbody");
  body.replaceChildren();
  for (const final of journey.finals) {
    const row = body.insertRow();
    for (const value of [final.node, final.kind, final.state, final.stored_state, final.amount]) {
      cell(row, value);
    }
  }
  document.getElementById("errors").textContent = journey.errors.join("; ");
  const url = new URL(window.location);
  url.searchParams.set("order", number);
  window.history.replaceState(null, "", url);
  document.body.dataset.journey = number;
}

document.getElementById("search").addEventListener("submit", async (event) => {
  event.preventDefault();
  const query = document.getElementById("query").value.trim();
  const flows = await loadFlows(query);
  if (query && flows.length === 1) await showJourney(flows[0].number);
});

(async () => {
  const order = new URLSearchParams(window.location.search).get("order");
  if (order) document.getElementById("query").value = order;
  await Promise.all([loadNodes(), loadFlows(order || "")]);
  if (order) await showJourney(order);
  document.body.dataset.ready = "true";
})().catch((error) => {
  document.getElementById("errors").textContent = String(error);
  document.body.dataset.ready = "error";
});
