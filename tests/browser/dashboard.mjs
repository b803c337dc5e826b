#!/usr/bin/env node
// Real-browser test of the tributary dashboard: headless Chromium watches the
// store's row count rise live, triggers a job run and waits for it to appear,
// searches the topic by a message's key, seeks to an offset and looks a row
// up by its id. Every view is laid out at 420 px and 1400 px wide and must
// fit: no element sticks out of the window except inside a box that scrolls
// on purpose, and every button is within reach.
// With --table-pipeline it then picks that pipeline in the selector, reads
// its table's schema and its transform as shown, triggers --table-job and
// waits for the typed rows.
//
//   node tests/browser/dashboard.mjs --url http://127.0.0.1:PORT/ --screenshot PATH [--token TOKEN] [--job NAME]
//     [--table-pipeline NAME --table-job NAME] [--widths-dir DIR]
//
// With --widths-dir, the live page is saved there as dashboard-420.png and
// dashboard-1400.png.
//
// Prints one JSON line and exits 0 on success; on failure prints why, saves
// PATH with a "-failure" suffix and exits 1.
import { chromium } from 'playwright-core';
import { parseArgs } from 'node:util';

const WAIT_MS = 60_000;
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-background-networking', '--disable-component-update',
  '--disable-default-apps', '--disable-sync', '--no-first-run', '--disable-dev-shm-usage'];

function options() {
  const { values } = parseArgs({
    options: {
      url: { type: 'string' }, screenshot: { type: 'string' }, token: { type: 'string' }, job: { type: 'string' },
      'table-pipeline': { type: 'string' }, 'table-job': { type: 'string' }, 'widths-dir': { type: 'string' },
    },
  });
  if (!values.url || !values.screenshot || (values['table-pipeline'] == null) !== (values['table-job'] == null)) {
    console.error('usage: node tests/browser/dashboard.mjs --url URL --screenshot PATH [--token TOKEN] [--job NAME]'
      + ' [--table-pipeline NAME --table-job NAME]');
    process.exit(2);
  }
  return values;
}

const failurePath = (path) => (/\.png$/i.test(path) ? path.replace(/\.png$/i, '-failure.png') : `${path}-failure.png`);

// Reads an element's text as an integer (thousands separators stripped); null when not a number yet.
const readCount = (page, selector) => page.locator(selector).textContent({ timeout: WAIT_MS })
  .then((t) => (/\d/.test(t) ? Number(t.replace(/\D/g, '')) : null));

async function step(name, fn) {
  try {
    return await fn();
  } catch (err) {
    throw new Error(`${name}: ${err.message.split('\n')[0]}`);
  }
}

async function login(page, token) {
  await step('login form shown', () => page.locator('#login').waitFor({ state: 'visible', timeout: WAIT_MS }));
  await checkWidths(page, 'the login form');
  await page.fill('#token', token);
  await page.locator('#login [type="submit"]').click();
  // Either the dashboard appears or the form says why not (e.g. "wrong token").
  await step('dashboard after login', () => page.waitForFunction(
    () => !document.querySelector('#dashboard').hidden || document.querySelector('#login-error').textContent,
    null, { timeout: WAIT_MS }));
  const refused = await page.locator('#login-error').textContent();
  if (refused) throw new Error(`login refused: ${refused}`);
  const leaked = await page.evaluate((t) => document.documentElement.outerHTML.includes(t)
    || document.querySelector('#token').value !== '', token);
  if (leaked) throw new Error('the token is still in the DOM after login');
}

async function watchRowsRise(page) {
  await step('#store-rows shows a number', () => page.waitForFunction(
    () => /\d/.test(document.querySelector('#store-rows')?.textContent ?? ''), null, { timeout: WAIT_MS }));
  const first = await readCount(page, '#store-rows');
  await step(`#store-rows rises above ${first} without reload`, () => page.waitForFunction((start) => {
    const n = Number((document.querySelector('#store-rows')?.textContent ?? '').replace(/\D/g, ''));
    return n > start;
  }, first, { timeout: WAIT_MS, polling: 200 }));
  const last = await readCount(page, '#store-rows');
  await step('#rows-count > 0', () => page.waitForFunction(
    () => Number((document.querySelector('#rows-count')?.textContent ?? '').replace(/\D/g, '')) > 0,
    null, { timeout: WAIT_MS }));
  return { first, last, table: await readCount(page, '#rows-count') };
}

