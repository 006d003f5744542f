// The console in a real headless Chromium against a live `hearth serve` (scripts/console-e2e.sh
// starts it): sign-in, the support inbox on a handed-over conversation, private notes, roles
// refused by the server, a key made in the console used against the API, the spend page
// showing those requests, a model pulled from a fake Hugging Face Hub ($HEARTH_FAKE_HUB_URL,
// tests/console/fake-hub.mjs) with its progress live, and the security checks (markup shown as
// text, CSRF, sign-in limit). A screenshot of every page goes to $HEARTH_SCREENSHOTS.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');

const BASE = process.env.HEARTH_URL;
const SHOTS = process.env.HEARTH_SCREENSHOTS;
const PASSWORD = process.env.HEARTH_CONSOLE_PASSWORD;
const HUB = process.env.HEARTH_FAKE_HUB_URL;
assert.ok(BASE && SHOTS && PASSWORD, 'HEARTH_URL, HEARTH_SCREENSHOTS and HEARTH_CONSOLE_PASSWORD are set');
fs.mkdirSync(SHOTS, { recursive: true });

let browser;

before(async () => {
  // Playwright gives the browser a fresh profile directory of its own (--user-data-dir).
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
});

after(async () => {
  await browser?.close();
});

/** The customer's side: the company's backend calling the public API. */
async function api(method, url, body, headers = {}) {
  const response = await fetch(BASE + url, {
    method,
    headers: { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: response.status, json, text, headers: response.headers };
}

/** A fresh browser (own cookies) signed in as `name`, with the page errors it logs. */
async function signedIn(name, viewport = { width: 1440, height: 900 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  // A refused request is logged by the browser as a failed load: the tests make some on
  // purpose (and the page asks who is signed in before sign-in); anything else is a fault.
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) errors.push(m.text());
  });
  await page.goto(BASE + '/console');
  await page.fill('#login-name', name);
  await page.fill('#login-password', PASSWORD);
  await page.click('#login-submit');
  await page.waitForSelector('#logout');
  return { context, page, errors };
}

/** The session's CSRF token, as the page reads it. */
async function csrfOf(page) {
  return page.evaluate(async () => (await (await fetch('/console/api/me')).json()).csrf);
}

/** POSTs each [url, body] from the page with its own cookie and CSRF token; their statuses
 * and error codes. */
async function postsFromPage(page, requests) {
  const csrf = await csrfOf(page);
  return page.evaluate(async ({ requests, csrf }) => {
    const answers = [];
    for (const [url, body] of requests) {
      const r = await fetch(url, {
        method: 'POST', headers: { 'content-type': 'application/json', 'x-csrf-token': csrf },
        body: JSON.stringify(body),
      });
      answers.push({ status: r.status, code: (await r.json()).error?.code });
    }
    return answers;
  }, { requests, csrf });
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

/** GET a console API path with the page's cookie, as JSON. */
async function consoleGet(page, url) {
  return page.evaluate(async (url) => (await fetch(url)).json(), url);
}

/** The page's next POST to `pathname`: the answer it got. */
function nextPost(page, pathname) {
  return page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname === pathname);
}

/** Every deployment (of a route, or a model asked for by name) that served requests in the window. */
function deploymentsServed(view) {
  const served = [];
  for (const route of view.routes || []) {
    for (const d of route.deployments || []) {
      if (d.recent?.requests > 0) served.push({ name: d.deployment, recent: d.recent });
    }
  }
  for (const [name, recent] of view.implicit || []) {
    if (recent?.requests > 0) served.push({ name, recent });
  }
  return served;
}

/** Two recommender candidates' parameters are the same (as the page compares them). */
function sameParams(a, b) {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((k) => (typeof a[k] === 'number' && typeof b[k] === 'number'
    ? Math.abs(a[k] - b[k]) < 1e-9 : JSON.stringify(a[k]) === JSON.stringify(b[k])));
}

const sum = (values) => values.reduce((a, b) => a + b, 0);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const HOSTILE = 'I want a human <script>window.__xss=1</script><img src=x onerror="window.__xss=2"> <b>now</b>';
let sessionId;

