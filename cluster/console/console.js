// The web console's page: polls /api/overview, draws the tables and the SVG
// charts, and runs the search playground. Everything from the cluster is set
// as text (never as HTML): names and payloads are the users' data.
'use strict';

const POLL_MS = 2000;
const COLORS = ['#2f6fde', '#e8590c', '#1f9d55', '#9c36b5', '#d33a2f', '#0c8599', '#5c6ac4', '#a0782c'];

const $ = (id) => document.getElementById(id);

/** An element with attributes and children (strings become text). */
function el(tag, attrs = {}, ...children) {
  const e = tag === 'svg' || attrs.svg ? document.createElementNS('http://www.w3.org/2000/svg', tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) if (k !== 'svg' && v !== undefined && v !== null) e.setAttribute(k, String(v));
  for (const c of children) if (c !== undefined && c !== null) e.append(typeof c === 'object' ? c : String(c));
  return e;
}
const svg = (tag, attrs = {}, ...children) => el(tag, { ...attrs, svg: true }, ...children);

async function api(path, body) {
  const r = await fetch(path, body === undefined ? {} : { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  if (r.status === 401) {
    location.href = '/login';
    throw new Error('not logged in');
  }
  const out = await r.json();
  if (out.error) throw new Error(`${out.error.code}: ${out.error.message}`);
  return out;
}

function age(ms) {
  return ms < 1000 ? `${ms} ms ago` : ms < 120000 ? `${(ms / 1000).toFixed(1)} s ago` : `${Math.round(ms / 60000)} min ago`;
}

const fmt = (n) => (n === null || n === undefined ? '?' : Number(n).toLocaleString('en'));

function renderProcesses(o) {
  const rows = o.processes.map((p) => el('tr', { 'data-name': p.name, 'data-state': p.state },
    el('td', {}, p.name), el('td', {}, p.role), el('td', { class: 'num' }, p.pid),
    el('td', {}, el('span', { class: `badge state ${p.state}` }, p.state)),
    el('td', { class: 'muted' }, age(p.heartbeatAgeMs)),
    el('td', {}, p.shards.join(', ') || '—'),
    el('td', { class: 'muted' }, p.metricsPort === null ? '—' : `:${p.metricsPort}`)));
  $('processes').tBodies[0].replaceChildren(...rows);
}

function renderCollections(o) {
  const out = o.collections.map((c) => {
    const rows = c.shards.map((s) => el('tr', { 'data-shard': s.shard, 'data-health': s.health },
      el('td', {}, s.shard),
      el('td', {}, el('span', { class: `badge ${s.health}` }, s.health)),
      el('td', { class: 'num' }, fmt(s.count)),
      el('td', { class: 'muted' }, `${fmt(s.firstSeq)} … ${fmt(s.logSeq)}`),
      el('td', {}, ...s.replicas.map((r) => el('span', { class: 'replica', 'data-member': r.member },
        el('span', { class: `badge ${r.failed ? 'failed' : r.live ? 'live' : 'gone'}` }, r.failed ? 'failed' : r.live ? 'live' : 'gone'), ' ',
        r.member, ' · applied ', fmt(r.applied), ' · lag ', el('b', { class: 'lag' }, fmt(r.lag)),
        r.skipped ? ` · skipped ${r.skipped}` : '')))));
    return el('div', { class: 'collection', 'data-collection': c.name },
      el('h3', {}, c.name, el('span', { class: 'sub' }, el('span', { class: 'shard-count' }, c.shards.length), c.shards.length === 1 ? ' shard · ' : ' shards · ', el('span', { class: 'points' }, fmt(c.points)), ' points')),
      el('table', {}, el('thead', {}, el('tr', {}, ...[['shard'], ['health'], ['points', 'num'], ['log'], ['replicas (applied, lag in entries)']].map(([h, cls]) => el('th', { class: cls }, h)))), el('tbody', {}, ...rows)));
  });
  $('collections').replaceChildren(...(out.length ? out : [el('p', { class: 'muted' }, 'no collections')]));
}

function renderSummary(o) {
  const up = o.processes.filter((p) => p.state === 'up').length;
  const down = o.collections.flatMap((c) => c.shards).filter((s) => s.health === 'down').length;
  $('summary').replaceChildren(
    el('b', {}, up), ` of ${o.processes.length} processes up · `, el('b', {}, o.collections.length), ' collections · ',
    el('b', {}, down), ' shards down · updated ', new Date(o.at).toLocaleTimeString('en-GB'));
  const err = $('error');
  err.hidden = !o.error;
  err.textContent = o.error ? `status failed, showing the last answer: ${o.error.code}: ${o.error.message}` : '';
}

/** A small line chart: one polyline per series over the shared time axis, y from 0, three grid lines, a legend. */
function lineChart(target, t, lines, unit) {
  const W = 420, H = 180, L = 48, R = 8, T = 22, B = 20;
  const values = lines.flatMap((l) => l.values.filter((v) => v !== null));
  const nodes = [];
  if (t.length < 2 || values.length === 0) {
    nodes.push(svg('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle', class: 'empty' }, 'collecting samples…'));
    target.replaceChildren(...nodes);
    return;
  }
  const max = Math.max(...values) * 1.1 || 1;
  const t0 = t[0], t1 = t[t.length - 1];
  const x = (ti) => L + ((ti - t0) / (t1 - t0 || 1)) * (W - L - R);
  const y = (v) => H - B - (v / max) * (H - T - B);
  for (let i = 0; i <= 3; i++) {
    const v = (max / 3) * i;
    nodes.push(svg('line', { x1: L, x2: W - R, y1: y(v), y2: y(v), class: 'grid' }));
    nodes.push(svg('text', { x: L - 4, y: y(v) + 3, 'text-anchor': 'end' }, v >= 100 ? Math.round(v).toLocaleString('en') : v.toPrecision(2)));
  }
  nodes.push(svg('text', { x: L, y: H - 4 }, new Date(t0).toLocaleTimeString('en-GB')));
  nodes.push(svg('text', { x: W - R, y: H - 4, 'text-anchor': 'end' }, new Date(t1).toLocaleTimeString('en-GB')));
  nodes.push(svg('text', { x: 4, y: 12 }, unit));
  let lx = L;
  lines.forEach((l, i) => {
    const color = COLORS[i % COLORS.length];
    // A gap (null) ends a segment: a restarted coordinator leaves no false line.
    let d = '';
    let pen = false;
    l.values.forEach((v, j) => {
      if (v === null) { pen = false; return; }
      d += `${pen ? 'L' : 'M'}${x(t[j]).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
    });
    nodes.push(svg('path', { d, class: 'line', stroke: color, 'data-series': l.name }));
    nodes.push(svg('rect', { x: lx, y: 5, width: 10, height: 4, fill: color }));
    nodes.push(svg('text', { x: lx + 14, y: 11 }, l.name));
    lx += 24 + l.name.length * 6;
  });
  target.replaceChildren(...nodes);
}

function renderCharts(o) {
  const c = o.charts;
  lineChart($('chart-points'), c.t, Object.entries(c.points).map(([name, values]) => ({ name, values })), 'points');
  lineChart($('chart-latency'), c.t, [{ name: 'mean', values: c.searchMeanMs }, { name: 'p99', values: c.searchP99Ms }], 'ms');
  const busy = Object.entries(c.rate).filter(([, v]) => v.some((x) => x !== null && x > 0));
  lineChart($('chart-rate'), c.t, busy.map(([name, values]) => ({ name, values })), 'req/s');
}

function renderCollectionChoice(o) {
  const sel = $('collection');
  const names = o.collections.map((c) => c.name);
  const have = [...sel.options].map((x) => x.value);
  if (names.join('\n') === have.join('\n')) return;
  const keep = sel.value;
  sel.replaceChildren(...names.map((n) => el('option', { value: n }, n)));
  if (names.includes(keep)) sel.value = keep;
}

async function refresh() {
  try {
    const o = await api('/api/overview');
    renderSummary(o);
    renderProcesses(o);
    renderCollections(o);
    renderCharts(o);
    renderCollectionChoice(o);
  } catch (e) {
    const err = $('error');
    err.hidden = false;
    err.textContent = `the console does not answer: ${e.message}`;
  } finally {
    setTimeout(refresh, POLL_MS);
  }
}

function showSearchMessage(text, error) {
  const m = $('search-meta');
  m.textContent = text;
  m.className = error ? 'meta error' : 'meta';
}

/** The id as typed: a number when it is an integer, else the string. */
function idOf(text) {
  const s = text.trim();
  return /^-?\d+$/.test(s) && Number.isSafeInteger(Number(s)) ? Number(s) : s;
}

async function takeVector() {
  try {
    const r = await api('/api/point', { collection: $('collection').value, id: idOf($('point-id').value) });
    if (r.points.length === 0) return showSearchMessage(`no point ${$('point-id').value} in ${$('collection').value}`, true);
    const v = r.points[0].vector;
    // Nine significant digits give every float32 back exactly.
    $('vector').value = JSON.stringify(Array.from(v, (x) => Number(x.toPrecision(9))));
    showSearchMessage(`vector of point ${r.points[0].id} (${v.length} dimensions)`, false);
  } catch (e) {
    showSearchMessage(e.message, true);
  }
}

function parseJson(text, what) {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${what} is not JSON: ${e.message}`);
  }
}

async function search(ev) {
  ev.preventDefault();
  try {
    const body = {
      collection: $('collection').value,
      vector: parseJson($('vector').value, 'the vector'),
      k: $('k').value === '' ? undefined : Number($('k').value),
      ef: $('ef').value === '' ? undefined : Number($('ef').value),
      exact: $('exact').checked || undefined,
      filter: $('filter').value.trim() === '' ? undefined : parseJson($('filter').value, 'the filter'),
    };
    const r = await api('/api/search', body);
    showSearchMessage(`${r.hits.length} hits in ${r.tookMs.toFixed(1)} ms${r.partial ? ` · PARTIAL: shards ${r.missing.join(', ')} did not answer` : ''}`, r.partial);
    $('hits').tBodies[0].replaceChildren(...r.hits.map((h, i) => el('tr', { 'data-id': JSON.stringify(h.id) },
      el('td', { class: 'num' }, i + 1), el('td', { class: 'id' }, h.id), el('td', { class: 'num' }, h.score.toPrecision(5)),
      el('td', { class: 'payload' }, h.payload === undefined ? '' : JSON.stringify(h.payload)))));
  } catch (e) {
    showSearchMessage(e.message, true);
    $('hits').tBodies[0].replaceChildren();
  }
}

$('take-vector').addEventListener('click', takeVector);
$('search-form').addEventListener('submit', search);
refresh();