async function triggerRun(page, jobName) {
  const any = page.locator(jobName ? `tr[data-job=${JSON.stringify(jobName)}]` : 'tr[data-job]').first();
  await step(`job row ${jobName ?? '(first)'} shown`, () => any.waitFor({ state: 'visible', timeout: WAIT_MS }));
  const job = await any.getAttribute('data-job');
  const sel = `tr[data-job=${JSON.stringify(job)}]`;
  const oldId = await page.$eval(sel, (tr) => Math.max(0, ...[...tr.querySelectorAll('[data-run-id]')]
    .map((e) => Number(e.dataset.runId))));
  const response = page.waitForResponse((r) => r.request().method() === 'POST' && r.url().endsWith('/trigger'),
    { timeout: WAIT_MS });
  await page.locator(`${sel} button[data-action="trigger"]`).click();
  const res = await step('trigger POST', () => response);
  if (res.status() !== 202) throw new Error(`trigger POST answered ${res.status()}: ${await res.text()}`);
  const queued = (await res.json()).run_id ?? null;
  const appeared = await step(`run #${queued ?? '?'} (> #${oldId}) appears in ${job}'s row`, () => page.waitForFunction(
    ({ sel, old, id }) => [...(document.querySelector(sel)?.querySelectorAll('[data-run-id]') ?? [])]
      .map((e) => Number(e.dataset.runId)).find((n) => n > old && (id == null || n === id)),
    { sel, old: oldId, id: queued }, { timeout: WAIT_MS, polling: 200 }));
  const newId = await appeared.jsonValue();
  const newState = await page.locator(`${sel} [data-run-id="${newId}"]`).getAttribute('data-run-state');
  return { job, old_run_id: oldId, new_run_id: newId, new_run_state: newState };
}

// The selector: shown or not, and the pipelines it offers.
async function selector(page) {
  await step('pipelines loaded', () => page.waitForFunction(
    () => document.querySelectorAll('#pipeline-select option').length > 0, null, { timeout: WAIT_MS }));
  return {
    selector_shown: await page.locator('#pipeline-nav').isVisible(),
    pipelines: await page.$$eval('#pipeline-select option', (os) => os.map((o) => o.value)),
    shown_pipeline: await page.locator('#pipeline-select').inputValue(),
  };
}

// ---------------------------------------------------------------- layout

const WIDTHS = [420, 1400];
const layoutProblems = [];

// What sticks out of the window at this width: the page scrolling sideways,
// any element past its right edge (except inside a box that scrolls or clips
// on purpose), any button out of reach, and a due time that reads "ago".
function overflows() {
  const w = window.innerWidth;
  const out = [];
  const doc = document.documentElement;
  if (doc.scrollWidth > w) out.push(`the page is ${doc.scrollWidth} px wide`);
  const clipped = (e) => {
    for (let p = e.parentElement; p && p !== document.body; p = p.parentElement) {
      if (['auto', 'scroll', 'hidden'].includes(getComputedStyle(p).overflowX)) return true;
    }
    return false;
  };
  const name = (e) => `${e.tagName.toLowerCase()}${e.id ? `#${e.id}` : ''}${e.className && typeof e.className === 'string' ? `.${e.className.trim().replace(/\s+/g, '.')}` : ''}`
    + ` "${(e.textContent || '').trim().slice(0, 30)}"`;
  for (const e of document.querySelectorAll('body *')) {
    const r = e.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue; // not shown
    const out_ = r.right > w + 1 || r.left < -1;
    if (!out_) continue;
    if (e.tagName === 'BUTTON' || !clipped(e)) out.push(`${name(e)}: ${Math.round(r.left)}..${Math.round(r.right)} of ${w} (in ${e.parentElement ? name(e.parentElement).slice(0, 40) : ""} ${Math.round(e.parentElement?.getBoundingClientRect().width ?? 0)} px)`);
  }
  for (const t of document.querySelectorAll('[data-rel="future"]')) {
    if (/ago/.test(t.textContent)) out.push(`a due time reads "${t.textContent}"`);
  }
  return out.slice(0, 12);
}

