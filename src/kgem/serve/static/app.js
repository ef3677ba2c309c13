// The page of `kgem serve`: search an entity, see its facts, predictions, neighbours and place on the map.
// Plain JavaScript against the server's own API (/api/...), no libraries, no requests anywhere else.
"use strict";

const state = {
  info: null,        // /api/info
  relations: [],     // every relation label
  map: null,         // /api/map: labels, x, y, groups
  entity: null,      // the selected label
  neighbours: [],    // its nearest neighbours' labels
  shown: 12,         // relation groups of predictions shown before "show all"
  rows: [],          // the last predictions' rows
  order: [],         // the relations in the order shown
};

const $ = (id) => document.getElementById(id);

async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)};
  const response = await fetch(path, options);
  const answer = await response.json();
  if (!response.ok) {
    const hint = answer.suggestions && answer.suggestions.length ? ` — did you mean ${answer.suggestions.join(", ")}?` : "";
    throw new Error((answer.error || response.statusText) + hint);
  }
  return answer;
}

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function pick(label) {  // a label that selects its entity when clicked
  const link = element("a", label, "pick");
  link.href = "#entity=" + encodeURIComponent(label);
  link.addEventListener("click", (event) => { event.preventDefault(); select(label); });
  return link;
}

function status(message) { $("status").textContent = message || ""; }

// ---- autocomplete -----------------------------------------------------------------------------------------------

const search = {timer: null, matches: [], active: -1, asked: 0};

function showSuggestions(matches) {
  const list = $("suggestions");
  list.replaceChildren();
  search.matches = matches;
  search.active = matches.length ? 0 : -1;
  matches.forEach((match, i) => {
    const item = element("li");
    item.id = "suggestion-" + i;
    item.setAttribute("role", "option");
    item.dataset.label = match.label;
    item.append(element("span", match.label), element("span", match.match, "how"));
    item.addEventListener("mousedown", (event) => { event.preventDefault(); choose(i); });
    list.append(item);
  });
  list.hidden = !matches.length;
  $("search").setAttribute("aria-expanded", String(!list.hidden));
  highlight();
}

function highlight() {
  [...$("suggestions").children].forEach((item, i) => item.setAttribute("aria-selected", String(i === search.active)));
  const active = $("suggestion-" + search.active);
  if (active) {
    active.scrollIntoView({block: "nearest"});
    $("search").setAttribute("aria-activedescendant", active.id);
  }
}

function choose(i) {
  const match = search.matches[i];
  showSuggestions([]);
  if (match) select(match.label);
}

async function suggest() {
  const query = $("search").value.trim();
  const asked = ++search.asked;
  if (!query) { showSuggestions([]); return; }
  try {
    const answer = await api("/api/search?" + new URLSearchParams({q: query, limit: 12}));
    if (asked === search.asked) showSuggestions(answer.matches);  // a later keystroke's answer wins
  } catch (error) { status(error.message); }
}

$("search").addEventListener("input", () => { clearTimeout(search.timer); search.timer = setTimeout(suggest, 120); });
$("search").addEventListener("keydown", (event) => {
  const count = search.matches.length;
  if (event.key === "ArrowDown" && count) { search.active = (search.active + 1) % count; highlight(); }
  else if (event.key === "ArrowUp" && count) { search.active = (search.active - 1 + count) % count; highlight(); }
  else if (event.key === "Enter") {
    if (search.active >= 0) choose(search.active);
    else if ($("search").value.trim()) select($("search").value.trim());
  } else if (event.key === "Escape") { showSuggestions([]); return; }
  else return;
  event.preventDefault();
});
$("search").addEventListener("blur", () => setTimeout(() => showSuggestions([]), 150));

// ---- one entity -------------------------------------------------------------------------------------------------

async function select(label) {
  state.entity = label;
  $("search").value = label;
  $("selected").textContent = label;
  history.replaceState(null, "", "#entity=" + encodeURIComponent(label));
  status("");
  drawMap();
  const [facts] = await Promise.all([loadFacts(label), loadNeighbours(label)]);
  await loadPredictions(label, facts);
}