test('a support agent takes a handed-over conversation, replies and keeps a note private', async () => {
  const started = await api('POST', '/v1/support/sessions');
  assert.equal(started.status, 201, started.text);
  sessionId = started.json.id;
  const turn = await api('POST', `/v1/support/sessions/${sessionId}/messages`, { content: HOSTILE, stream: false });
  assert.equal(turn.json.status, 'handoff', turn.text);

  const { context, page, errors } = await signedIn('sam');
  await page.goto(BASE + '/console#/inbox');
  const item = page.locator(`[data-testid="conversation-item"][data-id="${sessionId}"]`);
  await item.waitFor();
  await shot(page, 'inbox');
  await item.click();
  await page.waitForSelector('#transcript [data-kind="customer"]');

  // The customer's markup is shown as text: nothing of it runs or becomes an element.
  const customerText = await page.locator('#transcript [data-kind="customer"]').first().textContent();
  assert.ok(customerText.includes('<script>window.__xss=1</script>'), customerText);
  assert.ok(customerText.includes('<b>now</b>'), customerText);
  assert.equal(await page.evaluate(() => window.__xss), undefined);
  assert.equal(await page.locator('#transcript img, #transcript script, #transcript b').count(), 0);
  assert.equal(await page.locator('#handoff-summary img, #handoff-summary script').count(), 0);

  await page.click('#take');
  await page.waitForFunction(() => document.querySelector('#conversation-assignee')?.textContent.includes('sam'));
  await page.fill('#reply-text', 'Hello, this is Sam from support.');
  await page.click('#reply-submit');
  await page.waitForSelector('#transcript [data-kind="human"]');
  await page.fill('#note-text', 'PRIVATE: refund pre-approved by team lead');
  await page.click('#note-submit');
  await page.waitForSelector('#notes [data-testid="note"]');
  assert.ok((await page.locator('#notes').textContent()).includes('refund pre-approved'));

  // The customer's session API shows the human reply and never the note.
  const seen = await api('GET', `/v1/support/sessions/${sessionId}`);
  const entries = seen.json.conversation.entries;
  const human = entries.filter((e) => e.kind === 'human');
  assert.equal(human.length, 1, seen.text);
  assert.equal(human[0].text, 'Hello, this is Sam from support.');
  assert.ok(!seen.text.includes('refund pre-approved'), seen.text);

  // A new customer message appears live, without reloading.
  await api('POST', `/v1/support/sessions/${sessionId}/messages`, { content: 'Thanks, my order is W123', stream: false });
  await page.waitForFunction(
    () => document.querySelector('#transcript')?.textContent.includes('my order is W123'),
    null, { timeout: 15000 });
  await shot(page, 'conversation');

  // A state change without the CSRF token is refused by the server.
  const refused = await page.evaluate(async (id) => {
    const r = await fetch(`/console/api/conversations/${id}/reply`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ text: 'forged' }),
    });
    return { status: r.status, body: await r.json() };
  }, sessionId);
  assert.equal(refused.status, 403);
  assert.equal(refused.body.error.code, 'csrf_rejected');

  // On a phone-sized screen the conversation is readable too.
  await page.setViewportSize({ width: 390, height: 844 });
  await shot(page, 'conversation-phone');
  assert.deepEqual(errors, []);
  await context.close();
});

test('a viewer cannot reply or create a key: the server refuses, not only the page', async () => {
  const { context, page, errors } = await signedIn('vic');
  assert.equal(await page.locator('#nav-inbox').count(), 0);
  assert.equal(await page.locator('#nav-keys').count(), 0);
  const tries = await postsFromPage(page, [
    [`/console/api/conversations/${sessionId}/reply`, { text: 'viewer reply' }],
    ['/console/api/keys', { name: 'viewer-key' }],
  ]);
  for (const t of tries) {
    assert.equal(t.status, 403);
    assert.equal(t.code, 'role_forbidden');
  }
  const seen = await api('GET', `/v1/support/sessions/${sessionId}`);
  assert.ok(!seen.text.includes('viewer reply'));
  assert.deepEqual(errors, []);
  await context.close();
});