// Lays the page out at each width and records what does not fit.
async function checkWidths(page, view) {
  // What a click would unfold is checked unfolded.
  const closed = await page.evaluate(() => [...document.querySelectorAll('details:not([open])')]
    .map((d) => { d.open = true; return d.id; }));
  for (const width of WIDTHS) {
    await page.setViewportSize({ width, height: 900 });
    await page.evaluate(() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done))));
    const bad = await page.evaluate(overflows);
    for (const b of bad) layoutProblems.push(`${view} at ${width} px: ${b}`);
  }
  await page.evaluate((ids) => ids.forEach((id) => { if (id) document.getElementById(id).open = false; }), closed);
  await page.setViewportSize({ width: 1280, height: 800 });
}

async function saveWidths(page, dir) {
  for (const width of WIDTHS) {
    await page.setViewportSize({ width, height: 900 });
    await page.evaluate(() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done))));
    await page.screenshot({ path: `${dir}/dashboard-${width}.png`, fullPage: true });
  }
  await page.setViewportSize({ width: 1280, height: 800 });
}

// ---------------------------------------------------------------- browsing

// Opens the job's run history: every run the row lists is there, the run
// just triggered among them, newest first.
async function runHistory(page, job, runId) {
  const sel = `tr[data-job=${JSON.stringify(job)}]`;
  // Pages of 2 runs (the page asks for 20): "Older runs" walks them all.
  const pages = (route) => route.continue({ url: route.request().url().replace('limit=20', 'limit=2') });
  await page.route('**/api/v1/jobs/*/runs?*', pages);
  await page.locator(`${sel} button[data-action="history"]`).click();
  await step(`the history of ${job} opens with a page of 2`, () => page.waitForFunction(
    () => !document.querySelector('#history').hidden
      && document.querySelectorAll('#history-body tr[data-run-id]').length === 2, null, { timeout: WAIT_MS }));
  const walk = async () => {
    for (let i = 0; i < 50 && await page.locator('#history-more').isVisible(); i++) {
      const before = await page.locator('#history-body tr[data-run-id]').count();
      await page.locator('#history-more').click();
      await step('an older page', () => page.waitForFunction(
        (n) => document.querySelectorAll('#history-body tr[data-run-id]').length > n
          || document.querySelector('#history-more').hidden, before, { timeout: WAIT_MS }));
    }
  };
  await walk();
  await page.unroute('**/api/v1/jobs/*/runs?*', pages);
  await step(`the history of ${job} shows run #${runId}`, () => page.waitForFunction(
    (id) => document.querySelector(`#history-body tr[data-run-id="${id}"]`), runId, { timeout: WAIT_MS }));
  // While only the first page is shown it is kept fresh: a refresh made
  // while pages were cut to 2 can land after the walk (a new run pushed
  // the oldest to a second page). Walk on to the end.
  await walk();
  const ids = await page.$$eval('#history-body tr[data-run-id]', (trs) => trs.map((tr) => Number(tr.dataset.runId)));
  const listed = await page.$$eval(`${sel} [data-run-id]`, (es) => es.map((e) => Number(e.dataset.runId)));
  // The row refreshes on its own: a run it lists that started after the
  // history was read is newer than every run there, and not a miss.
  const newest = Math.max(...ids);
  if (listed.some((id) => id <= newest && !ids.includes(id))) throw new Error(`the history ${JSON.stringify(ids)} misses runs of the row ${JSON.stringify(listed)}`);
  if (ids.some((id, i) => i > 0 && id >= ids[i - 1])) throw new Error(`the history is not newest first: ${JSON.stringify(ids)}`);
  const all = await page.evaluate(async (name) => (await (await fetch(`/api/v1/jobs/${name}/runs?limit=500`)).json()).runs
    .map((r) => r.id), job);
  const missing = all.filter((id) => id <= newest && !ids.includes(id));
  if (missing.length) throw new Error(`paging missed runs ${JSON.stringify(missing)} of ${JSON.stringify(ids)}`);
  await checkWidths(page, 'a job\'s run history');
  await page.locator('#history-close').click();
  await step('the history closed', () => page.locator('#history').waitFor({ state: 'hidden', timeout: WAIT_MS }));
  return { history_runs: ids.length };
}