async function loadFacts(label) {
  const body = $("facts").tBodies[0];
  body.replaceChildren();
  try {
    const answer = await api("/api/facts?" + new URLSearchParams({entity: label, limit: 200}));
    if (!answer.available) {
      $("facts-summary").textContent = "The server was started without the model's dataset: no known facts.";
      return [];
    }
    $("facts-summary").textContent = answer.total
      ? `${answer.total} known facts` + (answer.truncated ? `, the first ${answer.facts.length} shown` : "")
      : "No known fact.";
    for (const fact of answer.facts) {
      const row = element("tr");
      for (const key of ["head", "relation", "tail"]) {
        const cell = element("td");
        cell.append(key === "relation" ? document.createTextNode(fact[key]) :
          fact[key] === label ? element("span", fact[key], "entity") : pick(fact[key]));
        row.append(cell);
      }
      body.append(row);
    }
    return answer.facts;
  } catch (error) { status(error.message); return []; }
}

async function loadNeighbours(label) {
  const list = $("neighbours");
  list.replaceChildren();
  state.neighbours = [];
  try {
    const answer = await api("/api/similar?" + new URLSearchParams({label, k: 10}));
    state.neighbours = answer.rows.map((row) => row.neighbour);
    for (const row of answer.rows) {
      const item = element("li");
      item.append(pick(row.neighbour), element("span", row.similarity.toFixed(3), "score"));
      list.append(item);
    }
  } catch (error) { status(error.message); }
  drawMap();
}

async function loadPredictions(label, facts) {
  const side = $("side").value;  // "tail": the entity is the head
  const k = Number($("k").value);
  const used = new Set(facts.filter((f) => (side === "tail" ? f.head : f.tail) === label).map((f) => f.relation));
  const batch = state.info ? state.info.limits.max_batch : 1024;
  state.order = [...state.relations.filter((r) => used.has(r)), ...state.relations.filter((r) => !used.has(r))]
    .slice(0, batch);
  const queries = state.order.map((relation) => side === "tail" ? {head: label, relation} : {relation, tail: label});
  $("predictions").replaceChildren();
  if (!queries.length) return;
  try {
    const answer = await api(`/api/predict/${side}s`, {queries, k});
    if (label !== state.entity) return;
    state.rows = answer.rows;
    state.shown = 12;
    renderPredictions();
  } catch (error) { status(error.message); }
}

function renderPredictions() {
  const side = $("side").value;
  const byRelation = new Map(state.order.map((r) => [r, []]));
  for (const row of state.rows) byRelation.get(row.query_relation).push(row);
  const box = $("predictions");
  box.replaceChildren();
  for (const relation of state.order.slice(0, state.shown)) {
    const card = element("div", undefined, "relation");
    card.append(element("h3", side === "tail" ? `${relation} →` : `← ${relation}`));
    const list = element("ol");
    for (const row of byRelation.get(relation)) {
      const item = element("li");
      item.append(pick(row[side]), element("span", row.score.toFixed(3), "score"));
      if (row.probability !== undefined) item.append(element("span", `p=${row.probability.toFixed(2)}`, "score"));
      if (row.known) item.append(element("span", "known", "known-mark"));
      list.append(item);
    }
    card.append(list);
    box.append(card);
  }
  const more = $("more-relations");
  more.hidden = state.order.length <= state.shown;
  more.textContent = `show all ${state.order.length} relations`;
}

$("more-relations").addEventListener("click", () => { state.shown = state.order.length; renderPredictions(); });
for (const id of ["side", "k"]) {
  $(id).addEventListener("change", () => { if (state.entity) select(state.entity); });
}

// ---- the map ----------------------------------------------------------------------------------------------------

const map = {scale: 1, points: [], hover: -1};

function colour(group) {  // a stable hue per group
  if (!group) return "hsl(220, 10%, 60%)";
  let hash = 0;
  for (const c of group) hash = (hash * 31 + c.charCodeAt(0)) >>> 0;
  return `hsl(${hash % 360}, 60%, 48%)`;
}

function layout() {  // canvas pixels of each point, with a margin
  const canvas = $("map");
  const ratio = window.devicePixelRatio || 1;
  const size = canvas.getBoundingClientRect();
  canvas.width = Math.max(1, Math.round(size.width * ratio));
  canvas.height = Math.max(1, Math.round(size.height * ratio));
  map.scale = ratio;
  const {x, y} = state.map;
  const [x0, x1, y0, y1] = [Math.min(...x), Math.max(...x), Math.min(...y), Math.max(...y)];
  const margin = 14 * ratio;
  const w = canvas.width - 2 * margin, h = canvas.height - 2 * margin;
  map.points = x.map((xi, i) => [margin + (x1 > x0 ? (xi - x0) / (x1 - x0) : 0.5) * w,
    margin + (y1 > y0 ? 1 - (y[i] - y0) / (y1 - y0) : 0.5) * h]);
}

