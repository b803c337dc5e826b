'use strict';
// The jobs feeding the pipeline shown: schedule, next run, state, recent
// runs, and the buttons that trigger, pause and unpause them. Loaded after
// app.js, whose helpers it uses.

// ---------------------------------------------------------------- jobs

async function refreshJobs() {
  renderJobs(await api(of('/api/v1/jobs')));
}

function renderJobs(data) {
  const body = $('#jobs-body');
  const names = new Set(data.jobs.map((job) => job.name));
  for (const [name, row] of state.jobRows) {
    if (!names.has(name)) { row.tr.remove(); state.jobRows.delete(name); }
  }
  data.jobs.forEach((job, i) => {
    let row = state.jobRows.get(job.name);
    if (!row) { row = makeJobRow(job.name); state.jobRows.set(job.name, row); }
    updateJobRow(row, job);
    if (body.children[i] !== row.tr) body.insertBefore(row.tr, body.children[i] || null);
  });
  if (!data.jobs.length) body.replaceChildren(el('tr', {}, el('td', { colspan: 6, class: 'empty' }, 'no jobs feed this pipeline')));
}

// Rows and buttons are kept across refreshes, so a click is never lost to a redraw.
function makeJobRow(name) {
  const cells = { name: el('td', {}, el('b', {}, name)), schedule: el('td', { 'data-label': 'schedule' }),
    next: el('td', { class: 'mono', 'data-label': 'next run' }), state: el('td', { 'data-label': 'state' }),
    runs: el('td', { class: 'runs', 'data-label': 'recent runs' }) };
  const trigger = el('button', { type: 'button', 'data-action': 'trigger' }, 'Trigger');
  const pause = el('button', { type: 'button', 'data-action': 'pause' }, 'Pause');
  trigger.addEventListener('click', () => jobAction(name, 'trigger', trigger));
  pause.addEventListener('click', () => jobAction(name, pause.dataset.action, pause));
  const tr = el('tr', { 'data-job': name }, Object.values(cells), el('td', { class: 'actions' }, trigger, pause));
  return { tr, cells, pause, runsKey: '' };
}

function updateJobRow(row, job) {
  const { cells } = row;
  cells.schedule.replaceChildren(el('span', { class: 'mono nowrap' }, job.schedule),
    ...(job.burst ? [el('small', { class: 'sub' }, `burst ${job.burst}`)] : []));
  const next = job.paused || !job.next_run ? null : Date.parse(job.next_run);
  if (String(next) !== cells.next.dataset.next) {
    cells.next.dataset.next = String(next);
    cells.next.replaceChildren(relTime(next, 'future'));
  }
  cells.state.replaceChildren(
    el('span', { class: `badge ${job.paused ? 'paused' : 'active'}` }, job.paused ? 'paused' : 'active'),
    ...(job.running ? [el('span', { class: 'badge running' }, 'running')] : []));
  row.pause.dataset.action = job.paused ? 'unpause' : 'pause';
  row.pause.textContent = job.paused ? 'Unpause' : 'Pause';
  const runsKey = JSON.stringify(job.recent_runs);
  if (runsKey !== row.runsKey) {
    row.runsKey = runsKey;
    cells.runs.replaceChildren(...job.recent_runs.map(runBadge));
    if (!job.recent_runs.length) cells.runs.append(el('span', { class: 'sub' }, 'no runs yet'));
  }
}

function runBadge(run) {
  const started = run.started_ms ?? run.scheduled_ms;
  const title = [`run #${run.id} ${run.state}`, `scheduled ${fmtAt(run.scheduled_ms)}`,
    run.ended_ms != null ? `ended ${fmtAt(run.ended_ms)}` : null, `attempts ${run.attempts}`,
    run.failed ? `failed ${run.failed}` : null, run.ticks_skipped ? `ticks skipped ${run.ticks_skipped}` : null,
    run.error].filter(Boolean).join('\n');
  return el('div', { class: 'run', 'data-run-id': run.id, 'data-run-state': run.state, title },
    el('span', { class: `badge state-${run.state}` }, run.state),
    el('span', { class: 'mono' }, `#${run.id}`),
    el('span', { class: 'mono', title: 'fetched / logged' }, `${fmtInt(run.fetched)} / ${fmtInt(run.logged)}`),
    relTime(started, run.state === 'queued' ? 'future' : 'past', { class: 'mono sub' }));
}

async function jobAction(name, action, button) {
  const gen = state.gen;
  button.disabled = true;
  try {
    const res = await post(`/api/v1/jobs/${encodeURIComponent(name)}/${action}`);
    toast(action === 'trigger' ? `queued run #${res.run_id}` : `${name}: ${res.paused ? 'paused' : 'active'}`);
    await refreshJobs();
  } catch (err) {
    handleError(err, gen);
  } finally {
    button.disabled = false;
  }
}
