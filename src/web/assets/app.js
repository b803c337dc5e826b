'use strict';
// tributary dashboard: polls the JSON API (docs/openapi.yaml) and renders
// each view with DOM methods only. Data is never parsed as HTML. Every view
// but the config shows one pipeline, the one picked in the selector (shown
// when serve runs more than one) and kept in the address as #pipeline=NAME.
// The jobs are in jobs.js, the dead letters in letters.js, the topic's
// messages and the table's rows in browse.js: loaded after this file, in
// that order, sharing its scope.

const $ = (selector, root = document) => root.querySelector(selector);
const SVG_NS = 'http://www.w3.org/2000/svg';
const CHART_SECS = 300;
const SERIES = [
  ['fetched', '#2563eb', 4],
  ['logged', '#8b5cf6', 3],
  ['read', '#f59e0b', 2],
  ['stored', '#059669', 1.25],
];
// The seed table's columns the users' table view shows, with their headings.
const USER_COLUMNS = [['id', 'id'], ['first_name', 'first name'], ['last_name', 'last name'], ['gender', 'gender'],
  ['email', 'email'], ['username', 'username'], ['dob', 'dob'], ['registered_date', 'registered']];

const state = {
  gen: 0, // bumped on every login/logout: pollers of an older generation stop
  tokenRequired: false,
  seen: new Map(), // view -> last rendered JSON, to skip redraws of unchanged data
  jobRows: new Map(), // job name -> { tr, cells, buttons }
  toastTimer: 0,
  pipelines: [], // GET /api/v1/pipelines, in config order
  pipeline: null, // the name of the one shown
  rowColumns: '', // the columns the rows table is drawn with
  skew: 0, // the server's clock minus the browser's, in ms (from the Date header)
};

// ---------------------------------------------------------------- formatting

const INT = new Intl.NumberFormat('en-US');
const RATE = new Intl.NumberFormat('en-US', { minimumFractionDigits: 1, maximumFractionDigits: 1 });
const fmtInt = (n) => (n == null ? '–' : INT.format(n));
const fmtRate = (n) => (n == null ? '–' : `${RATE.format(n)}/s`);
const pad = (n) => String(n).padStart(2, '0');