// Pauses the job, so a trigger stays queued; opens the queued run's lines
// in the history and cancels it there; unpauses.
async function cancelQueued(page, job) {
  const sel = `tr[data-job=${JSON.stringify(job)}]`;
  await page.locator(`${sel} button[data-action="pause"]`).click();
  await step(`${job} paused and idle`, () => page.waitForFunction(
    (s) => document.querySelector(`${s} button[data-action="unpause"]`)
      && !document.querySelector(`${s} .badge.running`), sel, { timeout: WAIT_MS }));
  const run = await triggerRun(page, job);
  const id = run.new_run_id;
  if (run.new_run_state !== 'queued') throw new Error(`run #${id} of a paused job is ${run.new_run_state}`);
  await step(`${job}: "Cancel queued" offered`, () => page.locator(`${sel} button[data-action="cancel-queued"]`)
    .waitFor({ state: 'visible', timeout: WAIT_MS }));
  await page.locator(`${sel} button[data-action="history"]`).click();
  const row = `#history-body tr[data-run-id="${id}"]`;
  await step(`run #${id} queued in the history`, () => page.locator(`${row}[data-run-state="queued"]`)
    .waitFor({ state: 'visible', timeout: WAIT_MS }));
  await page.locator(`${row} button[data-action="run-lines"]`).click();
  const lines = `#history-body tr[data-lines-of="${id}"] li`;
  await step(`run #${id}'s lines`, () => page.locator(lines).first().waitFor({ state: 'visible', timeout: WAIT_MS }));
  const texts_ = await page.$$eval(lines, (lis) => lis.map((li) => li.textContent));
  await checkWidths(page, 'a run\'s lines');
  await page.locator(`${row} button[data-action="cancel"]`).click();
  await step(`run #${id} cancelled`, () => page.locator(`#history-body tr[data-run-id="${id}"][data-run-state="cancelled"]`)
    .waitFor({ state: 'visible', timeout: WAIT_MS }));
  await step(`${job}: "Cancel queued" gone`, () => page.locator(`${sel} button[data-action="cancel-queued"]`)
    .waitFor({ state: 'hidden', timeout: WAIT_MS }));
  await page.locator('#history-close').click();
  await page.locator(`${sel} button[data-action="unpause"]`).click();
  await step(`${job} unpaused`, () => page.locator(`${sel} button[data-action="pause"]`)
    .waitFor({ state: 'visible', timeout: WAIT_MS }));
  return { cancelled_run: id, run_lines: texts_ };
}

// Clicks the newest message's key: the search must list only that key's
// messages and say it searched the whole partition. Then seeks to offset 0
// and pages on with "More"; then back to the live view.
async function browseMessages(page) {
  const key = page.locator('#messages [data-key]').first();
  await step('a message with a key listed', () => key.waitFor({ state: 'visible', timeout: WAIT_MS }));
  // New messages may push the list down under the click: the key searched is
  // the one the click put in the search box.
  await key.click();
  const wanted = await page.locator('#msg-key').inputValue();
  if (!wanted) throw new Error('a click on a key did not fill the search box');
  await step(`the search for key ${wanted} ends`, () => page.waitForFunction(
    () => /key searched/.test(document.querySelector('#msg-status')?.textContent ?? ''), null, { timeout: WAIT_MS }));
  const keys = await page.$$eval('#messages .msg [data-key]', (es) => es.map((e) => e.dataset.key));
  if (!keys.length || keys.some((k) => k !== wanted)) throw new Error(`the key search for ${wanted} listed ${JSON.stringify(keys)}`);
  await checkWidths(page, 'a key search');
  await page.locator('#msg-key').fill('');
  await page.selectOption('#msg-mode', 'offset');
  await page.locator('#msg-offset').fill('0');
  await page.locator('#msg-form [type="submit"]').click();
  await step('offset 0 shown first', () => page.waitForFunction(
    () => document.querySelector('#messages .msg')?.dataset.offset === '0'
      && document.querySelectorAll('#messages .msg').length === 20, null, { timeout: WAIT_MS }));
  await step('"More" pages on', async () => {
    await page.locator('#msg-more').click();
    await page.waitForFunction(() => document.querySelectorAll('#messages .msg').length > 20
      && document.querySelectorAll('#messages .msg')[20].dataset.offset === '20', null, { timeout: WAIT_MS });
  });
  await checkWidths(page, 'messages from an offset');
  // From the time of offset 5 (to the second, in the browser's time zone):
  // offset 5 or one before it written in the same second comes first.
  const at = await page.$eval('#messages .msg[data-offset="5"] .sub', (e) => e.textContent.split(' · ')[1]);
  await page.selectOption('#msg-mode', 'time');
  await page.locator('#msg-time').fill(at.replace(' ', 'T'));
  await page.locator('#msg-form [type="submit"]').click();
  await step(`messages from ${at}`, () => page.waitForFunction(
    () => /oldest first/.test(document.querySelector('#msg-status')?.textContent ?? '')
      && Number(document.querySelector('#messages .msg')?.dataset.offset) <= 5
      && document.querySelector('#messages .msg .sub')?.textContent.includes(' · '), null, { timeout: WAIT_MS }));
  const fromTime = await page.$eval('#messages .msg .sub', (e) => e.textContent.split(' · ')[1]);
  if (fromTime < at) throw new Error(`the seek to ${at} shows a message of ${fromTime} first`);
  await checkWidths(page, 'messages from a time');
  await page.locator('#msg-live').click();
  await step('back to the live messages', () => page.waitForFunction(
    () => document.querySelector('#msg-status').textContent === ''
      && document.querySelector('#messages .msg')?.dataset.offset !== '0', null, { timeout: WAIT_MS }));
  return { searched_key: wanted, found_with_key: keys.length };
}

