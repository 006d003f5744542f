// The console in a real headless Chromium against a live `hearth serve` (scripts/console-e2e.sh
// starts it): sign-in, the support inbox on a handed-over conversation, private notes, roles
// refused by the server, a key made in the console used against the API, the spend page
// showing those requests, and the security checks (markup shown as text, CSRF, sign-in limit).
// A screenshot of every page goes to $HEARTH_SCREENSHOTS.
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

async function shot(page, name) {
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

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
  const csrf = await csrfOf(page);
  const tries = await page.evaluate(async ({ id, csrf }) => {
    const post = async (url, body) => {
      const r = await fetch(url, {
        method: 'POST', headers: { 'content-type': 'application/json', 'x-csrf-token': csrf },
        body: JSON.stringify(body),
      });
      return { status: r.status, code: (await r.json()).error?.code };
    };
    return [
      await post(`/console/api/conversations/${id}/reply`, { text: 'viewer reply' }),
      await post('/console/api/keys', { name: 'viewer-key' }),
    ];
  }, { id: sessionId, csrf });
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
  await shot(page, 'models');

  await page.goto(BASE + '/console#/recs');
  await page.waitForSelector('#recs-versions');
  assert.ok((await page.locator('#recs-versions').textContent()).includes('1'));
  await page.waitForSelector('#recs-eval-chart');
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