// Every absolute time on the page reads one way, in the browser's time zone:
// 2026-01-31 12:00:05.
function fmtAt(ms) {
  if (ms == null || Number.isNaN(ms)) return '–';
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} `
    + `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function fmtDuration(secs) {
  const s = Math.floor(secs);
  const [d, h, m] = [Math.floor(s / 86400), Math.floor(s / 3600) % 24, Math.floor(s / 60) % 60];
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${String(m).padStart(2, '0')}m`;
  if (m > 0) return `${m}m ${String(s % 60).padStart(2, '0')}s`;
  return `${s}s`;
}

// Relative times count from the server's clock, so a browser whose clock is
// off still says "in 2s" of a run due in 2 s. 'future' is when something is
// due ("in 5s", then "due now", never "ago"); 'past' when something happened
// ("5s ago", or "just now", never "in").
const serverNow = () => Date.now() + state.skew;

function fmtRelative(ms, mode = 'past') {
  if (ms == null || Number.isNaN(ms)) return '–';
  const secs = Math.round((ms - serverNow()) / 1000);
  if (mode === 'future') return secs >= 1 ? `in ${fmtDuration(secs)}` : 'due now';
  return secs <= -1 ? `${fmtDuration(-secs)} ago` : 'just now';
}

// A relative time kept current by tickTimes, the absolute one as its title.
function relTime(ms, mode, attrs = {}) {
  if (ms == null) return el('span', attrs, '–');
  return el('time', { ...attrs, datetime: new Date(ms).toISOString(), title: fmtAt(ms), 'data-at': ms, 'data-rel': mode },
    fmtRelative(ms, mode));
}

function tickTimes() {
  for (const t of document.querySelectorAll('[data-at]')) {
    const text = fmtRelative(Number(t.dataset.at), t.dataset.rel);
    if (t.textContent !== text) t.textContent = text;
  }
}

function niceMax(v) {
  const p = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 5, 10].map((f) => f * p).find((x) => x >= v);
}

function preview(text, n = 120) {
  const flat = String(text ?? '').replace(/\s+/g, ' ');
  return flat.length > n ? `${flat.slice(0, n)}…` : flat;
}

// ---------------------------------------------------------------- DOM helpers

// el('td', { class: 'num', title: t }, 'text', child): attributes and text
// nodes only, so untrusted strings stay text.
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue;
    if (key === 'class') node.className = value;
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  node.append(...children.flat().filter((c) => c != null).map((c) => (c instanceof Node ? c : String(c))));
  return node;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  return node;
}

function setText(selector, text) {
  $(selector).textContent = text;
}

function changed(key, data) {
  const json = JSON.stringify(data);
  if (state.seen.get(key) === json) return false;
  state.seen.set(key, json);
  return true;
}

function toast(message, isError = false) {
  const box = $('#toast');
  box.textContent = message;
  box.className = isError ? 'show error' : 'show';
  clearTimeout(state.toastTimer);
  state.toastTimer = setTimeout(() => { box.className = ''; }, 4000);
}

function setConnected(ok) {
  $('#banner').hidden = ok;
}

// ---------------------------------------------------------------- API

class AuthError extends Error {}
class NetError extends Error {}

async function api(path, { method = 'GET', body } = {}) {
  const options = { method, credentials: 'same-origin', headers: {}, signal: AbortSignal.timeout(10000) };
  if (method !== 'GET') {
    options.headers['Content-Type'] = 'application/json';
    options.headers['X-Tributary-Request'] = '1';
    options.body = JSON.stringify(body ?? {});
  }
  let res;
  try {
    res = await fetch(path, options);
  } catch (err) {
    throw new NetError(err.message);
  }
  setConnected(true);
  noteServerClock(res.headers.get('Date'));
  if (res.status === 401) throw new AuthError('not logged in');
  if (res.status === 204) return null;
  const data = await res.json().catch(() => null);
  if (!res.ok) throw new Error(data?.error || `${path}: HTTP ${res.status}`);
  return data;
}

const post = (path, body) => api(path, { method: 'POST', body });

// The Date header is whole seconds: the server's clock is within a second
// after it. The skew moves only when it is off by more than that.
function noteServerClock(header) {
  const at = Date.parse(header ?? '');
  if (Number.isNaN(at)) return;
  const skew = at + 500 - Date.now();
  if (Math.abs(skew - state.skew) > 1000) state.skew = skew;
}

// A view of the pipeline shown: `path` with its name as ?pipeline=.
function of(path) {
  const sep = path.includes('?') ? '&' : '?';
  return `${path}${sep}pipeline=${encodeURIComponent(state.pipeline)}`;
}

const shown = () => state.pipelines.find((p) => p.name === state.pipeline);

function handleError(err, gen = state.gen) {
  if (gen !== state.gen) return; // a leftover from before a login or logout
  if (err instanceof AuthError) showLogin();
  else if (err instanceof NetError) setConnected(false);
  else toast(err.message, true);
}

function poll(ms, refresh) {
  const gen = state.gen;
  const tick = async () => {
    if (gen !== state.gen) return;
    try {
      await refresh();
    } catch (err) {
      handleError(err, gen);
    }
    if (gen === state.gen) setTimeout(tick, ms);
  };
  tick();
}

// ---------------------------------------------------------------- header + pipeline

function renderStatus(s) {
  setText('#version', `v${s.version}`);
  setText('#uptime', `up ${fmtDuration(s.uptime_secs)}`);
  setText('#rss', s.rss_bytes == null ? '' : `RSS ${(s.rss_bytes / 1048576).toFixed(1)} MiB`);
  setText('#pipeline-name', s.pipeline);
  renderStage('source', s.source, s.source.url, []);
  renderStage('log', s.log, [s.log.kind, s.log.topic && `topic ${s.log.topic}`].filter(Boolean).join(' · '), [
    ['lag', fmtInt(s.log.lag), s.log.lag > 0 ? 'warn' : ''],
    ['waiting', fmtInt(s.log.dead_letters_waiting), s.log.dead_letters_waiting > 0 ? 'bad' : ''],
  ]);
  renderStage('processor', s.processor, s.processor.group && `group ${s.processor.group}`, []);
  renderStage('store', s.store, s.store.describe || s.store.kind, [
    ['rows', fmtInt(s.store.rows), 'big', 'store-rows', 'rows in the store, counted every second or so'],
    ['unchanged', fmtInt(s.store.unchanged)],
    ...storeNodes(s.store.nodes),
    ...(s.store.concurrency_limit != null ? [['write limit', fmtInt(s.store.concurrency_limit), null,
      'store-concurrency', 'writes the store takes at once now: the adaptive limit, or the fixed concurrency']] : []),
  ], 'written');
  // The store's row count, wherever the page shows it: one number, from one answer.
  for (const e of document.querySelectorAll('[data-store-rows]')) e.textContent = fmtInt(s.store.rows);
  const arrow = $('[data-arrow="log-processor"]');
  arrow.classList.toggle('lagging', s.log.lag > 0);
  setText('#arrow-lag', `lag ${fmtInt(s.log.lag)}`);
}

// fields: [label, value, class, id] rows shown after rate/total/errors.
// The store's total is what serve wrote, not its row count: `totalLabel` says so.
// A Cassandra store's nodes as its driver sees them: "3/3 up", each node in
// the title; the down ones named in the value.
function storeNodes(nodes) {
  if (!nodes || nodes.length === 0) return [];
  const down = nodes.filter((n) => !n.up);
  const value = `${nodes.length - down.length}/${nodes.length} up`
    + (down.length ? ` · down ${down.map((n) => n.address).join(', ')}` : '');
  const title = nodes.map((n) => `${n.address} ${n.datacenter || '?'} ${n.up ? 'up' : 'DOWN'}`).join('\n');
  return [['nodes', value, down.length ? 'bad' : '', 'store-nodes', title]];
}

function renderStage(name, stage, sub, extra, totalLabel = 'total') {
  const box = $(`#pipeline [data-stage="${name}"]`);
  $('[data-field="sub"]', box).textContent = sub || '';
  $('[data-field="sub"]', box).title = sub || '';
  const fields = [
    ['rate', fmtRate(stage.rate), 'big'],
    [totalLabel, fmtInt(stage.total), null, null, totalLabel === 'total' ? 'since serve started'
      : 'rows written since serve started, new or changed (a row written again counts again)'],
    ['errors', fmtInt(stage.errors), stage.errors > 0 ? 'bad' : ''],
  ];
  if (stage.retries != null) fields.push(['retries', fmtInt(stage.retries), stage.retries > 0 ? 'warn' : '']);
  $('dl', box).replaceChildren(...[...fields, ...extra].flatMap(([label, value, cls, id, title]) => [
    el('dt', { title }, label),
    el('dd', { 'data-field': label, class: cls || null, id, title }, value),
  ]));
}

