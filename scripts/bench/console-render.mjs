// Times the console's spend page against a live server: its API (and the request log's and
// the models page's) over HTTP (sequential requests, p50/p99) and the page's time to first render in headless Chromium (navigation
// start until the totals and the cost chart are drawn). scripts/bench/console.sh runs it.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');
const BASE = process.env.HEARTH_URL;
const NAME = process.env.HEARTH_CONSOLE_USER;
const PASSWORD = process.env.HEARTH_CONSOLE_PASSWORD;
const RUNS = Number(process.env.RUNS || 100);
const LOADS = Number(process.env.LOADS || 10);

const login = await fetch(`${BASE}/console/api/login`, {
  method: 'POST', headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ name: NAME, password: PASSWORD }),
});
if (login.status !== 200) throw new Error(`sign-in: ${login.status} ${await login.text()}`);
const cookie = login.headers.get('set-cookie').split(';')[0];

function pct(values, p) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length, Math.max(1, Math.ceil(p * sorted.length))) - 1];
}

console.log('| request | p50 (ms) | p99 (ms) | runs |');
console.log('|---|---|---|---|');
const paths = ['days=365&by=route', 'days=365&by=key', 'days=30&by=key', 'days=7&by=model']
  .map((query) => `/console/api/spend?${query}`)
  // The other pages' reads on the same ledger: the request log's newest page and the models
  // page (its health, percentiles and latency histograms from the newest 5,000 requests).
  .concat(['/console/api/requests?limit=100', '/console/api/models']);
for (const apiPath of paths) {
  const times = [];
  for (let i = 0; i <= RUNS; i += 1) {
    const started = performance.now();
    const r = await fetch(`${BASE}${apiPath}`, { headers: { cookie } });
    await r.arrayBuffer();
    if (r.status !== 200) throw new Error(`${apiPath}: ${r.status}`);
    if (i > 0) times.push(performance.now() - started); // the first warms the caches
  }
  console.log(`| GET ${apiPath} | ${pct(times, 0.5).toFixed(2)} | ${pct(times, 0.99).toFixed(2)} | ${RUNS} |`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const url = new URL(BASE);
const renders = [];
for (let i = 0; i <= LOADS; i += 1) {
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  await context.addCookies([{ name: cookie.split('=')[0], value: cookie.split('=')[1], domain: url.hostname, path: '/console' }]);
  const page = await context.newPage();
  await page.goto(`${BASE}/console#/spend`);
  await page.waitForFunction(() => {
    const total = document.querySelector('#total-requests');
    const chart = document.querySelector('#spend-chart');
    return total && /\d/.test(total.textContent) && chart && chart.querySelectorAll('rect, path').length > 0;
  }, null, { timeout: 60000 });
  const ms = await page.evaluate(() => performance.now());
  if (i > 0) renders.push(ms);
  await context.close();
}
await browser.close();
console.log('');
console.log(`spend page (last 30 days, by route) to first render: median ${pct(renders, 0.5).toFixed(0)} ms, slowest ${Math.max(...renders).toFixed(0)} ms over ${LOADS} loads`);