// Clicks a user's id in the table: the lookup must show that one row.
async function lookUpRow(page) {
  const id = page.locator('#rows td[data-key]').first();
  await step('a row with an id listed', () => id.waitFor({ state: 'visible', timeout: WAIT_MS }));
  await id.click();
  const wanted = await page.locator('#row-key').inputValue();
  if (!wanted) throw new Error('a click on an id did not fill the lookup');
  await step(`the row of ${wanted} found`, () => page.waitForFunction(
    (k) => /1 row with key/.test(document.querySelector('#row-status')?.textContent ?? '')
      && document.querySelectorAll('#rows tr').length === 1
      && document.querySelector('#rows td[data-key]')?.dataset.key === k, wanted, { timeout: WAIT_MS }));
  await checkWidths(page, 'a row lookup');
  await page.locator('#row-clear').click();
  await step('back to the newest rows', () => page.waitForFunction(
    () => document.querySelectorAll('#rows tr').length > 1, null, { timeout: WAIT_MS }));
  return { looked_up_id: wanted };
}

// A browser whose clock runs 90 s ahead of the server's: the next run must
// still read "in …" (or "due now"), the runs that ended "… ago".
async function skewedClock(browser, url) {
  const page = await browser.newPage();
  try {
    await page.clock.setSystemTime(Date.now() + 90_000);
    await page.goto(url, { waitUntil: 'load', timeout: WAIT_MS });
    const next = page.locator('tr[data-job] td[data-label="next run"] time').first();
    await step('the next run shown with a skewed clock', () => next.waitFor({ state: 'visible', timeout: WAIT_MS }));
    await step('a run shown with a skewed clock', () => page.locator('tr[data-job] .run time').first()
      .waitFor({ state: 'visible', timeout: WAIT_MS }));
    const runs = await texts(page, 'tr[data-job] .run:not([data-run-state="queued"]) time');
    return { skewed_next_run: await next.textContent(), skewed_runs: runs };
  } finally {
    await page.close();
  }
}

// The store's row count reads the same wherever the page shows it.
async function oneRowCount(page) {
  const counts = await page.$$eval('#store-rows, [data-store-rows]', (es) => es.map((e) => e.textContent));
  if (counts.length < 2 || new Set(counts).size !== 1) throw new Error(`the row counts differ: ${JSON.stringify(counts)}`);
  return counts[0];
}

const texts = (page, selector) => page.$$eval(selector, (es) => es.map((e) => e.textContent));