// ---------------------------------------------------------------- pipelines

async function loadPipelines() {
  const data = await api('/api/v1/pipelines');
  state.pipelines = data.pipelines;
  const names = data.pipelines.map((p) => p.name);
  const wanted = new URLSearchParams(location.hash.slice(1)).get('pipeline');
  if (names.includes(wanted)) state.pipeline = wanted;
  else if (!names.includes(state.pipeline)) state.pipeline = names[0];
  const select = $('#pipeline-select');
  select.replaceChildren(...data.pipelines.map((p) => el('option', { value: p.name },
    `${p.name} — ${p.kind === 'table' ? 'typed table' : 'built-in users'}`)));
  select.value = state.pipeline;
  setText('#pipeline-count', `${fmtInt(names.length)} pipelines`);
  $('#pipeline-nav').hidden = names.length < 2;
}

function onSelectPipeline(event) {
  state.pipeline = event.target.value;
  history.replaceState(null, '', `#pipeline=${encodeURIComponent(state.pipeline)}`);
  showPipeline();
}

// Where the pipeline reads and writes, its table and its transform.
function renderDefinition(p) {
  setText('#definition-kind', p.kind === 'table' ? 'records into a typed table' : 'Random User users into the seed table');
  const where = [
    ['source', `${p.source.kind} · ${p.source.url}`],
    ['log', `${p.log} · topic ${p.topic}`],
    ['group', p.group],
    ['store', p.store.describe],
    ['jobs', p.jobs.length ? p.jobs.join(', ') : 'none'],
  ];
  $('#definition-where').replaceChildren(...where.flatMap(([label, value]) => [
    el('dt', {}, label), el('dd', { title: value, 'data-field': label }, value)]));
  setText('#source-settings', JSON.stringify(p.source.settings, null, 2));
  const table = p.table;
  $('#schema').hidden = !table;
  if (table) {
    const role = (name) => {
      const i = table.partition_key.indexOf(name);
      if (i >= 0) return table.partition_key.length > 1 ? `partition ${i + 1}` : 'partition';
      const j = table.clustering_key.indexOf(name);
      return j >= 0 ? `clustering ${j + 1}` : '';
    };
    $('#schema-body').replaceChildren(...table.columns.map((c) => el('tr', { 'data-column': c.name },
      el('td', { class: 'mono' }, c.name), el('td', { class: 'mono' }, c.type), el('td', {}, role(c.name)))));
    setText('#schema-note', `fields that are not columns: ${table.unknown_fields === 'ignore' ? 'ignored' : 'rejected'}`);
  } else {
    $('#schema-body').replaceChildren();
    setText('#schema-note', 'created_users: the 12 columns of a flattened Random User user');
  }
  const transform = $('#transform');
  if (p.transform) {
    transform.textContent = p.transform.text;
    setText('#transform-origin', `${p.transform.file}:${p.transform.line}:${p.transform.column}`);
  } else {
    transform.textContent = p.kind === 'table' ? 'none: each record is the row' : 'none: tributary flattens each user';
    setText('#transform-origin', '');
  }
  transform.classList.toggle('empty', !p.transform);
}

