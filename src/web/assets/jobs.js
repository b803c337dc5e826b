'use strict';
// The jobs feeding the pipeline shown: schedule, next run, state, recent
// runs, and the buttons that trigger, pause and unpause them; a job's whole
// run history, a page at a time, each run's lines on a click, and the
// cancelling of queued runs. Loaded after app.js, whose helpers it uses.

// ---------------------------------------------------------------- jobs

async function refreshJobs() {
  renderJobs(await api(of('/api/v1/jobs')));
  if (runsView.job != null && runsView.pages === 1) await loadRuns(false);
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
  const runs = el('button', { type: 'button', 'data-action': 'history' }, 'History');
  const cancel = el('button', { type: 'button', 'data-action': 'cancel-queued', hidden: true }, 'Cancel queued');
  cancel.addEventListener('click', () => cancelRuns(name, { queued: true }, cancel));
  trigger.addEventListener('click', () => jobAction(name, 'trigger', trigger));
  pause.addEventListener('click', () => jobAction(name, pause.dataset.action, pause));
  runs.addEventListener('click', () => openRuns(name).catch((err) => handleError(err)));
  const tr = el('tr', { 'data-job': name }, Object.values(cells), el('td', { class: 'actions' }, trigger, pause, runs, cancel));
  return { tr, cells, pause, cancel, runsKey: '' };
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
  row.cancel.hidden = !job.recent_runs.some((r) => r.state === 'queued');
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
    toast(action === 'trigger' ? `queued run #${res.run_id}${res.paused ? ` (${name} is paused: it waits for the unpause)` : ''}` : `${name}: ${res.paused ? 'paused' : 'active'}`);
    await refreshJobs();
  } catch (err) {
    handleError(err, gen);
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------- run history

const runsView = {
  job: null, // the job whose runs are shown (null: none)
  next: null, // where the next page starts (the answer's next_before)
  pages: 0, // pages shown; the first is kept fresh while it is the only one
  firsts: 0, // first pages shown: a later page asked for before one landed is stale
};

const RUNS_PAGE = 20;

async function openRuns(name) {
  Object.assign(runsView, { job: name, next: null, pages: 0 });
  state.seen.delete('history');
  setText('#history-job', name);
  setText('#history-note', '');
  $('#history-body').replaceChildren();
  $('#history').hidden = false;
  await loadRuns(false);
  $('#history').scrollIntoView({ block: 'nearest' });
}

function closeRuns() {
  Object.assign(runsView, { job: null, next: null, pages: 0 });
  $('#history').hidden = true;
  $('#history-body').replaceChildren();
}

// The first page again (`more` false), or the page after the last shown.
// A refresh of the first page and a click on "Older runs" can cross: the
// older page asked for from the cursor of a first page replaced meanwhile
// is asked for again from the new one (appended, it would leave a gap),
// and a first page asked for before an older page was added is dropped
// (it would fold the history the user walked).
async function loadRuns(more) {
  const name = runsView.job;
  const gen = state.gen;
  const { firsts, pages } = runsView;
  const query = new URLSearchParams({ limit: String(RUNS_PAGE) });
  if (more && runsView.next != null) query.set('before', String(runsView.next));
  const data = await api(`/api/v1/jobs/${encodeURIComponent(name)}/runs?${query}`);
  if (gen !== state.gen || name !== runsView.job) return;
  if (more && runsView.firsts !== firsts) return loadRuns(true);
  if (!more && pages > 0 && runsView.pages !== pages) return;
  if (!more && !changed('history', data) && runsView.pages) return;
  const rows = data.runs.map(runRow);
  if (more) $('#history-body').append(...rows);
  else $('#history-body').replaceChildren(...(rows.length ? rows
    : [el('tr', {}, el('td', { colspan: 10, class: 'empty' }, 'no runs yet'))]));
  runsView.pages = more ? runsView.pages + 1 : 1;
  if (!more) runsView.firsts += 1;
  runsView.next = data.next_before ?? null;
  $('#history-more').hidden = runsView.next == null;
  const shownNow = $('#history-body').querySelectorAll('tr[data-run-id]').length;
  setText('#history-note', `${fmtInt(shownNow)} run${shownNow === 1 ? '' : 's'}, newest first${runsView.next == null ? ', all' : ''}`);
}

function fmtTook(ms) {
  if (ms == null || ms < 0) return '–';
  return ms < 60000 ? `${(ms / 1000).toFixed(1)}s` : fmtDuration(ms / 1000);
}

function runRow(run) {
  const took = run.started_ms != null && run.ended_ms != null ? run.ended_ms - run.started_ms : null;
  const open = el('button', { type: 'button', class: 'link mono', 'data-action': 'run-lines', 'aria-expanded': 'false',
    title: 'its lines' }, `#${run.id}`);
  open.addEventListener('click', () => toggleRunLines(run.id, open).catch((err) => handleError(err)));
  const cancel = run.state === 'queued' ? el('button', { type: 'button', 'data-action': 'cancel' }, 'Cancel') : null;
  cancel?.addEventListener('click', () => cancelRuns(runsView.job, { run: run.id }, cancel));
  return el('tr', { 'data-run-id': run.id, 'data-run-state': run.state },
    el('td', {}, open),
    el('td', {}, el('span', { class: `badge state-${run.state}` }, run.state)),
    el('td', { class: 'mono', 'data-label': 'scheduled' }, fmtAt(run.scheduled_ms)),
    el('td', { class: 'mono', 'data-label': 'started' }, fmtAt(run.started_ms)),
    el('td', { class: 'mono', 'data-label': 'ended' }, fmtAt(run.ended_ms)),
    el('td', { class: 'num', 'data-label': 'took' }, fmtTook(took)),
    el('td', { class: 'num', 'data-label': 'attempts' }, fmtInt(run.attempts)),
    el('td', { class: 'num', 'data-label': 'fetched / logged' }, `${fmtInt(run.fetched)} / ${fmtInt(run.logged)}`),
    el('td', { class: 'reason', 'data-label': 'error' }, run.error ?? ''),
    el('td', { class: 'actions' }, cancel));
}

// A run's lines (queued, attempts, errors, counts, outcome) in a row below
// it; a second click folds them away.
async function toggleRunLines(id, button) {
  const tr = button.closest('tr');
  const open = tr.nextElementSibling?.dataset.linesOf === String(id);
  if (open) {
    tr.nextElementSibling.remove();
    button.setAttribute('aria-expanded', 'false');
    return;
  }
  const name = runsView.job;
  const run = await api(`/api/v1/jobs/${encodeURIComponent(name)}/runs/${id}`);
  if (name !== runsView.job || !tr.isConnected) return;
  const lines = (run.events ?? []).map((e) => el('li', {}, el('span', { class: 'mono sub' }, fmtAt(e.at_ms)), ' ', e.text));
  tr.after(el('tr', { class: 'run-lines', 'data-lines-of': id }, el('td', { colspan: 10 },
    lines.length ? el('ol', { class: 'events' }, lines) : el('p', { class: 'empty' }, 'no lines kept for this run'))));
  button.setAttribute('aria-expanded', 'true');
}

// Cancels one queued run ({run: id}) or every queued run of the job
// ({queued: true}); a running run is not stopped.
async function cancelRuns(name, body, button) {
  const gen = state.gen;
  button.disabled = true;
  try {
    const res = await post(`/api/v1/jobs/${encodeURIComponent(name)}/cancel`, body);
    toast(`${name}: cancelled ${fmtInt(res.cancelled)} queued run${res.cancelled === 1 ? '' : 's'}`);
    await refreshJobs();
    if (runsView.job === name) { state.seen.delete('history'); await loadRuns(false); }
  } catch (err) {
    handleError(err, gen);
  } finally {
    button.disabled = false;
  }
}

function wireJobs() {
  $('#history-close').addEventListener('click', closeRuns);
  $('#history-more').addEventListener('click', (event) => {
    const button = event.currentTarget;
    button.disabled = true;
    loadRuns(true).catch((err) => handleError(err)).finally(() => { button.disabled = false; });
  });
}