// Picks the table pipeline, reads its definition as the page shows it, runs
// its job and waits for its rows; then goes back to the first pipeline.
async function tablePipeline(page, name, jobName, first) {
  const select = page.locator('#pipeline-select');
  await step('the selector has a label', async () => {
    const label = await page.locator('label[for="pipeline-select"]').textContent();
    if (!label.trim()) throw new Error('no label');
  });
  await select.selectOption(name);
  await step(`the status of ${name} shown`, () => page.waitForFunction(
    (n) => document.querySelector('#pipeline-name')?.textContent === n, name, { timeout: WAIT_MS }));
  const hash = await page.evaluate(() => location.hash);
  if (hash !== `#pipeline=${encodeURIComponent(name)}`) throw new Error(`the address says ${hash}`);
  await step('the schema shown', () => page.locator('#schema-body tr').first().waitFor({ state: 'visible', timeout: WAIT_MS }));
  const schema = await page.$$eval('#schema-body tr', (trs) => trs.map((tr) => [...tr.cells].map((td) => td.textContent)));
  const transform = await page.locator('#transform').textContent();
  const transformElements = await page.$eval('#transform', (pre) => pre.childElementCount);
  if (transformElements !== 0) throw new Error(`the transform holds ${transformElements} element(s): parsed as HTML`);
  const run = await triggerRun(page, jobName);
  const jobs = await page.$$eval('tr[data-job]', (trs) => trs.map((tr) => tr.dataset.job));
  await step(`${name}: #rows-count > 0`, () => page.waitForFunction(
    () => Number((document.querySelector('#rows-count')?.textContent ?? '').replace(/\D/g, '')) > 0,
    null, { timeout: WAIT_MS, polling: 200 }));
  await step(`${name}: #store-rows > 0`, () => page.waitForFunction(
    () => Number((document.querySelector('#store-rows')?.textContent ?? '').replace(/\D/g, '')) > 0,
    null, { timeout: WAIT_MS, polling: 200 }));
  await step(`${name}: rows listed`, () => page.locator('#rows tr td:not(.empty)').first().waitFor({ state: 'visible', timeout: WAIT_MS }));
  const headers = await texts(page, '#rows-head th');
  const rows = await page.$$eval('#rows tr', (trs) => trs.map((tr) => [...tr.cells].map((td) => td.textContent)));
  const injected = await page.evaluate(() => document.querySelectorAll('#dashboard img, [data-pwned]').length
    + (window.pwned ? 1 : 0));
  if (injected) throw new Error('markup from the config or the rows was parsed as HTML');
  const counts = { table_rows_count: await readCount(page, '#rows-count'), table_store_rows: await readCount(page, '#store-rows') };
  await step(`${name}: a dead letter listed`, () => page.locator('#dl-body tr[data-dl-id]').first()
    .waitFor({ state: 'visible', timeout: WAIT_MS }));
  counts.table_dead_letters = await page.locator('#dl-body tr[data-dl-id]').count();
  await checkWidths(page, `pipeline ${name}`);
  const lookup = await findByKey(page);
  const replayed = await replayOverwriting(page);
  counts.discarded = await discardLetter(page);
  await page.screenshot({ path: tablePath(opts.screenshot), fullPage: true });
  // Back to the first: its views come back, the table's are gone.
  await select.selectOption(first);
  await step(`back to ${first}`, () => page.waitForFunction(
    (n) => document.querySelector('#pipeline-name')?.textContent === n
      && document.querySelector('#rows-head th:nth-child(2)')?.textContent === 'first name'
      && document.querySelector('#schema').hidden, first, { timeout: WAIT_MS }));
  return {
    table_pipeline: name, schema, transform, jobs, run, row_headers: headers, rows, ...counts, ...lookup, ...replayed,
  };
}

// Replays the first waiting letter with "overwrite" ticked: the request
// asks to overwrite, and a letter the table still refuses stays waiting.
async function replayOverwriting(page) {
  const letter = page.locator('#dl-body tr[data-dl-id]').first();
  const id = await letter.getAttribute('data-dl-id');
  await page.locator('#dl-overwrite').check();
  const asked = page.waitForRequest((r) => r.method() === 'POST' && r.url().includes('/api/v1/dead-letters/replay'),
    { timeout: WAIT_MS });
  await letter.locator('button[data-action="replay"]').click();
  const body = JSON.parse((await asked).postData() ?? '{}');
  await step(`letter ${id} replayed`, () => page.waitForFunction(
    () => /still failing 1/.test(document.querySelector('#dl-result').textContent), null, { timeout: WAIT_MS }));
  await page.locator('#dl-overwrite').uncheck();
  return {
    replay_request: body,
    replay_result: await page.$eval('#dl-result', (p) => p.textContent),
    replay_still_listed: await page.locator(`#dl-body tr[data-dl-id="${id}"]`).count(),
  };
}

// Discards the first waiting letter with a reason: it leaves the list, the
// counts say so.
async function discardLetter(page) {
  const letter = page.locator('#dl-body tr[data-dl-id]').first();
  const id = await letter.getAttribute('data-dl-id');
  await page.locator('#dl-reason').fill('a test order');
  await letter.locator('button[data-action="discard"]').click();
  await step(`letter ${id} discarded`, () => page.waitForFunction(
    (i) => !document.querySelector(`#dl-body tr[data-dl-id="${i}"]`)
      && document.querySelector('#dl-waiting').textContent === '0'
      && document.querySelector('#dl-discarded').textContent === '1'
      && /discarded 1/.test(document.querySelector('#dl-result').textContent), id, { timeout: WAIT_MS }));
  return Number(id);
}