// ---------------------------------------------------------------- throughput chart

function renderChart(data) {
  const samples = data.samples || [];
  const end = samples.length ? samples[samples.length - 1].t_ms : Date.now();
  const peak = Math.max(1, ...samples.flatMap((s) => SERIES.map(([key]) => s[key] || 0)));
  const max = niceMax(peak);
  const x = (t) => (300 - ((end - t) / (CHART_SECS * 1000)) * 300).toFixed(1);
  const y = (v) => (100 - (Math.min(v, max) / max) * 98).toFixed(1);
  const lines = SERIES.map(([key, colour, width]) => svg('polyline', {
    points: samples.map((s) => `${x(s.t_ms)},${y(s[key] || 0)}`).join(' '),
    stroke: colour, 'stroke-width': width, fill: 'none', 'vector-effect': 'non-scaling-stroke',
    'stroke-linejoin': 'round', opacity: 0.85, 'data-series': key,
  }));
  const grid = [2, 51].map((gy) => svg('line', { x1: 0, x2: 300, y1: gy, y2: gy, class: 'grid', 'vector-effect': 'non-scaling-stroke' }));
  $('#chart').replaceChildren(...grid, ...lines);
  setText('#chart-max', `${fmtInt(max)}/s`);
  const recent = samples.slice(-5); // the legend shows the mean of the last 5 s, like the diagram
  const mean = (key) => recent.reduce((sum, s) => sum + (s[key] || 0), 0) / Math.max(1, recent.length);
  $('#legend').replaceChildren(...SERIES.map(([key, colour]) => el('li', {},
    swatch(colour), `${key} `, el('b', { class: 'mono' }, fmtRate(mean(key))))));
}

// Set through the CSSOM, which a CSP without style-src 'unsafe-inline' allows.
function swatch(colour) {
  const box = el('i');
  box.style.background = colour;
  return box;
}