test('a cookie of one account acts only as that account', async () => {
  const sam = await signedIn('sam');
  const tom = await signedIn('tom');
  // Tom's CSRF token with Sam's cookie: refused.
  const tomsToken = await csrfOf(tom.page);
  const crossed = await sam.page.evaluate(async ({ id, token }) => {
    const r = await fetch(`/console/api/conversations/${id}/notes`, {
      method: 'POST', headers: { 'content-type': 'application/json', 'x-csrf-token': token },
      body: JSON.stringify({ text: 'crossed' }),
    });
    return r.status;
  }, { id: sessionId, token: tomsToken });
  assert.equal(crossed, 403);
  // Tom's own note is Tom's, whatever the page could send.
  const note = await tom.page.evaluate(async ({ id, token }) => {
    const r = await fetch(`/console/api/conversations/${id}/notes`, {
      method: 'POST', headers: { 'content-type': 'application/json', 'x-csrf-token': token },
      body: JSON.stringify({ text: 'Tom was here' }),
    });
    return r.json();
  }, { id: sessionId, token: tomsToken });
  assert.equal(note.notes.at(-1).author, 'tom');
  await sam.context.close();
  await tom.context.close();
});

test('a key created in the console works against the API, and the spend page shows its requests', async () => {
  const { context, page, errors } = await signedIn('ana');
  await page.goto(BASE + '/console#/keys');
  await page.waitForSelector('#new-key');
  await page.fill('#key-name', 'console-e2e');
  await page.fill('#key-budget', '2');
  await page.click('#key-create');
  await page.waitForSelector('#new-key-secret-value');
  const secret = (await page.locator('#new-key-secret-value').textContent()).trim();
  assert.match(secret, /^hk-/);
  await shot(page, 'keys');

  const chat = await api('POST', '/v1/chat/completions', {
    model: 'smollm2', max_tokens: 8, messages: [{ role: 'user', content: 'Say hello' }],
  }, { authorization: `Bearer ${secret}` });
  assert.equal(chat.status, 200, chat.text);
  const outOfScope = await api('GET', '/v1/usage', undefined, { authorization: `Bearer ${secret}` });
  assert.equal(outOfScope.status, 403);

  await page.goto(BASE + '/console#/spend');
  await page.waitForSelector('#request-log');
  await page.waitForFunction(() => document.querySelector('#request-log')?.textContent.includes('console-e2e'));
  const log = await page.locator('#request-log').textContent();
  assert.ok(log.includes('smollm2'), log);
  const budgets = await page.locator('#budgets').textContent();
  assert.ok(budgets.includes('console-e2e'), budgets);
  await page.selectOption('#spend-by', 'key');
  await page.waitForFunction(() => document.querySelector('#spend-table')?.textContent.includes('console-e2e'));
  await page.waitForSelector('#spend-chart');
  await shot(page, 'spend');
  await page.setViewportSize({ width: 390, height: 844 });
  await shot(page, 'spend-phone');
  assert.deepEqual(errors, []);
  await context.close();
});

