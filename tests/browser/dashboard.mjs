// dashboard.mjs — GET /dashboard in a real browser: headless Chromium
// driven by playwright-core against a tpool-server that run.sh started on
// 127.0.0.1. Checks that the five pools appear, that the numbers move when
// tasks are posted, that the log button asks for the admin token and
// works, that the page says so when the server stops answering and
// recovers when it is back, and that the browser console stays clean.
// Saves a screenshot. Exits 0, or 1 with the reason.
//
// Usage: node dashboard.mjs URL TOKEN SCREENSHOT CONTROL
// CONTROL is a file of commands for run.sh: the script writes "stop" or
// "start" to it and waits for run.sh to write "stopped" or "started".
import { chromium } from 'playwright-core';
import { readFileSync, writeFileSync } from 'node:fs';

const [url, token, screenshot, control] = process.argv.slice(2);
const POOLS = ['io', 'cpu', 'inference', 'embedding', 'db'];
const WAIT_MS = 30000;

function fail(msg) {
  console.error('dashboard test: ' + msg);
  process.exit(1);
}

async function ask(command, answer) {
  writeFileSync(control, command);
  const until = Date.now() + WAIT_MS;
  while (Date.now() < until) {
    if (readFileSync(control, 'utf8').trim() === answer) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  fail(`run.sh did not answer "${command}"`);
}

async function postTasks(n) {
  const replies = [];
  for (let i = 0; i < n; i++)
    replies.push(fetch(url + 'tasks/cpu', {
      method: 'POST',
      headers: { Authorization: 'Bearer ' + token },
      body: JSON.stringify({ name: 'browser_load', work: 'sleep', ms: 1500 }),
    }));
  return replies;
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu'],
});
const problems = [];
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  page.on('console', (m) => {
    // Failed fetches while the server is down are expected; anything else
    // the page logs as an error is a defect.
    if (m.type() === 'error' && !/Failed to load resource|ERR_CONNECTION_REFUSED/.test(m.text()))
      problems.push('console: ' + m.text());
  });
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));

  await page.goto(url + 'dashboard');
  for (const p of POOLS)
    await page.waitForSelector(`#pool-${p}`, { timeout: WAIT_MS });
  const cards = await page.$$eval('section.pool', (s) => s.map((e) => e.dataset.pool));
  if (cards.join() !== POOLS.join()) fail('pools shown: ' + cards.join());

  // Load: the cpu pool's busy workers and totals move.
  const totals = () => page.$eval('#pool-cpu table', (t) => t.textContent);
  const before = await totals();
  const replies = await postTasks(12);
  await page.waitForFunction(
    () => /[1-9]\d* busy/.test(document.querySelector('#pool-cpu').textContent),
    null, { timeout: WAIT_MS });
  await page.waitForFunction(
    () => document.querySelector('#pool-cpu .tasks').textContent.includes('browser_load'),
    null, { timeout: WAIT_MS });
  await page.screenshot({ path: screenshot, fullPage: true }); /* busy */
  await Promise.all(replies);
  await page.waitForFunction(
    (b) => document.querySelector('#pool-cpu table').textContent !== b &&
      /12 ok/.test(document.querySelector('#pool-cpu table').textContent),
    before, { timeout: WAIT_MS });

  // The log button: the server wants the token; the page asks for it.
  let asked = 0;
  page.on('dialog', async (d) => { asked++; await d.accept(token); });
  await page.click('#log');
  await page.waitForFunction(
    () => document.querySelector('#state').textContent === 'status written to the log',
    null, { timeout: WAIT_MS });
  if (asked !== 1) fail(`the token was asked ${asked} times`);

  // The server goes away, then comes back on the same address.
  await ask('stop', 'stopped');
  await page.waitForSelector('#banner.on', { timeout: WAIT_MS });
  const banner = await page.textContent('#banner');
  if (!/not answering/.test(banner)) fail('banner: ' + banner);
  await ask('start', 'started');
  await page.waitForFunction(
    () => !document.querySelector('#banner').classList.contains('on') &&
      document.querySelector('#state').textContent.startsWith('live'),
    null, { timeout: WAIT_MS });
  await page.waitForSelector('#pool-db', { timeout: WAIT_MS });
} catch (e) {
  problems.push(String(e && e.stack || e));
} finally {
  await browser.close();
}
if (problems.length) fail(problems.join('\n'));
console.log('dashboard test: ok; screenshot ' + screenshot);