// ---------------------------------------------------------------- config

async function loadConfig() {
  const data = await api('/api/v1/config');
  setText('#config-file', data.file || '(defaults)');
  setText('#config-toml', data.toml);
}

// ---------------------------------------------------------------- session

function showLogin() {
  state.gen += 1;
  $('#dashboard').hidden = true;
  $('#logout').hidden = true;
  for (const id of ['#version', '#uptime', '#rss']) setText(id, '');
  $('#login-view').hidden = false;
  $('#token').focus();
}

function showDashboard() {
  state.gen += 1;
  const gen = state.gen;
  $('#login-view').hidden = true;
  $('#dashboard').hidden = false;
  $('#logout').hidden = !state.tokenRequired;
  loadConfig().catch((err) => handleError(err));
  const load = async () => {
    if (gen !== state.gen) return;
    try {
      await loadPipelines();
    } catch (err) {
      handleError(err, gen);
      if (gen === state.gen) setTimeout(load, 2000);
      return;
    }
    if (gen === state.gen) showPipeline();
  };
  load();
}

// Shows the pipeline picked: every view starts over, and the pollers of the
// one shown before stop.
function showPipeline() {
  state.gen += 1;
  state.seen.clear();
  for (const row of state.jobRows.values()) row.tr.remove();
  state.jobRows.clear();
  state.rowColumns = '';
  for (const id of ['#partitions', '#members', '#messages', '#rows', '#rows-head', '#dl-body', '#jobs-body']) $(id).replaceChildren();
  for (const id of ['#topic-name', '#rows-count', '#rows-store', '#dl-waiting', '#dl-discarded', '#dl-result']) setText(id, '');
  resetBrowse();
  closeRuns();
  renderDefinition(shown());
  setText('#jobs-pipeline', state.pipelines.length > 1 ? `feeding ${state.pipeline}` : '');
  poll(1000, async () => renderStatus(await api(of('/api/v1/status'))));
  poll(2000, async () => renderChart(await api(of(`/api/v1/throughput?seconds=${CHART_SECS}`))));
  poll(2000, refreshJobs);
  poll(3000, refreshTopic);
  poll(3000, refreshRows);
  poll(3000, refreshDeadLetters);
}

async function onLogin(event) {
  event.preventDefault();
  const input = $('#token');
  const token = input.value;
  input.value = ''; // the token lives only in the HttpOnly cookie from here on
  setText('#login-error', '');
  try {
    await post('/api/v1/login', { token });
    showDashboard();
  } catch (err) {
    if (err instanceof NetError) setConnected(false);
    setText('#login-error', err instanceof AuthError ? 'wrong token' : `login failed: ${err.message}`);
    input.focus();
  }
}

async function onLogout() {
  try {
    await post('/api/v1/logout');
  } catch (err) {
    if (!(err instanceof AuthError)) { handleError(err); return; }
  }
  showLogin();
}

async function start() {
  let session;
  try {
    session = await api('/api/v1/session');
  } catch (err) {
    if (!(err instanceof AuthError)) {
      if (!(err instanceof NetError)) toast(err.message, true);
      setConnected(false);
      setTimeout(start, 2000);
      return;
    }
    session = { authenticated: false, token_required: true };
  }
  state.tokenRequired = session.token_required;
  if (session.authenticated) showDashboard();
  else showLogin();
}

document.addEventListener('DOMContentLoaded', () => {
  $('#login').addEventListener('submit', onLogin);
  $('#logout').addEventListener('click', onLogout);
  $('#replay-all').addEventListener('click', (event) => replay(null, event.currentTarget));
  $('#discard-all').addEventListener('click', (event) => discard(null, event.currentTarget));
  $('#dl-form').addEventListener('submit', (event) => event.preventDefault());
  $('#pipeline-select').addEventListener('change', onSelectPipeline);
  wireJobs();
  wireBrowse();
  setInterval(tickTimes, 1000);
  start();
});