// Types the first row's partition key into the lookup: the rows of that key.
async function findByKey(page) {
  const key = await page.$eval('#rows tr td', (td) => td.textContent);
  await page.locator('#row-key').fill(key);
  await page.locator('#row-form [type="submit"]').click();
  await step(`rows of key ${key}`, () => page.waitForFunction(
    () => /with key/.test(document.querySelector('#row-status')?.textContent ?? ''), null, { timeout: WAIT_MS }));
  const found = await page.$$eval('#rows tr', (trs) => trs.map((tr) => [...tr.cells].map((td) => td.textContent)));
  await checkWidths(page, 'a typed row lookup');
  await page.locator('#row-clear').click();
  return { lookup_key: key, lookup_rows: found };
}

const tablePath = (path) => (/\.png$/i.test(path) ? path.replace(/\.png$/i, '-table.png') : `${path}-table.png`);
let opts;

async function main() {
  opts = options();
  const problems = [];
  const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
  let browser;
  try {
    browser = await chromium.launch({ executablePath, headless: true, args: CHROMIUM_ARGS });
  } catch (err) {
    console.error(`dashboard test FAILED: cannot launch Chromium at ${executablePath} (set CHROMIUM): ${err.message.split('\n')[0]}`);
    return 1;
  }
  let page;
  try {
    page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    page.on('pageerror', (err) => problems.push(`uncaught exception: ${err.message}`));
    page.on('console', (msg) => { if (msg.type() === 'error') problems.push(`console error: ${msg.text()}`); });
    await step(`load ${opts.url}`, () => page.goto(opts.url, { waitUntil: 'load', timeout: WAIT_MS }));
    if (opts.token != null) await login(page, opts.token);
    await step('dashboard shown', () => page.locator('#dashboard').waitFor({ state: 'visible', timeout: WAIT_MS }));
    await page.evaluate(() => { window.tributaryNoReload = true; }); // gone if the page reloads
    const chosen = await selector(page);
    const rows = await watchRowsRise(page);
    const run = await triggerRun(page, opts.job);
    await checkWidths(page, 'the dashboard');
    const history = await runHistory(page, run.job, run.new_run_id);
    if (opts['widths-dir'] != null) await saveWidths(page, opts['widths-dir']);
    const browsed = await browseMessages(page);
    const looked = await lookUpRow(page);
    const rowCount = await oneRowCount(page);
    const skewed = opts.token == null ? await skewedClock(browser, opts.url) : {};
    const cancelled = await cancelQueued(page, run.job);
    const table = opts['table-pipeline'] == null ? {}
      : await tablePipeline(page, opts['table-pipeline'], opts['table-job'], chosen.pipelines[0]);
    if (await page.locator('#banner').isVisible()) throw new Error('the "disconnected" banner is shown');
    if (!(await page.evaluate(() => window.tributaryNoReload))) throw new Error('the page reloaded');
    if (problems.length) throw new Error(`the page reported ${problems.length} error(s)`);
    if (layoutProblems.length) throw new Error(`the layout does not fit:\n  ${layoutProblems.join('\n  ')}`);
    await page.screenshot({ path: opts.screenshot, fullPage: true });
    console.log(JSON.stringify({
      ok: true, url: opts.url, first_store_rows: rows.first, last_store_rows: rows.last, rows_count: rows.table,
      ...run, ...chosen, ...table, ...browsed, ...looked, row_count: rowCount, ...skewed, ...history, ...cancelled, screenshot: opts.screenshot,
      widths_checked: WIDTHS,
    }));
    return 0;
  } catch (err) {
    console.error(`dashboard test FAILED: ${err.message}`);
    if (problems.length) console.error(`page errors:\n  ${problems.join('\n  ')}`);
    if (page) {
      const shot = failurePath(opts.screenshot);
      await page.screenshot({ path: shot, fullPage: true }).then(() => console.error(`screenshot: ${shot}`), () => {});
    }
    return 1;
  } finally {
    await browser.close();
  }
}

process.exitCode = await main();