test('models, recommendations and the knowledge base: what hearth runs, recommends and would cite', async () => {
  const { context, page, errors } = await signedIn('ana');
  await page.goto(BASE + '/console#/models');
  await page.waitForSelector('#models-table');
  const models = await page.locator('#models-table').textContent();
  assert.ok(models.includes('smollm2') && models.includes('minilm'), models);
  // The playground streams an answer from a local model.
  await page.selectOption('#playground-model', 'smollm2');
  await page.fill('#playground-max-tokens', '12');
  await page.fill('#playground-input', 'Name a colour.');
  await page.click('#playground-send');
  await page.waitForFunction(() => {
    const t = document.querySelector('#playground-transcript');
    return t && t.textContent.includes('Name a colour.') && !document.querySelector('#playground-stop:not([disabled])')
      && t.textContent.replace('Name a colour.', '').trim().length > 0;
  }, null, { timeout: 60000 });

  // Every deployment that served requests in the window shows how long they took: a bar per
  // duration bucket (the empty ones too), adding up to its request count.
  let served = [];
  let shown = {};
  for (let attempt = 0; attempt < 20; attempt += 1) {
    await page.click('#models-refresh');
    await page.waitForFunction(() => !document.querySelector('#models-refresh.is-busy'));
    const view = await consoleGet(page, '/console/api/models');
    served = deploymentsServed(view);
    shown = await page.evaluate(() => Object.fromEntries(Array.from(document.querySelectorAll('svg.latency-histogram'),
      (svg) => [svg.dataset.deployment, Array.from(svg.querySelectorAll('rect.bar'), (bar) => Number(bar.dataset.count))])));
    if (served.some((d) => d.name.includes('smollm2')) && served.every((d) => shown[d.name] && sum(shown[d.name]) === d.recent.requests)) break;
    await sleep(500);
  }
  assert.ok(served.some((d) => d.name.includes('smollm2')), JSON.stringify(served));
  for (const d of served) {
    assert.ok(shown[d.name], `no latency histogram for ${d.name}: ${JSON.stringify(Object.keys(shown))}`);
    assert.equal(shown[d.name].length, d.recent.latency_histogram.length, d.name);
    assert.equal(sum(shown[d.name]), d.recent.requests, d.name);
  }
  await shot(page, 'models');
  await page.setViewportSize({ width: 390, height: 844 });
  await shot(page, 'models-phone');
  await page.setViewportSize({ width: 1440, height: 900 });

  await page.goto(BASE + '/console#/recs');
  await page.waitForSelector('#recs-versions');
  assert.ok((await page.locator('#recs-versions').textContent()).includes('1'));
  await page.waitForSelector('#recs-eval-chart');
  // The current version's candidates with every metric on the validation split, and each model
  // kind's best NDCG drawn as `hearth recs eval --plot` draws it.
  const versions = (await consoleGet(page, '/console/api/recs/versions')).versions;
  const report = versions.find((v) => v.current).report;
  assert.ok(Array.isArray(report.validation) && report.validation.length > 0, JSON.stringify(report).slice(0, 500));
  await page.waitForSelector('#recs-metrics');
  assert.equal(await page.locator('#recs-metrics tbody tr[data-model]').count(), report.validation.length);
  const chosen = report.validation.filter((v) => sameParams(v.params, report.chosen)).sort((a, b) => b.ndcg - a.ndcg)[0];
  assert.ok(chosen, 'the published model is among the validation entries');
  assert.equal(await page.locator('#recs-metrics tr.chosen').count(), 1);
  assert.equal(await page.locator('#recs-metrics tr.chosen').getAttribute('data-model'), chosen.params.model);
  assert.equal((await page.locator('#recs-metrics tr.chosen td.ndcg').textContent()).trim(), chosen.ndcg.toFixed(4));
  assert.equal((await page.locator('#recs-metrics tr.chosen td.coverage').textContent()).trim(), `${(chosen.coverage * 100).toFixed(1)} %`);
  const kinds = new Set(report.candidates.map(([params]) => params.model));
  const bars = page.locator('svg.recs-eval-plot rect.bar');
  assert.equal(await bars.count(), kinds.size);
  const best = new Map();
  for (const v of report.validation) best.set(v.params.model, Math.max(best.get(v.params.model) ?? -Infinity, v.ndcg));
  assert.deepEqual(await bars.evaluateAll((rects) => rects.map((r) => r.getAttribute('data-value'))),
    Array.from(best.values()).sort((a, b) => b - a).map((v) => v.toFixed(4)));
  await shot(page, 'recs');
  await page.goto(BASE + '/console#/recs/user/1');
  await page.waitForSelector('#recs-history li, #recs-history tr');
  await page.waitForSelector('#recs-list li, #recs-list tr');
  const recommended = await page.locator('#recs-list').textContent();
  const api1 = await page.evaluate(async () => (await (await fetch('/console/api/v1/recommendations/1?n=10')).json()));
  assert.ok(recommended.includes(api1.data[0].title), recommended);
  await shot(page, 'recs-shopper');

  await page.goto(BASE + '/console#/knowledge');
  await page.waitForSelector('#kb-documents');
  assert.ok((await page.locator('#kb-documents').textContent()).includes('policy.md'));
  await page.fill('#kb-search', 'How do I return a delivered order?');
  await page.click('#kb-search-go');
  await page.waitForFunction(() => document.querySelector('#kb-results')?.textContent.includes('kb:'));
  const cited = await page.evaluate(async () =>
    (await (await fetch('/console/api/kb/search?q=' + encodeURIComponent('How do I return a delivered order?'))).json()).hits);
  assert.ok(cited.length > 0);
  assert.ok((await page.locator('#kb-results').textContent()).includes(cited[0].title));
  await shot(page, 'knowledge');
  assert.deepEqual(errors, []);
  await context.close();
});

