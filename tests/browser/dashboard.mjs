#!/usr/bin/env node
// Real-browser test of the tributary dashboard: headless Chromium watches the
// store's row count rise live, triggers a job run and waits for it to appear.
// With --table-pipeline it then picks that pipeline in the selector, reads
// its table's schema and its transform as shown, triggers --table-job and
// waits for the typed rows.
//
//   node tests/browser/dashboard.mjs --url http://127.0.0.1:PORT/ --screenshot PATH [--token TOKEN] [--job NAME]
//     [--table-pipeline NAME --table-job NAME]
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
      'table-pipeline': { type: 'string' }, 'table-job': { type: 'string' },
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
  await page.screenshot({ path: tablePath(opts.screenshot), fullPage: true });
  // Back to the first: its views come back, the table's are gone.
  await select.selectOption(first);
  await step(`back to ${first}`, () => page.waitForFunction(
    (n) => document.querySelector('#pipeline-name')?.textContent === n
      && document.querySelector('#rows-head th:nth-child(2)')?.textContent === 'first name'
      && document.querySelector('#schema').hidden, first, { timeout: WAIT_MS }));
  return {
    table_pipeline: name, schema, transform, jobs, run, row_headers: headers, rows, ...counts,
  };
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
    const table = opts['table-pipeline'] == null ? {}
      : await tablePipeline(page, opts['table-pipeline'], opts['table-job'], chosen.pipelines[0]);
    if (await page.locator('#banner').isVisible()) throw new Error('the "disconnected" banner is shown');
    if (!(await page.evaluate(() => window.tributaryNoReload))) throw new Error('the page reloaded');
    if (problems.length) throw new Error(`the page reported ${problems.length} error(s)`);
    await page.screenshot({ path: opts.screenshot, fullPage: true });
    console.log(JSON.stringify({
      ok: true, url: opts.url, first_store_rows: rows.first, last_store_rows: rows.last, rows_count: rows.table,
      ...run, ...chosen, ...table, screenshot: opts.screenshot,
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