function drawMap() {
  if (!state.map) return;
  layout();
  const canvas = $("map"), ctx = canvas.getContext("2d"), r = map.scale;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const radius = (state.map.labels.length > 2000 ? 1.6 : 3) * r;
  state.map.labels.forEach((label, i) => {
    ctx.fillStyle = colour(state.map.groups && state.map.groups[i]);
    ctx.beginPath();
    ctx.arc(map.points[i][0], map.points[i][1], radius, 0, 2 * Math.PI);
    ctx.fill();
  });
  const index = new Map(state.map.labels.map((label, i) => [label, i]));
  ctx.lineWidth = 2 * r;
  ctx.strokeStyle = "#2456c4";
  for (const label of state.neighbours) {
    const i = index.get(label);
    if (i === undefined) continue;
    ctx.beginPath();
    ctx.arc(map.points[i][0], map.points[i][1], radius + 3 * r, 0, 2 * Math.PI);
    ctx.stroke();
  }
  const chosen = index.get(state.entity);
  if (chosen !== undefined) {
    const [px, py] = map.points[chosen];
    ctx.fillStyle = "#b3261e";
    ctx.beginPath();
    ctx.arc(px, py, radius + 4 * r, 0, 2 * Math.PI);
    ctx.fill();
    ctx.font = `${13 * r}px system-ui, sans-serif`;
    ctx.fillStyle = "#1d2330";
    ctx.textAlign = px > canvas.width / 2 ? "right" : "left";
    ctx.fillText(state.entity, px + (px > canvas.width / 2 ? -10 : 10) * r, py - 8 * r);
  }
}

function nearestPoint(event) {  // the point under the pointer (within 8 CSS pixels), or -1
  const box = $("map").getBoundingClientRect();
  const px = (event.clientX - box.left) * map.scale, py = (event.clientY - box.top) * map.scale;
  let best = -1, bestDistance = (8 * map.scale) ** 2;
  map.points.forEach(([x, y], i) => {
    const d = (x - px) ** 2 + (y - py) ** 2;
    if (d < bestDistance) { best = i; bestDistance = d; }
  });
  return best;
}

$("map").addEventListener("mousemove", (event) => {
  if (!state.map) return;
  const i = nearestPoint(event), tip = $("tooltip");
  tip.hidden = i < 0;
  if (i < 0) return;
  const box = $("map").getBoundingClientRect();
  tip.textContent = state.map.labels[i] + (state.map.groups ? ` (${state.map.groups[i] || "no facts"})` : "");
  tip.style.left = `${event.clientX - box.left + 12}px`;
  tip.style.top = `${event.clientY - box.top + 12}px`;
});
$("map").addEventListener("mouseleave", () => { $("tooltip").hidden = true; });
$("map").addEventListener("click", (event) => {
  const i = state.map ? nearestPoint(event) : -1;
  if (i >= 0) select(state.map.labels[i]);
});
window.addEventListener("resize", drawMap);

// where a label's point is on the screen (CSS pixels in the page), for tests and scripts
function pointOf(label) {
  const i = state.map ? state.map.labels.indexOf(label) : -1;
  if (i < 0) return null;
  const box = $("map").getBoundingClientRect();
  return {x: box.left + map.points[i][0] / map.scale, y: box.top + map.points[i][1] / map.scale};
}

// ---- start ------------------------------------------------------------------------------------------------------

async function start() {
  try {
    const [info, relations] = await Promise.all([api("/api/info"), api("/api/relations")]);
    state.info = info;
    state.relations = relations.relations;
    $("model-info").textContent = `${info.model} (dim ${info.dim}) · ${info.num_entities} entities · ` +
      `${info.num_relations} relations` + (info.dataset ? ` · dataset ${info.dataset}` : "") +
      (info.test_metrics ? ` · test MRR ${info.test_metrics.mrr.toFixed(3)}` : "") +
      (info.calibrated ? ` · calibrated (${info.calibrator})` : "");
  } catch (error) { status(error.message); return; }
  try {
    state.map = await api("/api/map");
    $("map-summary").textContent = "PCA of the entity embeddings" +
      (state.map.sampled ? `, ${state.map.labels.length} of ${state.map.num_entities} entities sampled` : "") +
      (state.map.groups ? "; colour: each entity's most frequent relation" : "") + ". Click a point to select it.";
    drawMap();
  } catch (error) { $("map-summary").textContent = error.message; }
  const linked = new URLSearchParams(location.hash.slice(1)).get("entity");
  if (linked) select(linked);
  document.body.dataset.ready = "true";
}

window.kgem = {state, select, pointOf};
start();