let pulledId;

test('an admin pulls a model from the console and watches it arrive', { timeout: 90000 }, async () => {
  assert.ok(HUB, 'HEARTH_FAKE_HUB_URL is set (scripts/console-e2e.sh starts the fake Hub)');
  const listing = await (await fetch(`${HUB}/api/models/hearth-test/tiny-GGUF/revision/main?blobs=true`)).json();
  const gguf = listing.siblings.find((f) => f.rfilename.endsWith('.gguf'));
  const { context, page, errors } = await signedIn('ana');
  await page.goto(BASE + '/console#/models');
  await page.waitForSelector('#pull-form');
  await page.waitForSelector('#pulls-live[data-state="on"]');
  const status = await consoleGet(page, '/console/api/models/pulls');
  assert.equal(status.can_pull, true);
  assert.equal(status.offline, false);
  assert.equal(status.endpoint.replace(/\/+$/, ''), HUB.replace(/\/+$/, ''));

  // A spec that is not ORG/REPO: the server names the field and the page says why, by the form.
  await page.fill('#pull-form input[name="model"]', 'not a repo');
  let answered = nextPost(page, '/console/api/models/pulls');
  await page.click('#pull-submit');
  const refused = await answered;
  assert.equal(refused.status(), 400);
  const refusal = await refused.json();
  assert.equal(refusal.error.code, 'invalid_request');
  assert.equal(refusal.error.param, 'model');
  await page.waitForSelector('#pull-error:not([hidden])');
  assert.equal(await page.getAttribute('#pull-error', 'data-param'), 'model');
  assert.ok((await page.textContent('#pull-error')).includes(refusal.error.message));

  // The pull: its progress moves in the page while the bytes arrive.
  await page.fill('#pull-form input[name="model"]', 'hearth-test/tiny-GGUF:Q4_1');
  answered = nextPost(page, '/console/api/models/pulls');
  await page.click('#pull-submit');
  const accepted = await answered;
  assert.equal(accepted.status(), 202, await accepted.text());
  const { pull } = await accepted.json();
  pulledId = pull.id;
  const item = `#pulls .pull[data-id="${pull.id}"]`;
  await page.waitForSelector(item);
  assert.ok(await page.locator('#pull-error').isHidden());
  await page.waitForFunction((sel) => {
    const li = document.querySelector(sel);
    const bar = li?.querySelector('progress');
    return !!bar && li.dataset.state === 'running' && bar.hasAttribute('value') && bar.value > 0 && bar.value < bar.max;
  }, item, { timeout: 30000 });
  // The same model again while it is on its way: refused.
  const [again] = await postsFromPage(page, [['/console/api/models/pulls', { model: 'hearth-test/tiny-GGUF:Q4_1' }]]);
  assert.deepEqual(again, { status: 409, code: 'pull_in_progress' });
  await shot(page, 'models-pull');

  // Done: every byte arrived, and the registry lists the model under its Hub name, the name
  // the pull says to serve it as; the models table shows it without a reload.
  await page.waitForSelector(`${item}[data-state="done"]`, { timeout: 60000 });
  const done = (await consoleGet(page, '/console/api/models/pulls')).pulls.find((p) => p.id === pull.id);
  assert.equal(done.state, 'done');
  assert.equal(done.error, null);
  assert.equal(done.bytes_total, gguf.size);
  assert.equal(done.bytes_done, gguf.size);
  assert.equal(done.commit, listing.sha);
  assert.ok(done.files.some((f) => f.file === gguf.rfilename && f.done), JSON.stringify(done.files));
  assert.ok(String(done.path).endsWith(gguf.rfilename), done.path);
  const models = (await consoleGet(page, '/console/api/models')).models;
  const pulled = models.filter((m) => m.source?.type === 'hub_cache' && m.source.repo === 'hearth-test/tiny-GGUF');
  assert.equal(pulled.length, 1, JSON.stringify(models.map((m) => [m.name, m.source])));
  assert.equal(pulled[0].name, `hearth-test/tiny-GGUF:${gguf.rfilename.replace(/\.gguf$/, '')}`);
  assert.equal(done.name, pulled[0].name);
  assert.ok((await page.locator(`${item} .pull-served`).textContent()).includes(done.name));
  await page.waitForFunction((name) => Array.from(document.querySelectorAll('#models-table tbody tr'), (tr) => tr.dataset.name).includes(name),
    done.name, { timeout: 15000 });

  // A repo the Hub does not have: the pull fails and the page says why.
  await page.fill('#pull-form input[name="model"]', 'hearth-test/missing-GGUF');
  answered = nextPost(page, '/console/api/models/pulls');
  await page.click('#pull-submit');
  const started = await answered;
  assert.equal(started.status(), 202, await started.text());
  const missing = (await started.json()).pull;
  const missingItem = `#pulls .pull[data-id="${missing.id}"]`;
  await page.waitForSelector(`${missingItem}[data-state="failed"]`, { timeout: 20000 });
  const failed = (await consoleGet(page, '/console/api/models/pulls')).pulls.find((p) => p.id === missing.id);
  assert.equal(failed.error.code, 'hub_not_found');
  assert.ok((await page.locator(`${missingItem} .pull-error`).textContent()).includes(failed.error.message));
  assert.ok(await page.locator(`${missingItem} .pull-cancel`).isHidden());
  assert.deepEqual(errors, []);
  await context.close();
});

test('a viewer sees the pulls but cannot start or cancel one: the server refuses, not only the page', async () => {
  const { context, page, errors } = await signedIn('vic');
  await page.goto(BASE + '/console#/models');
  await page.waitForSelector(`#pulls .pull[data-id="${pulledId}"][data-state="done"]`);
  assert.equal(await page.locator('#pull-form').count(), 0);
  assert.equal(await page.locator('#pulls .pull-cancel').count(), 0);
  assert.equal((await consoleGet(page, '/console/api/models/pulls')).can_pull, false);
  const tries = await postsFromPage(page, [
    ['/console/api/models/pulls', { model: 'hearth-test/tiny-GGUF:Q4_1' }],
    [`/console/api/models/pulls/${encodeURIComponent(pulledId)}/cancel`, {}],
  ]);
  for (const t of tries) assert.deepEqual(t, { status: 403, code: 'role_forbidden' });
  assert.deepEqual(errors, []);
  await context.close();
});

test('sign-in attempts beyond the limit get 429', async () => {
  let last;
  for (let i = 0; i < 6; i += 1) {
    last = await api('POST', '/console/api/login', { name: 'ghost', password: `guess-${i}-wrong` });
    if (i < 5) assert.equal(last.status, 401, last.text);
  }
  assert.equal(last.status, 429, last.text);
  assert.equal(last.json.error.code, 'too_many_login_attempts');
  assert.ok(Number(last.headers.get('retry-after')) > 0);
});

test('signing out ends the session on the server', async () => {
  const { context, page } = await signedIn('sam');
  await page.click('#logout');
  await page.waitForSelector('#login-name');
  const status = await page.evaluate(async () => (await fetch('/console/api/me')).status);
  assert.equal(status, 401);
  await context.close();
});
