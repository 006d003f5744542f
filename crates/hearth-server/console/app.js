/* hearth console: inbox, spend, models, recommendations, knowledge and keys, built from DOM nodes only (no HTML parsing). */
'use strict';

(function () {
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const API = '/console/api';
  const LOGIN_PATH = API + '/login';

  const ROLE_PAGES = {
    admin: ['inbox', 'spend', 'models', 'recs', 'knowledge', 'keys'],
    support: ['inbox', 'spend', 'models', 'recs', 'knowledge'],
    viewer: ['spend', 'models', 'recs', 'knowledge'],
  };
  const PAGE_TITLES = {
    inbox: 'Inbox', spend: 'Spend', models: 'Models', recs: 'Recommendations', knowledge: 'Knowledge', keys: 'Keys',
  };
  const NAV_SHORT = { recs: 'Recs', knowledge: 'KB' };
  const PLAYGROUND_ROLES = ['admin', 'support'];
  const VIEWS = ['waiting', 'mine', 'all'];
  const VIEW_LABELS = { waiting: 'Waiting', mine: 'Mine', all: 'All' };
  const VIEW_EMPTY = {
    waiting: 'Nobody is waiting for a person right now.',
    mine: 'No open conversations are assigned to you.',
    all: 'No conversations yet.',
  };
  const STATUS_LABELS = { active: 'Agent', handoff: 'Handed over', resolved: 'Resolved' };
  const SPEAKERS = { customer: 'Customer', agent: 'Agent', human: 'Support' };
  const GROUP_LABELS = { route: 'Route', key: 'API key', model: 'Model', deployment: 'Deployment' };
  const SCOPES = [
    ['inference', 'Inference', 'chat, completions, embeddings'],
    ['recs:read', 'Recommendations: read', 'ask for recommendations'],
    ['recs:write', 'Recommendations: write', 'send events and items'],
    ['support', 'Support', 'the support agent'],
    ['usage', 'Usage', 'read spend and usage'],
    ['admin', 'Admin', 'everything, keys included'],
  ];
  const PALETTE = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#edc948', '#b07aa1', '#ff9da7'];
  const OTHER_COLOUR = '#9aa3ad';
  const MAX_GROUPS = 8;

  const state = {
    me: null,
    shell: null,
    page: null,
    pageName: null,
    loginShown: false,
  };

  /* ---------- preferences (UI only) ---------- */

  const PREFS_KEY = 'hearth.console.prefs';
  function loadPrefs() {
    try {
      const raw = window.localStorage.getItem(PREFS_KEY);
      const value = raw ? JSON.parse(raw) : {};
      return value && typeof value === 'object' ? value : {};
    } catch (_) {
      return {};
    }
  }
  const prefs = loadPrefs();
  function savePref(key, value) {
    prefs[key] = value;
    try {
      window.localStorage.setItem(PREFS_KEY, JSON.stringify(prefs));
    } catch (_) {
      /* storage may be unavailable: preferences then last for this page only */
    }
  }

  /* ---------- DOM helpers ---------- */

  const PROPS = new Set(['value', 'checked', 'disabled', 'selected', 'multiple', 'readOnly', 'required', 'hidden', 'open']);
  const URL_ATTRS = new Set(['href', 'src', 'action', 'formaction', 'xlink:href', 'srcdoc']);
  /* a fixed page name, then optional path parts made by encodeURIComponent */
  const IN_PAGE_LINK = /^#\/[a-z]*(?:\/[A-Za-z0-9%\-_.!~*'()]+)*$/;

  function setAttrs(el, attrs, isSvg) {
    if (!attrs) return;
    for (const key of Object.keys(attrs)) {
      const value = attrs[key];
      if (value === null || value === undefined || value === false) continue;
      if (/^on/i.test(key)) throw new Error('event handler attributes are not allowed: ' + key);
      if (key === 'style') throw new Error('inline styles are not allowed');
      if (URL_ATTRS.has(key) && !(typeof value === 'string' && IN_PAGE_LINK.test(value))) {
        throw new Error('only fixed in-page links are allowed');
      }
      if (key === 'class') {
        const cls = Array.isArray(value) ? value.filter(Boolean).join(' ') : String(value);
        if (cls) el.setAttribute('class', cls);
      } else if (!isSvg && PROPS.has(key)) {
        el[key] = value;
        if (key === 'checked') el.defaultChecked = !!value;
        if (key === 'selected') el.defaultSelected = !!value;
      } else {
        el.setAttribute(key, value === true ? '' : String(value));
      }
    }
  }

  function add(el, children) {
    for (const child of children) {
      if (child === null || child === undefined || child === false || child === true) continue;
      if (Array.isArray(child)) add(el, child);
      else if (child instanceof Node) el.appendChild(child);
      else el.appendChild(document.createTextNode(String(child)));
    }
    return el;
  }

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    setAttrs(el, attrs, false);
    return add(el, children);
  }

  function s(tag, attrs, ...children) {
    const el = document.createElementNS(SVG_NS, tag);
    setAttrs(el, attrs, true);
    return add(el, children);
  }

  function fill(el, ...children) {
    el.replaceChildren();
    return add(el, children);
  }

  function on(el, type, fn) {
    el.addEventListener(type, fn);
    return el;
  }

  function button(attrs, label, fn) {
    const el = h('button', Object.assign({ type: 'button', class: 'btn' }, attrs), label);
    if (fn) el.addEventListener('click', fn);
    return el;
  }

  function loading(text) {
    return h('div', { class: 'loading', 'data-testid': 'loading', role: 'status' },
      h('span', { class: 'spinner', 'aria-hidden': 'true' }), text || 'Loading…');
  }

  function emptyState(text) {
    return h('div', { class: 'empty' }, text);
  }

  function errorState(text, retry) {
    return h('div', { class: 'empty empty-error' },
      h('p', null, text),
      retry ? button({ class: 'btn btn-sm' }, 'Try again', retry) : null);
  }

  const ICONS = {
    flame: ['M12 2.5c.6 3 3 4.6 4.3 7 .8 1.4 1.2 2.8 1.2 4.2A5.5 5.5 0 0 1 12 19.5a5.5 5.5 0 0 1-5.5-5.8c0-2 1-3.8 2.3-5.1.1 1.7.9 3 2.1 3.6.1-3.6-.4-6.6 1.1-9.7z'],
    inbox: ['M3 13h5l1.5 3h5l1.5-3h5', 'M5.5 5h13L21 13v6H3v-6z'],
    spend: ['M4 20V11', 'M10 20V5', 'M16 20v-6', 'M21 20H3'],
    keys: ['M14.5 9.5 21 3', 'M18 6l2.5 2.5', 'M15.5 8.5 18 11', 'M10.5 13.5a4 4 0 1 1-5.6 5.6 4 4 0 0 1 5.6-5.6z'],
    models: ['M7 7h10v10H7z', 'M10 10h4v4h-4z', 'M10 3v4', 'M14 3v4', 'M10 17v4', 'M14 17v4', 'M3 10h4', 'M3 14h4', 'M17 10h4', 'M17 14h4'],
    recs: ['M12 3.5l2.6 5.3 5.8.8-4.2 4.1 1 5.8L12 16.8l-5.2 2.7 1-5.8-4.2-4.1 5.8-.8z'],
    knowledge: ['M6.5 3H20v18H6.5A2.5 2.5 0 0 1 4 18.5v-13A2.5 2.5 0 0 1 6.5 3z', 'M4 18.5A2.5 2.5 0 0 1 6.5 16H20', 'M8.5 7.5h7', 'M8.5 11h5'],
  };

  function icon(name, cls) {
    return s('svg', { class: cls || 'icon', viewBox: '0 0 24 24', 'aria-hidden': 'true', focusable: 'false' },
      (ICONS[name] || []).map((d) => s('path', { d })));
  }

  /* ---------- formatting ---------- */

  function num(n) {
    if (n === null || n === undefined || !Number.isFinite(Number(n))) return '—';
    return Number(n).toLocaleString();
  }

  function usd(x) {
    if (x === null || x === undefined || !Number.isFinite(Number(x))) return '—';
    const v = Number(x);
    const a = Math.abs(v);
    let text;
    if (a === 0) {
      text = '0.00';
    } else if (a >= 1) {
      text = a.toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
    } else {
      const decimals = Math.min(20, Math.max(2, 3 - Math.floor(Math.log10(a))));
      text = a.toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: decimals });
    }
    return (v < 0 ? '−$' : '$') + text;
  }

  function usdAxis(v) {
    if (v === 0) return '$0';
    if (Math.abs(v) >= 1000) return '$' + (v / 1000).toLocaleString(undefined, { maximumFractionDigits: 1 }) + 'k';
    return usd(v);
  }

  function percent(p) {
    if (p === null || p === undefined || !Number.isFinite(Number(p))) return '—';
    return Number(p).toLocaleString(undefined, { maximumFractionDigits: 1 }) + '%';
  }

  function duration(ms) {
    if (ms === null || ms === undefined || !Number.isFinite(Number(ms))) return '—';
    const v = Number(ms);
    if (v < 1000) return Math.round(v).toLocaleString() + ' ms';
    return (v / 1000).toLocaleString(undefined, { maximumFractionDigits: 2 }) + ' s';
  }

  function toDate(ts) {
    const n = Number(ts);
    return Number.isFinite(n) ? new Date(n * 1000) : null;
  }

  function dateTime(ts) {
    const d = toDate(ts);
    return d ? d.toLocaleString() : '—';
  }

  function dateOnly(ts) {
    const d = toDate(ts);
    return d ? d.toLocaleDateString() : '—';
  }

  function ago(ts) {
    const d = toDate(ts);
    if (!d) return '—';
    const diff = (Date.now() - d.getTime()) / 1000;
    if (diff < 45) return 'just now';
    if (diff < 90) return '1 min ago';
    if (diff < 3600) return Math.round(diff / 60) + ' min ago';
    if (diff < 86400) return Math.round(diff / 3600) + ' h ago';
    if (diff < 7 * 86400) return Math.round(diff / 86400) + ' d ago';
    return d.toLocaleDateString();
  }

  function agoEl(ts, cls) {
    return h('time', { class: ['ago', cls], 'data-ts': String(ts), title: dateTime(ts), datetime: toDate(ts) ? toDate(ts).toISOString() : null }, ago(ts));
  }

  function refreshAgo() {
    for (const el of document.querySelectorAll('time.ago[data-ts]')) {
      el.textContent = ago(el.getAttribute('data-ts'));
    }
  }

  function truncate(text, max) {
    const t = String(text === null || text === undefined ? '' : text).replace(/\s+/g, ' ').trim();
    return t.length > max ? t.slice(0, max - 1).trimEnd() + '…' : t;
  }

  function plural(n, word) {
    return num(n) + ' ' + word + (Number(n) === 1 ? '' : 's');
  }

  function pretty(value) {
    if (value === undefined) return 'null';
    if (typeof value === 'string') return value;
    try {
      return JSON.stringify(value, null, 2);
    } catch (_) {
      return String(value);
    }
  }

  function sentence(text) {
    const t = String(text || '').trim();
    return !t || /[.!?]$/.test(t) ? t : t + '.';
  }

  function statusBadge(status, id) {
    const known = Object.prototype.hasOwnProperty.call(STATUS_LABELS, status);
    return h('span', { id: id || null, class: ['badge', 'badge-' + (known ? status : 'unknown')], 'data-status': String(status) },
      known ? STATUS_LABELS[status] : String(status));
  }

  /* ---------- API ---------- */

  class ApiError extends Error {
    constructor(message, status, info) {
      super(message);
      this.name = 'ApiError';
      this.status = status;
      this.code = info.code || null;
      this.type = info.type || null;
      this.param = info.param || null;
      this.retryAfter = info.retryAfter === undefined ? null : info.retryAfter;
    }
  }

  function errorFrom(response, data, path) {
    const info = data && data.error && typeof data.error === 'object' ? data.error : {};
    let message = typeof info.message === 'string' && info.message ? info.message : '';
    let retryAfter = null;
    if (response.status === 429) {
      const header = response.headers.get('Retry-After');
      const seconds = header === null ? NaN : parseInt(header, 10);
      retryAfter = Number.isFinite(seconds) ? seconds : null;
      message = retryAfter === null ? 'Too many attempts: try again later' : 'Too many attempts: try again in ' + retryAfter + ' s';
    }
    if (!message) message = 'The server answered ' + response.status + (response.statusText ? ' ' + response.statusText : '') + '.';
    const error = new ApiError(message, response.status, {
      code: info.code, type: info.type, param: info.param, retryAfter,
    });
    if (response.status === 401 && path !== LOGIN_PATH) unauthorized();
    return error;
  }

  function parseJson(text) {
    if (!text) return null;
    try {
      return JSON.parse(text);
    } catch (_) {
      return null;
    }
  }
  /** A server-sent event stream that tells its state to `o.setLive` ('connecting', 'on',
   * 'off'), hands each named event to `o.events[name]`, and after the server closes it waits
   * 5 s, runs `o.recover()` (a 401 there ends it: the session is gone) and calls
   * `o.reconnect()` while `o.isAlive()`. Answers a handle whose close() stops all of it. */
  function liveStream(url, o) {
    let es = null;
    let retry = null;
    let closed = false;
    const handle = {
      close() {
        closed = true;
        clearTimeout(retry);
        if (es) es.close();
      },
    };
    if (typeof EventSource !== 'function') {
      o.setLive('off');
      return handle;
    }
    try {
      es = new EventSource(url);
    } catch (_) {
      o.setLive('off');
      return handle;
    }
    o.setLive('connecting');
    es.addEventListener('open', () => {
      if (closed) return;
      o.setLive('on');
      if (o.onOpen) o.onOpen();
    });
    for (const [name, handler] of Object.entries(o.events)) {
      es.addEventListener(name, (event) => {
        if (!closed) handler(event);
      });
    }
    es.addEventListener('error', () => {
      if (closed) return;
      if (es.readyState !== EventSource.CLOSED) {
        o.setLive('connecting');
        return;
      }
      es.close();
      o.setLive('off');
      retry = setTimeout(async () => {
        if (closed || !o.isAlive()) return;
        try {
          await o.recover();
        } catch (e) {
          if (e.status === 401) return;
        }
        if (!closed && o.isAlive()) o.reconnect();
      }, 5000);
    });
    return handle;
  }


  function requestHeaders(method, path, accept) {
    const headers = { Accept: accept || 'application/json' };
    if (method !== 'GET' && method !== 'HEAD') {
      headers['Content-Type'] = 'application/json';
      if (path !== LOGIN_PATH && state.me && state.me.csrf) headers['X-CSRF-Token'] = state.me.csrf;
    }
    return headers;
  }

  function unreachable(e) {
    return new ApiError('Cannot reach the server (' + (e && e.message ? e.message : 'network error') + ').', 0, {});
  }

  async function api(method, path, body) {
    const options = { method, credentials: 'same-origin', headers: requestHeaders(method, path) };
    if (method !== 'GET' && method !== 'HEAD') options.body = JSON.stringify(body === undefined ? {} : body);
    let response;
    try {
      response = await fetch(path, options);
    } catch (e) {
      throw unreachable(e);
    }
    const data = response.status === 204 ? null : parseJson(await response.text());
    if (!response.ok) throw errorFrom(response, data, path);
    return data;
  }

  function isAbort(e) {
    return !!e && (e.name === 'AbortError' || e.code === 20);
  }

  /* POST a JSON body and read the answer as server-sent events: every `data:` line's JSON goes to onEvent,
     until `data: [DONE]`. Resolves true when [DONE] came, false when the stream just ended. An error
     before the stream throws like api(); an error inside it ({"error": {...}}) throws an ApiError with .inStream. */
  async function streamPost(path, body, signal, onEvent) {
    let response;
    try {
      response = await fetch(path, {
        method: 'POST', credentials: 'same-origin', headers: requestHeaders('POST', path, 'text/event-stream'),
        body: JSON.stringify(body === undefined ? {} : body), signal,
      });
    } catch (e) {
      if (isAbort(e)) throw e;
      throw unreachable(e);
    }
    if (!response.ok) throw errorFrom(response, parseJson(await response.text()), path);

    function deliver(data) {
      if (data === '[DONE]') return true;
      const event = parseJson(data);
      if (event === null || typeof event !== 'object') return false;
      if (event.error && typeof event.error === 'object') {
        const info = event.error;
        const error = new ApiError(typeof info.message === 'string' && info.message ? info.message : 'The answer failed.', response.status, info);
        error.inStream = true;
        throw error;
      }
      onEvent(event);
      return false;
    }

    function block(text) {
      const data = [];
      for (const line of text.split(/\r\n|\r|\n/)) {
        if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      return data.length ? deliver(data.join('\n')) : false;
    }

    const type = response.headers.get('Content-Type') || '';
    if (!response.body || !/event-stream/i.test(type)) {
      /* an answer that is not a stream: one JSON body */
      const data = parseJson(await response.text());
      if (data && typeof data === 'object') deliver(JSON.stringify(data));
      return true;
    }

    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let match;
        while ((match = /\r\n\r\n|\n\n|\r\r/.exec(buffer))) {
          const text = buffer.slice(0, match.index);
          buffer = buffer.slice(match.index + match[0].length);
          if (block(text)) return true;
        }
      }
      buffer += decoder.decode();
      return buffer.trim() ? block(buffer) : false;
    } finally {
      reader.cancel().catch(() => {});
    }
  }

  function unauthorized() {
    const hadSession = !!state.me;
    state.me = null;
    showLogin(hadSession ? 'Your session has ended: sign in again.' : '');
  }

  /* ---------- banner and toast ---------- */

  function showError(err) {
    if (err && err.status === 401) return;
    const banner = state.shell && state.shell.banner;
    const message = typeof err === 'string' ? err : (err && err.message) || 'Something went wrong.';
    if (!banner) return;
    fill(banner,
      h('span', { class: 'banner-icon', 'aria-hidden': 'true' }, '!'),
      h('span', { id: 'error-message', class: 'banner-text' }, message),
      button({ class: 'banner-close', 'aria-label': 'Dismiss' }, '×', clearError));
    banner.hidden = false;
  }

  function clearError() {
    const banner = state.shell && state.shell.banner;
    if (!banner) return;
    banner.hidden = true;
    fill(banner);
  }

  let toastTimer = null;
  function toast(text) {
    const el = state.shell && state.shell.toast;
    if (!el || !text) return;
    el.textContent = text;
    el.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => {
      el.hidden = true;
    }, 3200);
  }

  async function withBusy(btn, fn) {
    if (btn.classList.contains('is-busy')) return undefined;
    const wasDisabled = btn.disabled;
    btn.disabled = true;
    btn.classList.add('is-busy');
    btn.setAttribute('aria-busy', 'true');
    try {
      return await fn();
    } finally {
      btn.disabled = wasDisabled;
      btn.classList.remove('is-busy');
      btn.removeAttribute('aria-busy');
    }
  }

  /* ---------- sign in ---------- */

  function rolePages() {
    const role = state.me && state.me.role;
    return ROLE_PAGES[role] || ROLE_PAGES.viewer;
  }

  function defaultPage() {
    const pages = rolePages();
    return pages.includes('inbox') ? 'inbox' : 'spend';
  }

  function leavePage() {
    if (state.page) {
      try {
        state.page.unmount();
      } catch (_) {
        /* a page that fails to stop must not keep the user from signing in */
      }
    }
    state.page = null;
    state.pageName = null;
  }

  function showLogin(message) {
    leavePage();
    if (state.loginShown) {
      const err = document.getElementById('login-error');
      if (err && message) {
        err.textContent = message;
        err.hidden = false;
      }
      return;
    }
    state.loginShown = true;
    state.shell = null;
    document.title = 'Sign in · hearth';

    const error = h('div', { id: 'login-error', class: 'form-error', role: 'alert', hidden: !message }, message || '');
    const name = h('input', {
      id: 'login-name', name: 'name', type: 'text', autocomplete: 'username',
      autocapitalize: 'none', spellcheck: 'false', required: true,
    });
    const password = h('input', {
      id: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true,
    });
    const submit = h('button', { id: 'login-submit', type: 'submit', class: 'btn btn-primary btn-block' }, 'Sign in');
    const form = h('form', { id: 'login', class: 'login-form', novalidate: true },
      h('div', { class: 'field' }, h('label', { for: 'login-name' }, 'Name'), name),
      h('div', { class: 'field' }, h('label', { for: 'login-password' }, 'Password'), password),
      error,
      submit);

    form.addEventListener('submit', (event) => {
      event.preventDefault();
      if (!name.value.trim() || !password.value) {
        error.textContent = 'Enter your name and password.';
        error.hidden = false;
        (name.value.trim() ? password : name).focus();
        return;
      }
      withBusy(submit, async () => {
        submit.textContent = 'Signing in…';
        try {
          const me = await api('POST', LOGIN_PATH, { name: name.value.trim(), password: password.value });
          signedIn(me, true);
        } catch (e) {
          let text = e.message;
          if (e.status === 401 && (!e.message || /^The server answered/.test(e.message))) text = 'Wrong name or password.';
          error.textContent = text;
          error.hidden = false;
          password.value = '';
          password.focus();
        } finally {
          submit.textContent = 'Sign in';
        }
      });
    });

    const app = document.getElementById('app');
    fill(app,
      h('div', { class: 'login-page' },
        h('div', { class: 'login-card' },
          h('div', { class: 'login-brand' }, icon('flame', 'brand-mark'), h('span', { class: 'brand-name' }, 'hearth')),
          h('h1', { class: 'login-title' }, 'Sign in to the console'),
          h('p', { class: 'muted login-sub' }, 'Use the name and password your administrator gave you.'),
          form)));
    name.focus();
  }

  function signedIn(me, fromLogin) {
    if (!me || typeof me !== 'object' || !me.name) {
      showLogin('The server answered without a user.');
      return;
    }
    state.me = { name: String(me.name), role: String(me.role || 'viewer'), csrf: String(me.csrf || '') };
    state.loginShown = false;
    renderShell();
    if (fromLogin) history.replaceState(null, '', '#/' + defaultPage());
    route();
  }

  async function signOut(event) {
    const btn = event.currentTarget;
    await withBusy(btn, async () => {
      try {
        await api('POST', API + '/logout', {});
      } catch (e) {
        if (e.status !== 401) {
          showError(e);
          return;
        }
      }
      state.me = null;
      showLogin('');
    });
  }

  /* ---------- shell and routing ---------- */

  function renderShell() {
    const pages = rolePages();
    const links = {};
    const items = pages.map((page) => {
      const short = NAV_SHORT[page];
      const link = h('a', { id: 'nav-' + page, class: 'nav-link', href: '#/' + page, title: PAGE_TITLES[page] },
        icon(page),
        h('span', { class: short ? 'nav-long' : null }, PAGE_TITLES[page]),
        short ? h('span', { class: 'nav-short', 'aria-hidden': 'true' }, short) : null);
      links[page] = link;
      return h('li', null, link);
    });
    const nav = h('aside', { id: 'nav', class: 'nav' },
      h('div', { class: 'brand' }, icon('flame', 'brand-mark'),
        h('span', { class: 'brand-name' }, 'hearth'), h('span', { class: 'brand-sub' }, 'console')),
      h('nav', { class: 'nav-pages', 'aria-label': 'Pages' }, h('ul', { class: 'nav-list' }, items)),
      h('div', { class: 'nav-user' },
        h('div', { class: 'nav-user-text' },
          h('span', { id: 'user-name', class: 'user-name', title: state.me.name }, state.me.name),
          h('span', { id: 'user-role', class: 'badge badge-role' }, state.me.role)),
        button({ id: 'logout', class: 'btn btn-quiet btn-sm' }, 'Sign out', signOut)));
    const banner = h('div', { id: 'error-banner', class: 'banner', role: 'alert', hidden: true });
    const page = h('div', { id: 'page', class: 'page' });
    const toastEl = h('div', { id: 'toast', class: 'toast', role: 'status', 'aria-live': 'polite', hidden: true });
    fill(document.getElementById('app'),
      h('div', { class: 'shell' }, nav, h('div', { id: 'content', class: 'content' }, banner, page)),
      toastEl);
    state.shell = { nav, banner, page, toast: toastEl, links };
  }

  function parseHash() {
    const parts = location.hash.replace(/^#\/?/, '').split('/');
    let id = null;
    if (parts.length > 1 && parts[1]) {
      try {
        id = decodeURIComponent(parts.slice(1).join('/'));
      } catch (_) {
        id = parts.slice(1).join('/');
      }
    }
    return { page: parts[0] || '', id, parts: parts.slice(1) };
  }

  const PAGE_FACTORIES = {
    inbox: inboxPage, spend: spendPage, models: modelsPage, recs: recsPage, knowledge: knowledgePage, keys: keysPage,
  };

  function route() {
    if (!state.me) return;
    if (!state.shell) renderShell();
    const target = parseHash();
    if (!rolePages().includes(target.page)) {
      history.replaceState(null, '', '#/' + defaultPage());
      route();
      return;
    }
    for (const [page, link] of Object.entries(state.shell.links)) {
      if (page === target.page) link.setAttribute('aria-current', 'page');
      else link.removeAttribute('aria-current');
    }
    document.title = PAGE_TITLES[target.page] + ' · hearth';
    if (state.page && state.pageName === target.page && state.page.update) {
      state.page.update(target);
      return;
    }
    leavePage();
    clearError();
    fill(state.shell.page);
    state.page = PAGE_FACTORIES[target.page]();
    state.pageName = target.page;
    state.page.mount(state.shell.page, target);
    window.scrollTo(0, 0);
  }

  function pageHeader(title, subtitle, ...extra) {
    return h('header', { class: 'page-header' },
      h('div', { class: 'page-heading' }, h('h1', null, title), subtitle ? h('p', { class: 'muted' }, subtitle) : null),
      extra.length ? h('div', { class: 'page-tools' }, extra) : null);
  }

  /* ---------- inbox ---------- */

  function inboxPage() {
    let alive = true;
    let view = VIEWS.includes(prefs.inboxView) ? prefs.inboxView : 'waiting';
    let openId = null;
    let current = null;
    let users = null;
    let listSeq = 0;
    let convSeq = 0;
    let listTimer = null;
    let convTimer = null;
    let live = null;
    let lastList = null;
    const drafts = new Map();

    const liveText = h('span', { class: 'live-text' }, 'Connecting…');
    const liveStatus = h('span', { id: 'live-status', class: 'live', 'data-state': 'connecting', title: 'Live updates' },
      h('span', { class: 'live-dot', 'aria-hidden': 'true' }), liveText);

    const tabs = {};
    const tabBar = h('div', { class: 'tabs', role: 'tablist', 'aria-label': 'Which conversations' },
      VIEWS.map((v) => {
        tabs[v] = button({ id: 'tab-' + v, class: 'tab', role: 'tab' }, VIEW_LABELS[v], () => selectView(v));
        return tabs[v];
      }));
    const listInfo = h('div', { class: 'list-info muted' });
    const list = h('ul', { id: 'conversation-list', class: 'conv-list', 'aria-label': 'Conversations' });
    const listPane = h('div', { class: 'inbox-list' }, tabBar, listInfo, list);
    const detail = h('section', { id: 'conversation', class: 'inbox-detail', 'aria-label': 'Conversation' });
    const layout = h('div', { class: 'inbox' }, listPane, detail);

    function setLive(mode) {
      liveStatus.setAttribute('data-state', mode);
      liveText.textContent = mode === 'on' ? 'Live' : mode === 'off' ? 'Offline: retrying' : 'Connecting…';
    }

    function markTabs() {
      for (const v of VIEWS) {
        tabs[v].setAttribute('aria-selected', v === view ? 'true' : 'false');
        tabs[v].classList.toggle('active', v === view);
      }
    }

    function selectView(v) {
      if (v === view) {
        loadList(true);
        return;
      }
      view = v;
      savePref('inboxView', v);
      markTabs();
      loadList(false);
    }

    /* the list */

    async function loadList(quiet) {
      const seq = ++listSeq;
      if (!quiet || !lastList) {
        fill(list, h('li', { class: 'list-placeholder' }, loading('Loading conversations…')));
        listInfo.textContent = '';
      }
      try {
        const data = await api('GET', API + '/inbox?view=' + encodeURIComponent(view));
        if (!alive || seq !== listSeq) return;
        lastList = Array.isArray(data && data.conversations) ? data.conversations : [];
        renderList();
      } catch (e) {
        if (!alive || seq !== listSeq) return;
        if (!quiet || !lastList) {
          lastList = null;
          fill(list, h('li', { class: 'list-placeholder' },
            errorState('Could not load the conversations.', () => loadList(false))));
        }
        showError(e);
      }
    }

    function scheduleList() {
      clearTimeout(listTimer);
      listTimer = setTimeout(() => loadList(true), 250);
    }

    function renderList() {
      const items = lastList.map(listItem);
      if (!items.length) items.push(h('li', { class: 'list-placeholder' }, emptyState(VIEW_EMPTY[view])));
      fill(list, ...items);
      listInfo.textContent = lastList.length ? plural(lastList.length, 'conversation') : '';
    }

    function listItem(c) {
      const id = String(c.id);
      const last = c.last_message;
      const li = h('li', {
        class: ['conv-item', id === openId && 'selected'],
        'data-testid': 'conversation-item',
        'data-id': id,
        'data-status': String(c.status),
        tabindex: '0',
        role: 'link',
        'aria-current': id === openId ? 'true' : null,
      },
      h('div', { class: 'conv-item-top' },
        statusBadge(c.status),
        h('span', { class: ['conv-item-assignee', !c.assignee && 'muted'] }, c.assignee ? String(c.assignee) : 'Unassigned'),
        agoEl(c.updated_at, 'conv-item-time')),
      c.handoff_summary ? h('p', { class: 'conv-item-summary' }, truncate(c.handoff_summary, 200)) : null,
      last
        ? h('p', { class: 'conv-item-last' },
          h('span', { class: 'conv-item-speaker' }, (SPEAKERS[last.role] || String(last.role)) + ': '),
          truncate(last.text, 140))
        : h('p', { class: 'conv-item-last muted' }, 'No messages yet'),
      h('div', { class: 'conv-item-foot muted' },
        h('span', { class: 'mono', title: id }, truncate(id, 14)),
        c.intent ? h('span', { class: 'chip' }, String(c.intent)) : null,
        h('span', null, plural(c.messages || 0, 'message'))));
      li.addEventListener('click', () => go(id));
      li.addEventListener('keydown', (event) => {
        if (event.key === 'Enter' || event.key === ' ') {
          event.preventDefault();
          go(id);
        }
      });
      return li;
    }

    function go(id) {
      const hash = '#/inbox/' + encodeURIComponent(id);
      if (location.hash !== hash) location.hash = hash;
      else open(id);
    }

    function markSelected() {
      for (const li of list.querySelectorAll('li.conv-item')) {
        const selected = li.getAttribute('data-id') === openId;
        li.classList.toggle('selected', selected);
        if (selected) li.setAttribute('aria-current', 'true');
        else li.removeAttribute('aria-current');
      }
    }

    /* users, for the assign menu */

    async function loadUsers() {
      try {
        const data = await api('GET', API + '/users');
        if (!alive) return;
        users = Array.isArray(data && data.users) ? data.users : [];
        if (current) renderConversation(current);
      } catch (e) {
        if (!alive) return;
        users = [];
        showError(e);
      }
    }

    /* the open conversation */

    function open(id) {
      if (id === openId && (current || id === null)) return;
      openId = id;
      current = null;
      convSeq++;
      layout.classList.toggle('has-open', !!id);
      markSelected();
      connectLive(false);
      if (!id) {
        fill(detail, h('div', { class: 'conv-placeholder' },
          icon('inbox', 'placeholder-icon'),
          h('p', null, 'Choose a conversation to read it and answer.')));
        return;
      }
      fill(detail, loading('Loading conversation…'));
      loadConversation(false);
    }

    async function loadConversation(quiet) {
      const id = openId;
      if (!id) return;
      const seq = ++convSeq;
      try {
        const v = await api('GET', API + '/conversations/' + encodeURIComponent(id));
        if (!alive || id !== openId || seq !== convSeq) return;
        renderConversation(v);
      } catch (e) {
        if (!alive || id !== openId || seq !== convSeq) return;
        if (!quiet || !current) {
          fill(detail, backButton(),
            errorState(e.status === 404 ? 'This conversation does not exist (any more).' : 'Could not load the conversation.',
              () => loadConversation(false)));
        }
        showError(e);
      }
    }

    function scheduleConversation() {
      clearTimeout(convTimer);
      convTimer = setTimeout(() => loadConversation(true), 150);
    }

    function draftFor(id) {
      if (!drafts.has(id)) drafts.set(id, { reply: '', note: '', handBack: false, assignTo: null });
      return drafts.get(id);
    }

    function backButton() {
      return button({ id: 'back-to-list', class: 'btn btn-quiet btn-sm back-button' }, '← All conversations', () => {
        location.hash = '#/inbox';
      });
    }

    async function act(action, body, done, before) {
      const id = openId;
      try {
        const v = await api('POST', API + '/conversations/' + encodeURIComponent(id) + '/' + action, body);
        if (!alive || id !== openId) return true;
        if (before) before();
        convSeq++;
        if (v && v.session) renderConversation(v);
        else loadConversation(true);
        toast(done);
        loadList(true);
        return true;
      } catch (e) {
        showError(e);
        return false;
      }
    }

    function snapshot() {
      const transcript = detail.querySelector('#transcript');
      const active = document.activeElement;
      const openDetails = new Set();
      if (transcript) {
        transcript.querySelectorAll('details[data-index]').forEach((d) => {
          if (d.open) openDetails.add(d.getAttribute('data-index'));
        });
      }
      const meta = detail.querySelector('#metadata');
      return {
        atBottom: transcript ? transcript.scrollHeight - transcript.scrollTop - transcript.clientHeight < 40 : true,
        scrollTop: transcript ? transcript.scrollTop : 0,
        openDetails,
        metaOpen: !!(meta && meta.open),
        focusId: active && active.id && detail.contains(active) ? active.id : null,
        selection: active && typeof active.selectionStart === 'number' && detail.contains(active)
          ? [active.selectionStart, active.selectionEnd] : null,
      };
    }

    function renderConversation(v) {
      const same = current && current.session && v.session && current.session.id === v.session.id;
      const before = same ? snapshot() : null;
      current = v;
      const session = v.session || {};
      const convo = session.conversation || {};
      const entries = Array.isArray(convo.entries) ? convo.entries : [];
      const id = String(session.id || openId);
      const status = String(session.status || '');
      const assignee = v.assignee === null || v.assignee === undefined ? null : String(v.assignee);
      const mine = assignee !== null && assignee === state.me.name;
      const draft = draftFor(id);

      /* header and actions */
      const assignSelect = h('select', { id: 'assign-to', class: 'select', 'aria-label': 'Colleague to assign' });
      fillAssignOptions(assignSelect, assignee);
      assignSelect.value = draft.assignTo !== null && hasOption(assignSelect, draft.assignTo) ? draft.assignTo : (assignee || '');
      assignSelect.addEventListener('change', () => {
        draft.assignTo = assignSelect.value;
      });

      const take = mine ? null : button({ id: 'take', class: 'btn btn-primary' }, 'Assign to me', (event) =>
        withBusy(event.currentTarget, () => act('assign', { to: state.me.name }, 'Assigned to you', () => {
          draft.assignTo = null;
        })));
      const assignBtn = button({ id: 'assign', class: 'btn' }, 'Assign', (event) =>
        withBusy(event.currentTarget, () => {
          const to = assignSelect.value || null;
          return act('assign', { to }, to ? 'Assigned to ' + to : 'Unassigned', () => {
            draft.assignTo = null;
          });
        }));
      const handBack = button({
        id: 'hand-back', class: 'btn', disabled: status !== 'handoff',
        title: status === 'handoff' ? 'The agent answers the customer again' : 'Only a handed-over conversation can go back to the agent',
      }, 'Hand back to agent', (event) =>
        withBusy(event.currentTarget, () => act('hand-back', {}, 'Handed back to the agent')));
      const resolve = button({
        id: 'resolve', class: 'btn btn-success', disabled: status === 'resolved',
        title: status === 'resolved' ? 'Already resolved' : 'Mark the conversation resolved',
      }, 'Resolve', (event) =>
        withBusy(event.currentTarget, () => act('resolve', {}, 'Resolved')));

      const intent = session.intent && typeof session.intent === 'object' ? session.intent : null;
      const facts = h('dl', { class: 'facts' },
        fact('Assigned to', h('span', { id: 'conversation-assignee', class: assignee ? null : 'muted' }, assignee || 'Nobody')),
        fact('Started', dateTime(session.created_at)),
        fact('Updated', agoEl(session.updated_at)),
        session.owner ? fact('Owner', String(session.owner)) : null,
        intent ? fact('Intent', h('span', null, String(intent.intent || '—'),
          Number.isFinite(Number(intent.score)) ? h('span', { class: 'muted' }, ' · ' + Number(intent.score).toFixed(2)) : null,
          intent.in_scope === false ? h('span', { class: 'badge badge-warn' }, 'out of scope') : null)) : null);

      const header = h('header', { class: 'conv-header' },
        backButton(),
        h('div', { class: 'conv-title' },
          h('h2', null, 'Conversation ', h('code', { id: 'conversation-id', class: 'conv-id' }, id)),
          statusBadge(status, 'conversation-status')),
        facts,
        h('div', { class: 'conv-actions' },
          take,
          h('div', { class: 'assign-group' }, assignSelect, assignBtn),
          handBack,
          resolve));

      /* handoff summary */
      const summaryText = session.handoff_summary || convo.handed_over || null;
      const summary = summaryText
        ? h('div', { id: 'handoff-summary', class: 'handoff-box' },
          h('div', { class: 'handoff-label' }, 'Handoff summary'),
          h('p', null, String(summaryText)))
        : null;

      /* transcript */
      const transcript = h('div', { id: 'transcript', class: 'transcript', 'aria-label': 'Transcript', tabindex: '0' },
        entries.length ? entries.map(entryEl) : h('p', { class: 'empty' }, 'No messages yet.'));
      const pending = Array.isArray(convo.pending) && convo.pending.length
        ? h('div', { id: 'pending', class: 'notice notice-info pending' },
          h('strong', null, 'Waiting for the customer to confirm: '), h('code', null, String(convo.pending[0])),
          convo.pending.length > 1 ? h('pre', { class: 'json' }, pretty(convo.pending[1])) : null)
        : null;

      /* reply */
      const canReply = status === 'handoff';
      const replyText = h('textarea', {
        id: 'reply-text', class: 'textarea', rows: '3', disabled: !canReply,
        placeholder: canReply ? 'Write to the customer…' : '', 'aria-label': 'Reply to the customer',
      });
      replyText.value = draft.reply;
      replyText.addEventListener('input', () => {
        draft.reply = replyText.value;
      });
      const replyHandBack = h('input', { id: 'reply-hand-back', type: 'checkbox', disabled: !canReply, checked: draft.handBack });
      replyHandBack.addEventListener('change', () => {
        draft.handBack = replyHandBack.checked;
      });
      const replySubmit = h('button', { id: 'reply-submit', type: 'submit', class: 'btn btn-primary', disabled: !canReply }, 'Send reply');
      const replyError = h('div', { class: 'form-error', role: 'alert', hidden: true });
      const replyForm = h('form', { id: 'reply-form', class: ['reply', !canReply && 'is-disabled'], novalidate: true },
        h('label', { class: 'panel-label', for: 'reply-text' }, 'Reply to the customer'),
        canReply ? null : h('p', { id: 'reply-disabled-reason', class: 'notice notice-muted' }, replyReason(status)),
        replyText,
        replyError,
        h('div', { class: 'form-row' },
          h('label', { class: 'check', for: 'reply-hand-back' }, replyHandBack, 'Hand back to the agent after this reply'),
          replySubmit));
      replyForm.addEventListener('submit', (event) => {
        event.preventDefault();
        if (!canReply) return;
        const text = replyText.value.trim();
        if (!text) {
          replyError.textContent = 'Write a reply first.';
          replyError.hidden = false;
          replyText.focus();
          return;
        }
        replyError.hidden = true;
        const backAfter = replyHandBack.checked;
        withBusy(replySubmit, () => act('reply', { text, hand_back: backAfter },
          backAfter ? 'Reply sent; the agent answers again' : 'Reply sent', () => {
            draft.reply = '';
            draft.handBack = false;
          }));
      });
      submitOnCtrlEnter(replyText, replyForm);

      /* notes */
      const notes = Array.isArray(v.notes) ? v.notes : [];
      const noteText = h('textarea', { id: 'note-text', class: 'textarea', rows: '3', placeholder: 'Only your colleagues see this', 'aria-label': 'New private note' });
      noteText.value = draft.note;
      noteText.addEventListener('input', () => {
        draft.note = noteText.value;
      });
      const noteSubmit = h('button', { id: 'note-submit', type: 'submit', class: 'btn' }, 'Add note');
      const noteError = h('div', { class: 'form-error', role: 'alert', hidden: true });
      const noteForm = h('form', { id: 'note-form', class: 'note-form', novalidate: true }, noteText, noteError,
        h('div', { class: 'form-row form-row-end' }, noteSubmit));
      noteForm.addEventListener('submit', (event) => {
        event.preventDefault();
        const text = noteText.value.trim();
        if (!text) {
          noteError.textContent = 'Write the note first.';
          noteError.hidden = false;
          noteText.focus();
          return;
        }
        noteError.hidden = true;
        withBusy(noteSubmit, () => act('notes', { text }, 'Note added', () => {
          draft.note = '';
        }));
      });
      submitOnCtrlEnter(noteText, noteForm);

      const notesPanel = h('aside', { id: 'notes', class: 'panel notes', 'aria-label': 'Private notes' },
        h('h3', { class: 'notes-title' }, h('span', { class: 'lock', 'aria-hidden': 'true' }), 'Private notes — never shown to the customer'),
        h('ul', { id: 'note-list', class: 'note-list' },
          notes.length
            ? notes.map((n) => h('li', { class: 'note', 'data-testid': 'note' },
              h('div', { class: 'note-head' },
                h('strong', null, String(n.author || '—')),
                agoEl(n.at, 'muted')),
              h('p', { class: 'note-text' }, String(n.text === undefined ? '' : n.text))))
            : h('li', { class: 'muted note-empty' }, 'No notes yet.')),
        noteForm);

      const metadata = h('details', { id: 'metadata', class: 'panel metadata', open: before ? before.metaOpen : false },
        h('summary', null, 'Metadata'),
        h('pre', { class: 'json' }, pretty(session.metadata === undefined ? null : session.metadata)));

      fill(detail,
        header,
        summary,
        h('div', { class: 'conv-grid' },
          h('div', { class: 'conv-main' }, transcript, pending, replyForm),
          h('div', { class: 'conv-side' }, notesPanel, metadata)));

      if (before) {
        transcript.querySelectorAll('details[data-index]').forEach((d) => {
          if (before.openDetails.has(d.getAttribute('data-index'))) d.open = true;
        });
        transcript.scrollTop = before.atBottom ? transcript.scrollHeight : before.scrollTop;
        if (before.focusId) {
          const el = document.getElementById(before.focusId);
          if (el && !el.disabled) {
            el.focus({ preventScroll: true });
            if (before.selection && typeof el.setSelectionRange === 'function') {
              try {
                el.setSelectionRange(before.selection[0], before.selection[1]);
              } catch (_) {
                /* not a text field */
              }
            }
          }
        }
      } else {
        transcript.scrollTop = transcript.scrollHeight;
      }
    }

    function fact(label, value) {
      return h('div', { class: 'fact' }, h('dt', null, label), h('dd', null, value));
    }

    function hasOption(select, value) {
      return Array.from(select.options).some((o) => o.value === value);
    }

    function fillAssignOptions(select, assignee) {
      select.appendChild(h('option', { value: '' }, 'Nobody'));
      const list = Array.isArray(users) ? users.slice() : [];
      const names = new Set(list.map((u) => String(u.name)));
      if (assignee && !names.has(assignee)) list.push({ name: assignee, role: '' });
      if (!names.has(state.me.name)) list.push({ name: state.me.name, role: state.me.role });
      const byRole = new Map();
      for (const u of list) {
        const role = String(u.role || '');
        if (!byRole.has(role)) byRole.set(role, []);
        byRole.get(role).push(String(u.name));
      }
      const grouped = byRole.size > 1;
      for (const [role, members] of byRole) {
        members.sort((a, b) => a.localeCompare(b));
        const options = members.map((name) => h('option', { value: name }, name));
        if (grouped) select.appendChild(h('optgroup', { label: role ? role[0].toUpperCase() + role.slice(1) : 'Other' }, options));
        else add(select, options);
      }
    }

    function replyReason(status) {
      if (status === 'active') return 'The agent is answering this conversation. Replies open when it is handed over to a person.';
      if (status === 'resolved') return 'This conversation is resolved: replies are closed.';
      return 'Replies are possible only while the conversation is handed over to a person.';
    }

    function entryEl(e, index) {
      const kind = String(e && e.kind);
      const base = { class: ['entry', 'entry-' + kind.replace(/[^a-z_]/g, '')], 'data-kind': kind, 'data-index': String(index) };
      switch (kind) {
        case 'customer':
          return h('div', base, h('div', { class: 'speaker' }, 'Customer'), h('div', { class: 'bubble' }, String(e.text || '')));
        case 'agent':
          return h('div', base,
            h('div', { class: 'speaker' }, 'Agent'),
            h('div', { class: 'bubble' }, String(e.text || '')),
            Array.isArray(e.citations) && e.citations.length
              ? h('ul', { class: 'citations', 'aria-label': 'Sources' },
                e.citations.map((c) => h('li', null,
                  h('span', { class: 'cite-title' }, String(c.title || 'Untitled')),
                  c.source ? ' — ' + String(c.source) : '',
                  c.id ? [', ', h('code', null, String(c.id))] : null)))
              : null);
        case 'human':
          return h('div', base,
            h('div', { class: 'speaker' }, e.author ? 'Support · ' + String(e.author) : 'Support'),
            h('div', { class: 'bubble' }, String(e.text || '')));
        case 'tool_call': {
          const result = e.result && typeof e.result === 'object' ? e.result : {};
          const failed = Object.prototype.hasOwnProperty.call(result, 'Err');
          const value = failed ? String(result.Err) : pretty(Object.prototype.hasOwnProperty.call(result, 'Ok') ? result.Ok : e.result);
          return h('div', base,
            h('details', { class: 'tool', 'data-index': String(index) },
              h('summary', null,
                h('span', { class: 'tool-label' }, 'Tool call'),
                h('code', { class: 'tool-name' }, String(e.name || '')),
                h('span', { class: ['badge', failed ? 'badge-error' : 'badge-ok'] }, failed ? 'refused' : 'ok')),
              h('div', { class: 'tool-body' },
                h('div', { class: 'tool-part' }, h('div', { class: 'tool-part-label' }, 'Arguments'), h('pre', { class: 'json' }, pretty(e.arguments))),
                h('div', { class: 'tool-part' }, h('div', { class: 'tool-part-label' }, failed ? 'Refusal' : 'Result'), h('pre', { class: 'json' }, value)))));
        }
        case 'confirmation_asked':
          return h('div', base,
            h('div', { class: 'notice notice-info' },
              h('strong', null, 'Asked the customer to confirm '), h('code', null, String(e.name || '')),
              h('pre', { class: 'json' }, pretty(e.arguments))));
        case 'handoff':
          return h('div', base,
            h('div', { class: 'notice notice-warn' },
              h('strong', null, 'Handed over to a person'),
              e.summary ? h('p', null, String(e.summary)) : null));
        default:
          return h('div', base, h('div', { class: 'notice notice-muted' }, h('pre', { class: 'json' }, pretty(e))));
      }
    }

    /* live updates */

    function closeLive() {
      if (live) {
        live.close();
        live = null;
      }
    }

    function connectLive(refetch) {
      closeLive();
      if (!alive) {
        setLive('off');
        return;
      }
      const url = API + '/live' + (openId ? '?conversation=' + encodeURIComponent(openId) : '');
      let opened = false;
      live = liveStream(url, {
        setLive,
        isAlive: () => alive,
        onOpen() {
          if (opened || refetch) {
            scheduleList();
            if (openId) scheduleConversation();
          }
          opened = true;
        },
        events: {
          inbox: () => scheduleList(),
          conversation(event) {
            if (!openId) return;
            const data = parseJson(event.data);
            if (data && data.id !== undefined && data.id !== null && String(data.id) !== openId) return;
            if (data && current && typeof data.version === 'number' && typeof current.version === 'number' && data.version <= current.version) return;
            scheduleConversation();
          },
        },
        async recover() {
          const me = await api('GET', API + '/me');
          if (me && me.csrf && state.me) state.me.csrf = String(me.csrf);
        },
        reconnect: () => connectLive(true),
      });
    }

    return {
      mount(container, target) {
        container.appendChild(h('div', { class: 'page-inbox' },
          pageHeader('Inbox', 'Conversations the agent handed over, and everything else.', liveStatus),
          layout));
        markTabs();
        loadList(false);
        loadUsers();
        open(target.id);
        if (!target.id) connectLive(false);
      },
      update(target) {
        open(target.id);
      },
      unmount() {
        alive = false;
        clearTimeout(listTimer);
        clearTimeout(convTimer);
        closeLive();
      },
    };
  }

  function submitOnCtrlEnter(textarea, form) {
    textarea.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        if (typeof form.requestSubmit === 'function') form.requestSubmit();
        else form.dispatchEvent(new Event('submit', { cancelable: true }));
      }
    });
  }

  /* ---------- tables ---------- */

  /* columns: {label, num?, cls?}; rows: {cells, cls?, testid?, name?, attrs?, detail?}: a row's detail is shown
     in a full-width row under it */
  function table(id, columns, rows, options) {
    const opts = options || {};
    const cellClass = (i) => (columns[i] ? [columns[i].num && 'num', columns[i].cls] : null);
    const head = h('thead', null, h('tr', null, columns.map((c) =>
      h('th', { scope: 'col', class: c.num ? 'num' : null }, c.label))));
    const body = h('tbody', null,
      rows.length
        ? rows.map((row) => {
          const tr = h('tr', Object.assign({ class: row.cls || null, 'data-testid': row.testid || null, 'data-name': row.name || null }, row.attrs || {}),
            row.cells.map((cell, i) => h('td', { class: cellClass(i) }, cell)));
          return row.detail
            ? [tr, h('tr', { class: 'row-detail' }, h('td', { colspan: String(columns.length) }, row.detail))]
            : tr;
        })
        : h('tr', { class: 'empty-row' }, h('td', { colspan: String(columns.length) }, opts.empty || 'Nothing to show.')));
    const foot = opts.footer
      ? h('tfoot', null, h('tr', null, opts.footer.map((cell, i) => h('td', { class: columns[i] && columns[i].num ? 'num' : null }, cell))))
      : null;
    return h('div', { class: 'table-wrap' }, h('table', { id, class: ['table', opts.cls] }, head, body, foot));
  }

  function badge(text, kind) {
    return h('span', { class: ['badge', 'badge-' + kind] }, text);
  }

  function limitText(n) {
    return n === null || n === undefined ? h('span', { class: 'muted' }, 'none') : num(n);
  }

  function budgetBar(key) {
    const budget = key.budget;
    if (budget === null || budget === undefined) return h('span', { class: 'muted' }, 'No budget');
    const spent = Number(key.spent) || 0;
    const remaining = key.remaining === null || key.remaining === undefined ? Math.max(0, budget - spent) : Number(key.remaining);
    const fraction = budget > 0 ? spent / budget : (spent > 0 ? 1 : 0);
    const shown = Math.max(0, Math.min(1, fraction));
    const level = fraction >= 1 ? 'over' : fraction >= 0.8 ? 'warn' : 'ok';
    const fill = h('div', { class: 'progress-fill' });
    fill.style.width = (shown * 100).toFixed(1) + '%';
    return h('div', { class: 'progress-cell' },
      h('div', {
        class: ['progress', 'progress-' + level], role: 'progressbar',
        'aria-valuemin': '0', 'aria-valuemax': '100', 'aria-valuenow': String(Math.round(shown * 100)),
        'aria-label': Math.round(fraction * 100) + ' % of the budget spent',
      }, fill),
      h('span', { class: 'progress-text' }, usd(remaining) + ' left'));
  }

  function isRevoked(key) {
    return key.revoked !== null && key.revoked !== undefined && key.revoked !== false;
  }

  function budgetsTable(id, keys, withActions, onRevoke) {
    const columns = [
      { label: 'Name' }, { label: 'Budget', num: true }, { label: 'Period' }, { label: 'Spent', num: true },
      { label: 'Remaining' }, { label: 'Requests / min', num: true }, { label: 'Tokens / min', num: true },
    ];
    if (withActions) {
      columns.splice(1, 0, { label: 'Scopes' }, { label: 'Routes' });
      columns.push({ label: 'Created' }, { label: 'Status' }, { label: '' });
    }
    const rows = keys.map((k) => {
      const revoked = isRevoked(k);
      const name = h('div', { class: 'key-name' }, h('strong', null, String(k.name)),
        k.tenant ? h('span', { class: 'muted small' }, 'tenant ' + String(k.tenant)) : null,
        !withActions && revoked ? badge('revoked', 'revoked') : null);
      const cells = [
        name,
        k.budget === null || k.budget === undefined ? h('span', { class: 'muted' }, 'none') : usd(k.budget),
        String(k.period || '—'),
        usd(k.spent),
        budgetBar(k),
        limitText(k.requests_per_minute),
        limitText(k.tokens_per_minute),
      ];
      if (withActions) {
        const scopes = Array.isArray(k.scopes) ? k.scopes : [];
        const routes = Array.isArray(k.routes) ? k.routes : [];
        cells.splice(1, 0,
          h('div', { class: 'chips' }, scopes.length ? scopes.map((sc) => h('span', { class: 'chip' }, String(sc))) : h('span', { class: 'muted' }, 'none')),
          routes.length ? h('div', { class: 'chips' }, routes.map((r) => h('span', { class: 'chip chip-quiet' }, String(r)))) : h('span', { class: 'muted' }, 'all'));
        cells.push(
          dateOnly(k.created),
          revoked ? badge('revoked', 'revoked') : badge('active', 'ok'),
          revoked ? null : button({ class: 'btn btn-danger btn-sm', 'data-testid': 'revoke', 'data-name': String(k.name) }, 'Revoke',
            (event) => onRevoke(k, event.currentTarget)));
      }
      return { cells, cls: revoked ? 'revoked' : null, name: String(k.name) };
    });
    return table(id, columns.map((c) => (c.label === '' ? { label: h('span', { class: 'sr-only' }, 'Actions') } : c)), rows,
      { empty: withActions ? 'No keys yet: create one below.' : 'No API keys.' });
  }

  /* ---------- charts ---------- */

  function dayRange(from, to) {
    const start = Date.parse(String(from) + 'T00:00:00Z');
    const end = Date.parse(String(to) + 'T00:00:00Z');
    if (!Number.isFinite(start) || !Number.isFinite(end) || end < start) return null;
    const days = [];
    for (let t = start; t <= end && days.length < 1200; t += 86400000) days.push(new Date(t).toISOString().slice(0, 10));
    return days;
  }

  function shortDay(day) {
    const t = Date.parse(day + 'T00:00:00Z');
    if (!Number.isFinite(t)) return day;
    return new Date(t).toLocaleDateString(undefined, { month: 'short', day: 'numeric', timeZone: 'UTC' });
  }

  function longDay(day) {
    const t = Date.parse(day + 'T00:00:00Z');
    if (!Number.isFinite(t)) return day;
    return new Date(t).toLocaleDateString(undefined, { weekday: 'short', year: 'numeric', month: 'short', day: 'numeric', timeZone: 'UTC' });
  }

  function aggregate(data) {
    const series = Array.isArray(data.series) ? data.series : [];
    const rows = Array.isArray(data.rows) ? data.rows : [];
    let days = dayRange(data.from, data.to);
    if (!days) days = Array.from(new Set(series.map((p) => String(p.day)))).sort();
    const dayIndex = new Map(days.map((d, i) => [d, i]));
    for (const p of series) {
      if (!dayIndex.has(String(p.day))) {
        days.push(String(p.day));
      }
    }
    days.sort();
    days.forEach((d, i) => dayIndex.set(d, i));

    const order = [];
    const seen = new Set();
    for (const r of rows) {
      const g = String(r.group);
      if (!seen.has(g)) { seen.add(g); order.push(g); }
    }
    const extraCost = new Map();
    for (const p of series) {
      const g = String(p.group);
      if (!seen.has(g)) extraCost.set(g, (extraCost.get(g) || 0) + (Number(p.cost) || 0));
    }
    order.push(...Array.from(extraCost.keys()).sort((a, b) => extraCost.get(b) - extraCost.get(a)));

    const overflow = order.length > MAX_GROUPS;
    const kept = overflow ? order.slice(0, MAX_GROUPS - 1) : order;
    const groups = kept.map((g, i) => ({ key: g, label: g === '' ? '(none)' : g, colour: PALETTE[i % PALETTE.length] }));
    if (overflow) groups.push({ key: '\u0000other', label: 'Other (' + (order.length - kept.length) + ')', colour: OTHER_COLOUR });
    const groupIndex = new Map(groups.map((g, i) => [g.key, i]));
    const otherIndex = overflow ? groups.length - 1 : -1;

    const zero = () => days.map(() => groups.map(() => 0));
    const cost = zero();
    const requests = zero();
    const errors = days.map(() => 0);
    for (const p of series) {
      const d = dayIndex.get(String(p.day));
      if (d === undefined) continue;
      let g = groupIndex.get(String(p.group));
      if (g === undefined) g = otherIndex;
      if (g < 0) continue;
      cost[d][g] += Number(p.cost) || 0;
      requests[d][g] += Number(p.requests) || 0;
      errors[d] += Number(p.errors) || 0;
    }
    return { days, groups, cost, requests, errors };
  }

  function niceTicks(max, count, integer) {
    if (!(max > 0)) return integer ? [0, 1] : [0, 1];
    const raw = max / count;
    const magnitude = Math.pow(10, Math.floor(Math.log10(raw)));
    const norm = raw / magnitude;
    let step = (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 2.5 ? 2.5 : norm <= 5 ? 5 : 10) * magnitude;
    if (integer) step = Math.max(1, Math.ceil(step));
    const n = Math.max(1, Math.ceil(max / step - 1e-9));
    const ticks = [];
    for (let i = 0; i <= n; i++) ticks.push(Number((i * step).toPrecision(12)));
    return ticks;
  }

  function stackedChart(opts) {
    const { id, title, agg, matrix, format, axisFormat, integer, extra } = opts;
    const W = Math.max(280, Math.round(opts.width || 720));
    const H = W < 480 ? 210 : 250;
    const m = { t: 14, r: 10, b: 30, l: 62 };
    const pw = W - m.l - m.r;
    const ph = H - m.t - m.b;
    const days = agg.days;
    const n = Math.max(1, days.length);
    const totals = days.map((_, d) => matrix[d].reduce((a, b) => a + b, 0));
    const max = totals.reduce((a, b) => Math.max(a, b), 0);
    const ticks = niceTicks(max, 4, integer);
    const top = ticks[ticks.length - 1] || 1;
    const y = (v) => m.t + ph - (v / top) * ph;
    const band = pw / n;
    const barWidth = Math.max(1, Math.min(band * 0.72, 36));

    const svg = s('svg', {
      id, class: 'chart', viewBox: '0 0 ' + W + ' ' + H, preserveAspectRatio: 'xMidYMid meet',
      role: 'img', 'aria-label': title, width: '100%',
    }, s('title', null, title));

    const grid = s('g', { class: 'chart-grid' });
    for (const t of ticks) {
      grid.appendChild(s('line', { x1: m.l, x2: W - m.r, y1: y(t), y2: y(t), class: t === 0 ? 'axis-line' : 'grid-line' }));
      grid.appendChild(s('text', { x: m.l - 8, y: y(t), 'text-anchor': 'end', 'dominant-baseline': 'middle', class: 'axis-label' }, axisFormat(t)));
    }
    svg.appendChild(grid);

    const every = Math.max(1, Math.ceil(n / Math.max(2, Math.floor(pw / 64))));
    const xLabels = s('g', { class: 'chart-x' });
    days.forEach((day, d) => {
      if (d % every !== 0) return;
      xLabels.appendChild(s('text', { x: m.l + band * (d + 0.5), y: H - m.b + 20, 'text-anchor': 'middle', class: 'axis-label' }, shortDay(day)));
    });
    svg.appendChild(xLabels);

    const wrap = h('div', { class: 'chart-wrap' });
    const tip = h('div', { class: 'chart-tip', role: 'status', hidden: true });
    const hits = s('g', { class: 'chart-hits' });
    const bars = s('g', { class: 'chart-bars' });
    let activeHit = null;

    function hideTip() {
      tip.hidden = true;
      if (activeHit) activeHit.classList.remove('active');
      activeHit = null;
    }

    function showTip(d, hit) {
      if (activeHit) activeHit.classList.remove('active');
      activeHit = hit;
      hit.classList.add('active');
      const lines = [];
      agg.groups.forEach((g, gi) => {
        const v = matrix[d][gi];
        if (v > 0) lines.push(h('div', { class: 'tip-row' }, h('span', { class: 'swatch', 'data-colour': g.colour }), h('span', { class: 'tip-name' }, g.label), h('span', { class: 'tip-value' }, format(v))));
      });
      fill(tip,
        h('div', { class: 'tip-day' }, longDay(days[d])),
        lines.length ? lines : h('div', { class: 'muted' }, 'Nothing this day'),
        h('div', { class: 'tip-row tip-total' }, h('span', { class: 'tip-name' }, 'Total'), h('span', { class: 'tip-value' }, format(totals[d]))),
        extra ? extra(d) : null);
      for (const sw of tip.querySelectorAll('.swatch[data-colour]')) sw.style.background = sw.getAttribute('data-colour');
      tip.hidden = false;
      const box = wrap.getBoundingClientRect();
      const r = hit.getBoundingClientRect();
      const tipWidth = tip.offsetWidth;
      let left = r.left - box.left + r.width / 2 - tipWidth / 2;
      left = Math.max(4, Math.min(left, box.width - tipWidth - 4));
      tip.style.left = left + 'px';
      tip.style.top = Math.max(0, r.top - box.top + 4) + 'px';
    }

    days.forEach((day, d) => {
      const x = m.l + band * d;
      const hit = s('rect', { x, y: m.t, width: band, height: ph, class: 'hit' });
      hit.addEventListener('pointerenter', () => showTip(d, hit));
      hit.addEventListener('click', () => showTip(d, hit));
      hits.appendChild(hit);
      let acc = 0;
      agg.groups.forEach((g, gi) => {
        const v = matrix[d][gi];
        if (!(v > 0)) return;
        const y1 = y(acc + v);
        const y0 = y(acc);
        bars.appendChild(s('rect', {
          x: x + (band - barWidth) / 2, y: y1, width: barWidth, height: Math.max(0.75, y0 - y1), fill: g.colour, class: 'bar',
        }, s('title', null, shortDay(day) + ' · ' + g.label + ': ' + format(v))));
        acc += v;
      });
    });
    svg.appendChild(hits);
    svg.appendChild(bars);
    svg.addEventListener('pointerleave', (event) => {
      if (event.pointerType !== 'touch') hideTip();
    });
    tip.addEventListener('click', hideTip);

    if (!(max > 0)) {
      svg.appendChild(s('text', { x: m.l + pw / 2, y: m.t + ph / 2, 'text-anchor': 'middle', class: 'chart-empty' }, 'Nothing in this period'));
    }

    wrap.appendChild(svg);
    wrap.appendChild(tip);
    return wrap;
  }

  function legend(groups) {
    return h('ul', { class: 'legend', 'aria-label': 'Legend' }, groups.map((g) => {
      const sw = h('span', { class: 'swatch', 'aria-hidden': 'true' });
      sw.style.background = g.colour;
      return h('li', null, sw, g.label);
    }));
  }

  /* ---------- spend ---------- */

  function spendPage() {
    let alive = true;
    let spendSeq = 0;

    const daysSelect = h('select', { id: 'spend-days', class: 'select' },
      [7, 30, 90, 365].map((d) => h('option', { value: String(d) }, 'Last ' + d + ' days')));
    daysSelect.value = ['7', '30', '90', '365'].includes(String(prefs.spendDays)) ? String(prefs.spendDays) : '30';
    const bySelect = h('select', { id: 'spend-by', class: 'select' },
      Object.keys(GROUP_LABELS).map((k) => h('option', { value: k }, GROUP_LABELS[k])));
    bySelect.value = Object.prototype.hasOwnProperty.call(GROUP_LABELS, prefs.spendBy) ? prefs.spendBy : 'route';
    daysSelect.addEventListener('change', () => {
      savePref('spendDays', daysSelect.value);
      loadSpend();
    });
    bySelect.addEventListener('change', () => {
      savePref('spendBy', bySelect.value);
      loadSpend();
    });

    const controls = h('div', { class: 'controls' },
      h('label', { class: 'control' }, h('span', { class: 'control-label' }, 'Period'), daysSelect),
      h('label', { class: 'control' }, h('span', { class: 'control-label' }, 'Group by'), bySelect));

    const values = {};
    const subs = {};
    function card(key, label) {
      values[key] = h('div', { id: 'total-' + key, class: 'card-value' }, '…');
      subs[key] = h('div', { class: 'card-sub muted' }, '\u00a0');
      return h('div', { class: 'card', 'data-testid': 'card-' + key }, h('div', { class: 'card-label' }, label), values[key], subs[key]);
    }
    const cards = h('div', { class: 'cards' },
      card('cost', 'Cost'), card('requests', 'Requests'), card('savings', 'Savings'), card('tokens', 'Tokens'));

    const period = h('p', { class: 'muted period' });
    const costChart = h('div', { class: 'chart-body' }, loading());
    const requestsChart = h('div', { class: 'chart-body' }, loading());
    const groupTitle = h('h2', null, 'By route');
    const spendTable = h('div', null, loading());
    const assumptions = h('div', { id: 'assumptions', class: 'assumptions' });
    const logNote = h('p', { id: 'raw-text-note', class: 'muted small', hidden: true });
    const requestLog = h('div', null, loading());
    const budgets = h('div', null, loading());

    let charts = null;
    let chartWidth = 0;

    function renderCharts() {
      if (!charts) return;
      const { agg, by } = charts;
      const what = GROUP_LABELS[by].toLowerCase();
      chartWidth = costChart.clientWidth;
      fill(costChart,
        stackedChart({ id: 'spend-chart', title: 'Cost per day by ' + what, agg, matrix: agg.cost, format: usd, axisFormat: usdAxis, width: chartWidth }),
        agg.groups.length ? legend(agg.groups) : null);
      fill(requestsChart,
        stackedChart({
          id: 'requests-chart', title: 'Requests per day by ' + what, agg, matrix: agg.requests,
          format: num, axisFormat: num, integer: true, width: requestsChart.clientWidth || chartWidth,
          extra: (d) => (agg.errors[d] ? h('div', { class: 'tip-row tip-errors' }, h('span', { class: 'tip-name' }, 'Errors'), h('span', { class: 'tip-value' }, num(agg.errors[d]))) : null),
        }),
        agg.groups.length ? legend(agg.groups) : null);
    }

    const resizer = typeof ResizeObserver === 'function'
      ? new ResizeObserver(() => {
        if (charts && Math.abs(costChart.clientWidth - chartWidth) > 16) renderCharts();
      })
      : null;

    async function loadSpend() {
      const seq = ++spendSeq;
      charts = null;
      const by = bySelect.value;
      for (const k of Object.keys(values)) {
        values[k].textContent = '…';
        subs[k].textContent = '\u00a0';
      }
      fill(costChart, loading());
      fill(requestsChart, loading());
      fill(spendTable, loading());
      groupTitle.textContent = 'By ' + GROUP_LABELS[by].toLowerCase();
      try {
        const data = await api('GET', API + '/spend?days=' + encodeURIComponent(daysSelect.value) + '&by=' + encodeURIComponent(by));
        if (!alive || seq !== spendSeq) return;
        renderSpend(data || {}, by);
      } catch (e) {
        if (!alive || seq !== spendSeq) return;
        for (const k of Object.keys(values)) values[k].textContent = '—';
        const failed = () => errorState('Could not load spend.', loadSpend);
        fill(costChart, failed());
        fill(requestsChart, failed());
        fill(spendTable, failed());
        showError(e);
      }
    }

    function renderSpend(data, by) {
      const total = data.total || {};
      const prompt = Number(total.prompt_tokens) || 0;
      const completion = Number(total.completion_tokens) || 0;
      values.cost.textContent = usd(total.cost);
      subs.cost.textContent = 'reference ' + usd(total.reference_cost) + (total.unpriced_requests ? ' · ' + plural(total.unpriced_requests, 'unpriced request') : '');
      values.requests.textContent = num(total.requests || 0);
      subs.requests.textContent = plural(total.errors || 0, 'error') + ' · ' + num(total.local_requests || 0) + ' local';
      fill(values.savings, usd(total.savings),
        h('span', { class: 'card-percent' }, total.savings_percent === null || total.savings_percent === undefined ? '' : ' (' + percent(total.savings_percent) + ')'));
      subs.savings.textContent = data.assumptions && data.assumptions.reference_model ? 'against ' + String(data.assumptions.reference_model) : '\u00a0';
      values.tokens.textContent = num(prompt + completion);
      subs.tokens.textContent = num(prompt) + ' in · ' + num(completion) + ' out';
      period.textContent = data.from && data.to ? longDay(String(data.from)) + ' – ' + longDay(String(data.to)) + ' (UTC days)' : '';

      charts = { agg: aggregate(data), by };
      renderCharts();

      const rows = (Array.isArray(data.rows) ? data.rows : []).map((r) => ({ cells: usageCells(r, false) }));
      fill(spendTable, table('spend-table', [
        { label: GROUP_LABELS[by] }, { label: 'Requests', num: true }, { label: 'Errors', num: true }, { label: 'Local', num: true },
        { label: 'Tokens in', num: true }, { label: 'Tokens out', num: true }, { label: 'Cost', num: true },
        { label: 'Reference cost', num: true }, { label: 'Savings', num: true }, { label: 'Savings %', num: true },
        { label: 'Unpriced', num: true }, { label: 'Mean TTFT', num: true }, { label: 'Mean duration', num: true },
      ], rows, { empty: 'No requests in this period.', footer: rows.length ? usageCells(total, true) : null }));

      const a = data.assumptions || {};
      const lines = [];
      if (a.reference_model) {
        lines.push('Savings compare what was spent with what the same tokens would have cost on ' + String(a.reference_model) +
          ' at ' + usd(a.reference_input_price) + ' per million input tokens and ' + usd(a.reference_output_price) +
          ' per million output tokens' + (a.reference_price_source ? ' (prices: ' + String(a.reference_price_source) + ')' : '') + '.');
      }
      if (a.local_cost_method) lines.push('Local cost: ' + sentence(a.local_cost_method));
      else if (a.machine_cost_per_hour !== undefined) lines.push('Local cost: ' + usd(a.machine_cost_per_hour) + ' per hour of this machine.');
      if (a.upstream_cost_method) lines.push('Upstream cost: ' + sentence(a.upstream_cost_method));
      lines.push('Days are UTC calendar days.');
      fill(assumptions, h('h3', null, 'How these figures are made'), lines.map((l) => h('p', null, l)));
    }

    function usageCells(r, isTotal) {
      const group = isTotal ? h('strong', null, 'Total') : (String(r.group) === '' ? h('span', { class: 'muted' }, '(none)') : String(r.group));
      return [
        group, num(r.requests), num(r.errors), num(r.local_requests), num(r.prompt_tokens), num(r.completion_tokens),
        usd(r.cost), usd(r.reference_cost), usd(r.savings), percent(r.savings_percent), num(r.unpriced_requests),
        duration(r.mean_ttft_ms), duration(r.mean_duration_ms),
      ];
    }

    async function loadRequests() {
      fill(requestLog, loading());
      try {
        const data = await api('GET', API + '/requests?limit=100');
        if (!alive) return;
        const list = (Array.isArray(data && data.requests) ? data.requests.slice() : [])
          .sort((a, b) => (Number(b.at) || 0) - (Number(a.at) || 0));
        const setting = () => h('code', null, '[gateway] audit_raw_text');
        if (data && data.raw_text === true && data.text_shown === true) {
          fill(logNote, 'Calls that left this machine keep what was sent and answered (', setting(), ' is on): open the text under a row to read it.');
          logNote.hidden = false;
        } else if (data && data.raw_text === true) {
          fill(logNote, 'Calls that left this machine keep what was sent and answered (', setting(), ' is on); only admins see that text.');
          logNote.hidden = false;
        } else if (data && data.raw_text === false) {
          fill(logNote, 'The log carries no text: it keeps counts, timings and costs, never what was said, unless ', setting(), ' is on.');
          logNote.hidden = false;
        }
        const rows = list.map((r) => {
          const detail = r.text && typeof r.text === 'object' ? requestText(r.text) : null;
          return { r, detail };
        });
        fill(requestLog, table('request-log', [
          { label: 'Time' }, { label: 'Key' }, { label: 'Route' }, { label: 'Model' }, { label: 'Deployment' },
          { label: 'Where' }, { label: 'Status' }, { label: 'Tokens in', num: true }, { label: 'Tokens out', num: true },
          { label: 'TTFT', num: true }, { label: 'Duration', num: true }, { label: 'Cost', num: true },
        ], rows.map(({ r, detail }) => ({
          cls: detail ? 'has-text' : null,
          detail,
          cells: [
            h('span', { title: dateTime(r.at) }, dateTime(r.at)),
            r.api_key === null || r.api_key === undefined ? h('span', { class: 'muted' }, '—') : String(r.api_key),
            String(r.route === undefined ? '' : r.route),
            String(r.model === undefined ? '' : r.model),
            String(r.deployment === undefined ? '' : r.deployment),
            r.local ? badge('local', 'local') : badge('upstream', 'upstream'),
            String(r.status) === 'ok' ? badge('ok', 'ok') : badge(String(r.status), 'error'),
            num(r.prompt_tokens), num(r.completion_tokens), duration(r.ttft_ms), duration(r.duration_ms), usd(r.cost),
          ],
        })), { empty: 'No requests yet.', cls: rows.some((x) => x.detail) ? 'table-details' : null }));
      } catch (e) {
        if (!alive) return;
        fill(requestLog, errorState('Could not load the request log.', loadRequests));
        showError(e);
      }
    }

    /* what a call that left the machine sent and got back ([gateway] audit_raw_text, admins only) */
    function requestText(text) {
      const counts = text.redactions && typeof text.redactions === 'object' ? text.redactions : {};
      const kinds = Object.keys(counts).filter((k) => Number(counts[k]) > 0);
      const redacted = kinds.reduce((a, k) => a + Number(counts[k]), 0);
      return h('details', { class: 'request-text' },
        h('summary', null,
          h('span', { class: 'request-text-label' }, 'Text sent and answered'),
          redacted ? h('span', { class: 'badge badge-warn' }, plural(redacted, 'redaction')) : null),
        h('div', { class: 'request-text-body' },
          h('div', { class: 'request-text-part' },
            h('div', { class: 'tool-part-label' }, 'Request, as sent upstream'),
            textBlock(text.request, true, 'request-text-request')),
          h('div', { class: 'request-text-part' },
            h('div', { class: 'tool-part-label' }, 'Answer'),
            textBlock(text.answer, false, 'request-text-answer'))),
        h('p', { class: 'request-redactions muted small' },
          kinds.length
            ? 'Redacted before it left: ' + kinds.map((k) => k.replace(/_/g, ' ') + ' ' + num(counts[k])).join(', ') + '.'
            : 'Nothing was redacted.'));
    }

    function textBlock(value, asJson, cls) {
      if (value === null || value === undefined) return h('p', { class: ['muted', 'small', cls] }, 'Not kept.');
      let text = String(value);
      if (asJson) {
        const parsed = parseJson(text);
        if (parsed !== null && typeof parsed === 'object') text = JSON.stringify(parsed, null, 2);
      }
      return h('pre', { class: ['json', 'request-text-pre', cls] }, text);
    }

    async function loadBudgets() {
      fill(budgets, loading());
      try {
        const data = await api('GET', API + '/budgets');
        if (!alive) return;
        fill(budgets, budgetsTable('budgets', Array.isArray(data && data.keys) ? data.keys : [], false));
      } catch (e) {
        if (!alive) return;
        fill(budgets, errorState('Could not load the budgets.', loadBudgets));
        showError(e);
      }
    }

    return {
      mount(container) {
        container.appendChild(h('div', { class: 'page-spend' },
          pageHeader('Spend', 'What requests cost, and what they would have cost elsewhere.', controls),
          period,
          cards,
          h('div', { class: 'chart-grid-2' },
            h('section', { class: 'panel chart-panel' }, h('h2', null, 'Cost per day'), costChart),
            h('section', { class: 'panel chart-panel' }, h('h2', null, 'Requests per day'), requestsChart)),
          h('section', { class: 'panel' }, groupTitle, spendTable, assumptions),
          h('section', { class: 'panel' }, h('h2', null, 'Recent requests'), logNote, requestLog),
          h('section', { class: 'panel' }, h('h2', null, 'Budgets'), budgets)));
        if (resizer) resizer.observe(costChart);
        loadSpend();
        loadRequests();
        loadBudgets();
      },
      unmount() {
        alive = false;
        if (resizer) resizer.disconnect();
      },
    };
  }

  /* ---------- keys ---------- */

  function keysPage() {
    let alive = true;
    let seq = 0;
    const tableHolder = h('div', null, loading());

    async function loadKeys() {
      const mine = ++seq;
      try {
        const data = await api('GET', API + '/keys');
        if (!alive || mine !== seq) return;
        fill(tableHolder, budgetsTable('keys-table', Array.isArray(data && data.keys) ? data.keys : [], true, revoke));
      } catch (e) {
        if (!alive || mine !== seq) return;
        fill(tableHolder, errorState('Could not load the keys.', loadKeys));
        showError(e);
      }
    }

    function revoke(key, btn) {
      const name = String(key.name);
      if (!window.confirm('Revoke the key "' + name + '"? Whatever uses it stops working at once; this cannot be undone.')) return;
      withBusy(btn, async () => {
        try {
          await api('POST', API + '/keys/' + encodeURIComponent(name) + '/revoke', {});
          if (!alive) return;
          toast('Key "' + name + '" revoked');
          await loadKeys();
        } catch (e) {
          showError(e);
        }
      });
    }

    /* the new key form */
    const nameInput = h('input', { id: 'key-name', name: 'name', type: 'text', class: 'input', required: true, autocomplete: 'off', spellcheck: 'false', placeholder: 'e.g. shop-frontend' });
    const scopeBoxes = SCOPES.map(([value, label, hint]) => {
      const box = h('input', { type: 'checkbox', name: 'scope', value, id: 'scope-' + value.replace(/[^a-z]/g, '-'), checked: value === 'inference' });
      return h('label', { class: 'check scope', for: box.id }, box, h('span', null, h('span', { class: 'scope-name' }, label), h('span', { class: 'muted small scope-hint' }, hint)));
    });
    const routesInput = h('input', { id: 'key-routes', name: 'routes', type: 'text', class: 'input', autocomplete: 'off', placeholder: 'all routes' });
    const budgetInput = h('input', { id: 'key-budget', name: 'budget', type: 'number', class: 'input', min: '0', step: 'any', inputmode: 'decimal', placeholder: 'no budget' });
    const periodSelect = h('select', { id: 'key-period', name: 'period', class: 'select' },
      h('option', { value: 'day' }, 'per day'), h('option', { value: 'month' }, 'per month'));
    periodSelect.value = 'month';
    const rpmInput = h('input', { id: 'key-rpm', name: 'requests_per_minute', type: 'number', class: 'input', min: '1', step: '1', inputmode: 'numeric', placeholder: 'no limit' });
    const tpmInput = h('input', { id: 'key-tpm', name: 'tokens_per_minute', type: 'number', class: 'input', min: '1', step: '1', inputmode: 'numeric', placeholder: 'no limit' });
    const tenantInput = h('input', { id: 'key-tenant', name: 'tenant', type: 'text', class: 'input', autocomplete: 'off', placeholder: 'none' });
    const createBtn = h('button', { id: 'key-create', type: 'submit', class: 'btn btn-primary' }, 'Create key');
    const formError = h('div', { id: 'key-error', class: 'form-error', role: 'alert', hidden: true });
    const secretBox = h('div', { id: 'new-key-secret', class: 'secret', hidden: true, 'aria-live': 'polite' });

    function field(label, input, hint) {
      return h('div', { class: 'field' }, h('label', { for: input.id }, label), input, hint ? h('div', { class: 'muted small' }, hint) : null);
    }

    const form = h('form', { id: 'new-key', class: 'key-form', novalidate: true },
      h('div', { class: 'form-grid' },
        field('Name', nameInput, 'Letters, digits, dots, dashes.'),
        field('Tenant', tenantInput, 'Keys of one tenant share their support sessions and usage.'),
        field('Routes', routesInput, 'Comma separated; empty allows every route.'),
        h('div', { class: 'field field-budget' },
          h('label', { for: 'key-budget' }, 'Budget (USD)'),
          h('div', { class: 'input-pair' }, budgetInput, periodSelect),
          h('div', { class: 'muted small' }, 'Empty: no budget.')),
        field('Requests per minute', rpmInput),
        field('Tokens per minute', tpmInput)),
      h('fieldset', { class: 'scopes' }, h('legend', null, 'Scopes'), h('div', { class: 'scope-grid' }, scopeBoxes)),
      formError,
      h('div', { class: 'form-row form-row-end' }, createBtn));

    function fail(text, input) {
      formError.textContent = text;
      formError.hidden = false;
      if (input) input.focus();
      return null;
    }

    function optionalNumber(input, integer, label) {
      const raw = input.value.trim();
      if (input.validity && input.validity.badInput) return { error: label + ' must be a number.' };
      if (!raw) return { value: null };
      const n = Number(raw);
      if (!Number.isFinite(n) || n < 0 || (integer && (!Number.isInteger(n) || n < 1))) {
        return { error: label + (integer ? ' must be a whole number of at least 1.' : ' must be a number of at least 0.') };
      }
      return { value: n };
    }

    function readForm() {
      const name = nameInput.value.trim();
      if (!name) return fail('Give the key a name.', nameInput);
      const scopes = Array.from(form.querySelectorAll('input[name="scope"]:checked')).map((b) => b.value);
      const routes = routesInput.value.split(',').map((r) => r.trim()).filter(Boolean);
      const budget = optionalNumber(budgetInput, false, 'The budget');
      if (budget.error) return fail(budget.error, budgetInput);
      const rpm = optionalNumber(rpmInput, true, 'Requests per minute');
      if (rpm.error) return fail(rpm.error, rpmInput);
      const tpm = optionalNumber(tpmInput, true, 'Tokens per minute');
      if (tpm.error) return fail(tpm.error, tpmInput);
      const tenant = tenantInput.value.trim();
      return {
        name, scopes, routes, budget: budget.value, period: periodSelect.value,
        requests_per_minute: rpm.value, tokens_per_minute: tpm.value, tenant: tenant || null,
      };
    }

    function showSecret(name, secret) {
      const code = h('code', { id: 'new-key-secret-value', class: 'secret-value', 'data-testid': 'secret' }, secret);
      const copy = button({ id: 'copy-secret', class: 'btn btn-sm' }, 'Copy', async () => {
        try {
          if (!navigator.clipboard || !window.isSecureContext) throw new Error('no clipboard');
          await navigator.clipboard.writeText(secret);
          copy.textContent = 'Copied';
        } catch (_) {
          const range = document.createRange();
          range.selectNodeContents(code);
          const sel = window.getSelection();
          sel.removeAllRanges();
          sel.addRange(range);
          copy.textContent = 'Selected: press Ctrl+C';
        }
      });
      const dismiss = button({ class: 'btn btn-quiet btn-sm' }, 'Done', () => {
        secretBox.hidden = true;
        fill(secretBox);
      });
      fill(secretBox,
        h('div', { class: 'secret-head' }, h('strong', null, 'Key "' + name + '" created.'), ' Shown once: copy it now. It cannot be shown again.'),
        h('div', { class: 'secret-row' }, code, copy, dismiss));
      secretBox.hidden = false;
    }

    form.addEventListener('submit', (event) => {
      event.preventDefault();
      formError.hidden = true;
      const body = readForm();
      if (!body) return;
      withBusy(createBtn, async () => {
        try {
          const data = await api('POST', API + '/keys', body);
          if (!alive) return;
          const secret = data && data.key !== undefined ? String(data.key) : '';
          const created = data && data.info && data.info.name ? String(data.info.name) : body.name;
          showSecret(created, secret);
          form.reset();
          periodSelect.value = 'month';
          toast('Key "' + created + '" created');
          await loadKeys();
        } catch (e) {
          fail(e.message, e.param === 'name' ? nameInput : null);
          showError(e);
        }
      });
    });

    return {
      mount(container) {
        container.appendChild(h('div', { class: 'page-keys' },
          pageHeader('Keys', 'API keys: what each may call, how much it may spend, how fast.'),
          h('section', { class: 'panel' }, h('h2', null, 'API keys'), tableHolder),
          h('section', { class: 'panel' }, h('h2', null, 'New key'), secretBox, form)));
        loadKeys();
      },
      unmount() {
        alive = false;
        fill(secretBox);
      },
    };
  }

  /* ---------- shared by the new pages ---------- */

  function sig(n, digits) {
    if (n === null || n === undefined || !Number.isFinite(Number(n))) return '—';
    const v = Number(n);
    if (v === 0) return '0';
    return v.toLocaleString(undefined, { maximumSignificantDigits: digits || 3 });
  }

  function paramCount(n) {
    if (n === null || n === undefined || !Number.isFinite(Number(n)) || Number(n) <= 0) return '—';
    const v = Number(n);
    const scaled = (x, unit) => (x >= 10 ? Math.round(x).toLocaleString() : x.toLocaleString(undefined, { maximumFractionDigits: 1 })) + unit;
    if (v >= 1e12) return scaled(v / 1e12, 'T');
    if (v >= 1e9) return scaled(v / 1e9, 'B');
    if (v >= 1e6) return scaled(v / 1e6, 'M');
    if (v >= 1e3) return scaled(v / 1e3, 'K');
    return Math.round(v).toLocaleString();
  }

  function bytes(n) {
    if (n === null || n === undefined || !Number.isFinite(Number(n))) return '—';
    const v = Number(n);
    if (v >= 1e9) return (v / 1e9).toLocaleString(undefined, { maximumFractionDigits: 2 }) + ' GB';
    if (v >= 1e6) return (v / 1e6).toLocaleString(undefined, { maximumFractionDigits: v >= 1e8 ? 0 : 1 }) + ' MB';
    if (v >= 1e3) return (v / 1e3).toLocaleString(undefined, { maximumFractionDigits: 0 }) + ' kB';
    return Math.round(v).toLocaleString() + ' B';
  }

  /* sizes in binary units, as download tools show them: 12.3 MiB */
  function binaryBytes(n) {
    if (n === null || n === undefined || !Number.isFinite(Number(n))) return '—';
    let v = Number(n);
    if (Math.abs(v) < 1024) return Math.round(v).toLocaleString() + ' B';
    const units = ['KiB', 'MiB', 'GiB', 'TiB'];
    let unit = -1;
    while (Math.abs(v) >= 1024 && unit < units.length - 1) {
      v /= 1024;
      unit += 1;
    }
    return v.toLocaleString(undefined, { minimumFractionDigits: 1, maximumFractionDigits: 1 }) + ' ' + units[unit];
  }

  function ms(v) {
    if (v === null || v === undefined || !Number.isFinite(Number(v))) return h('span', { class: 'muted' }, '—');
    return Math.round(Number(v)).toLocaleString() + ' ms';
  }

  function rate(r) {
    if (r === null || r === undefined || !Number.isFinite(Number(r))) return h('span', { class: 'muted' }, '—');
    return percent(Number(r) * 100);
  }

  function itemHref(id) {
    return '#/recs/item/' + encodeURIComponent(String(id));
  }

  function itemLink(id, title, cls) {
    const text = title === null || title === undefined || title === '' ? String(id) : String(title);
    return h('a', { class: ['item-link', cls], href: itemHref(id), 'data-item': String(id) }, text);
  }

  function chip(text, cls) {
    return h('span', { class: ['chip', cls] }, text);
  }

  function inlineError(err, retry) {
    const message = typeof err === 'string' ? err : (err && err.message) || 'Something went wrong.';
    return h('div', { class: 'notice notice-error', role: 'alert' },
      h('p', null, message),
      retry ? button({ class: 'btn btn-sm' }, 'Try again', retry) : null);
  }

  function recList(id, items, emptyText) {
    const list = Array.isArray(items) ? items : [];
    if (!list.length) return h('ol', { id, class: 'rec-list is-empty' }, h('li', { class: 'muted rec-empty' }, emptyText || 'Nothing to show.'));
    return h('ol', { id, class: 'rec-list' }, list.map((r, i) => h('li', {
      class: 'rec', 'data-testid': 'rec-item', 'data-item': String(r.item),
    },
    h('span', { class: 'rec-rank', 'aria-label': 'Rank' }, String(i + 1)),
    h('div', { class: 'rec-main' },
      itemLink(r.item, r.title, 'rec-title'),
      r.reason ? h('p', { class: 'rec-reason muted' }, String(r.reason)) : null),
    h('span', { class: 'rec-score', title: 'Score' }, sig(r.score, 3)))));
  }

  function selectHas(select, value) {
    return Array.from(select.options).some((o) => o.value === value);
  }

  /* ---------- models and routes ---------- */

  const PRIVACY = {
    local_only: ['local only', 'local'],
    redact: ['redact', 'warn'],
    allow: ['allow', 'upstream'],
  };

  /* a latency bucket's bound: 25 ms, 2.5 s */
  function latencyBound(le) {
    const v = Number(le);
    if (v < 1000) return v.toLocaleString(undefined, { maximumFractionDigits: 1 }) + ' ms';
    return (v / 1000).toLocaleString(undefined, { maximumFractionDigits: 2 }) + ' s';
  }

  /* buckets [{le_ms, count}] (le_ms null: above the last bound), counts per bucket */
  function latencyHistogram(name, buckets) {
    const W = 360;
    const H = 176;
    const m = { t: 18, r: 6, b: 52, l: 34 };
    const pw = W - m.l - m.r;
    const ph = H - m.t - m.b;
    const counts = buckets.map((b) => Math.max(0, Number(b && b.count) || 0));
    const labels = buckets.map((b, i) => {
      const le = b ? b.le_ms : null;
      if (le !== null && le !== undefined && Number.isFinite(Number(le))) return '≤' + latencyBound(le);
      const below = i > 0 && buckets[i - 1] ? buckets[i - 1].le_ms : null;
      return below !== null && below !== undefined && Number.isFinite(Number(below)) ? '>' + latencyBound(below) : 'slower';
    });
    const total = counts.reduce((a, b) => a + b, 0);
    const max = counts.reduce((a, b) => Math.max(a, b), 0);
    const ticks = niceTicks(max, 3, true);
    const top = ticks[ticks.length - 1] || 1;
    const y = (v) => m.t + ph - (v / top) * ph;
    const band = pw / Math.max(1, buckets.length);
    const barWidth = Math.max(2, band * 0.72);
    const title = 'Request durations of ' + name + ': ' + plural(total, 'request');

    const svg = s('svg', {
      class: ['chart', 'latency-histogram'], 'data-deployment': name, viewBox: '0 0 ' + W + ' ' + H,
      preserveAspectRatio: 'xMidYMid meet', role: 'img', 'aria-label': title, width: '100%',
    }, s('title', null, title));

    const grid = s('g', { class: 'chart-grid' });
    for (const t of ticks) {
      grid.appendChild(s('line', { x1: m.l, x2: W - m.r, y1: y(t), y2: y(t), class: t === 0 ? 'axis-line' : 'grid-line' }));
      grid.appendChild(s('text', { x: m.l - 6, y: y(t), 'text-anchor': 'end', 'dominant-baseline': 'middle', class: 'axis-label' }, num(t)));
    }
    svg.appendChild(grid);

    const bars = s('g', { class: 'chart-bars' });
    const xLabels = s('g', { class: 'chart-x' });
    buckets.forEach((b, i) => {
      const cx = m.l + band * (i + 0.5);
      const count = counts[i];
      const height = count > 0 ? Math.max(1, y(0) - y(count)) : 0;
      const le = b && b.le_ms !== null && b.le_ms !== undefined ? String(b.le_ms) : 'inf';
      bars.appendChild(s('rect', {
        x: cx - barWidth / 2, y: y(0) - height, width: barWidth, height, class: 'bar latency-bar',
        'data-count': String(count), 'data-le': le,
      }, s('title', null, labels[i] + ': ' + plural(count, 'request'))));
      if (count > 0) {
        bars.appendChild(s('text', { x: cx, y: y(0) - height - 4, 'text-anchor': 'middle', class: 'bar-value' }, num(count)));
      }
      const ly = H - m.b + 12;
      xLabels.appendChild(s('text', {
        x: cx, y: ly, 'text-anchor': 'end', 'dominant-baseline': 'middle', transform: 'rotate(-45 ' + cx + ' ' + ly + ')', class: 'axis-label',
      }, labels[i]));
    });
    svg.appendChild(bars);
    svg.appendChild(xLabels);
    return svg;
  }

  /* a deployment's latency histogram with its caption, or null when it served nothing in the window */
  function latencyFigure(name, recent) {
    const buckets = recent && Array.isArray(recent.latency_histogram) ? recent.latency_histogram : [];
    if (!buckets.length || !(Number(recent.requests) > 0)) return null;
    return h('figure', { class: 'latency-figure' },
      h('figcaption', { class: 'latency-caption' },
        h('code', null, name),
        h('span', { class: 'muted small' },
          plural(recent.requests, 'request') + ' · p50 ' + duration(recent.p50_ms) + ' · p95 ' + duration(recent.p95_ms))),
      latencyHistogram(name, buckets));
  }

  function latencySection(figures) {
    const shown = figures.filter(Boolean);
    if (!shown.length) return null;
    return h('div', { class: 'latency' },
      h('h3', { class: 'latency-title' }, 'Request durations'),
      h('div', { class: 'latency-grid' }, shown));
  }

  function modelsPage() {
    let alive = true;
    let seq = 0;
    const canPlay = PLAYGROUND_ROLES.includes(state.me.role);

    const refresh = button({ id: 'models-refresh', class: 'btn' }, 'Refresh', (event) => withBusy(event.currentTarget, load));
    const modelsHolder = h('div', null, loading());
    const routesHolder = h('div', { id: 'routes', class: 'routes' }, loading());
    const implicitHolder = h('div', null, loading());
    const windowNote = h('p', { id: 'recent-window', class: 'muted small caption' });

    async function load() {
      const mine = ++seq;
      try {
        const data = await api('GET', API + '/models');
        if (!alive || mine !== seq) return;
        render(data || {});
      } catch (e) {
        if (!alive || mine !== seq) return;
        fill(modelsHolder, errorState('Could not load the models.', load));
        fill(routesHolder, errorState('Could not load the routes.', load));
        fill(implicitHolder);
        showError(e);
      }
    }

    function render(data) {
      const models = Array.isArray(data.models) ? data.models : [];
      const routes = Array.isArray(data.routes) ? data.routes : [];
      const implicit = Array.isArray(data.implicit) ? data.implicit : [];

      fill(modelsHolder, table('models-table', [
        { label: 'Name' }, { label: 'Kind' }, { label: 'Architecture' }, { label: 'Parameters', num: true },
        { label: 'Quantization' }, { label: 'Context', num: true }, { label: 'Size', num: true }, { label: 'State' },
        { label: 'Adapter of' },
      ], models.map((m) => ({
        name: String(m.name),
        testid: 'model',
        cells: [
          h('div', { class: 'model-name' }, h('span', { class: 'model-title' }, h('strong', null, String(m.name)), sourceText(m.source)),
            m.path ? h('span', { class: 'muted small mono path', title: String(m.path) }, String(m.path)) : null),
          chip(String(m.kind || '—'), 'chip-kind'),
          m.architecture ? String(m.architecture) : h('span', { class: 'muted' }, '—'),
          paramCount(m.parameters),
          m.quantization ? String(m.quantization) : h('span', { class: 'muted' }, '—'),
          m.context_length ? num(m.context_length) : h('span', { class: 'muted' }, '—'),
          bytes(m.size_bytes),
          m.loaded ? badge('loaded', 'ok') : badge('not loaded', 'idle'),
          m.base ? String(m.base) : h('span', { class: 'muted' }, '—'),
        ],
      })), { empty: 'No models registered: `hearth pull` fetches one, `hearth models import` adds a file.' }));

      fill(routesHolder, routes.length
        ? routes.map(routeCard)
        : h('p', { class: 'notice notice-muted', id: 'routes-empty' },
          'No [[gateway.routes]] are declared: clients ask for models by name (below).'));

      const implicitPairs = implicit.filter((pair) => Array.isArray(pair));
      fill(implicitHolder, table('implicit-table', [
        { label: 'Deployment' }, { label: 'Requests', num: true }, { label: 'Errors', num: true }, { label: 'Error rate', num: true },
        { label: 'p50', num: true }, { label: 'p95', num: true }, { label: 'Mean TTFT', num: true },
      ], implicitPairs.map((pair) => {
        const recent = pair[1] && typeof pair[1] === 'object' ? pair[1] : {};
        return {
          name: String(pair[0]),
          cells: [h('code', null, String(pair[0])), num(recent.requests), num(recent.errors), rate(recent.error_rate),
            ms(recent.p50_ms), ms(recent.p95_ms), ms(recent.mean_ttft_ms)],
        };
      }), { empty: 'No requests named a model directly in this window.' }),
      latencySection(implicitPairs.map((pair) => latencyFigure(String(pair[0]), pair[1] && typeof pair[1] === 'object' ? pair[1] : {}))));

      windowNote.textContent = data.recent_window
        ? 'Request figures cover ' + sentence(String(data.recent_window))
        : '';

      if (playground) playground.setTargets(models.filter((m) => m.kind === 'chat').map((m) => String(m.name)),
        routes.map((r) => String(r.alias)));
    }

    function sourceText(source) {
      if (!source || typeof source !== 'object' || !source.type) return null;
      const repo = source.repo || source.repository || null;
      return h('span', { class: 'chip chip-quiet chip-source', title: 'Source: ' + pretty(source) },
        String(source.type) + (repo ? ' · ' + String(repo) : ''));
    }

    function routeCard(r) {
      const privacy = PRIVACY[r.privacy] || [String(r.privacy || 'unknown'), 'idle'];
      const deployments = Array.isArray(r.deployments) ? r.deployments : [];
      return h('section', { class: 'route-card', 'data-testid': 'route', 'data-alias': String(r.alias) },
        h('header', { class: 'route-head' },
          h('h3', null, h('code', { class: 'route-alias' }, String(r.alias))),
          h('span', { class: ['badge', 'badge-' + privacy[1]], 'data-privacy': String(r.privacy), title: 'Privacy' }, privacy[0]),
          chip(r.strategy === 'balance' ? 'balance' : r.strategy === 'failover' ? 'failover' : String(r.strategy || '—'), 'chip-quiet')),
        deployments.length ? table(null, [
          { label: 'Deployment' }, { label: 'Where' }, { label: 'Health' }, { label: 'Failures', num: true },
          { label: 'Requests', num: true }, { label: 'Error rate', num: true }, { label: 'p50', num: true },
          { label: 'p95', num: true }, { label: 'Mean TTFT', num: true },
        ], deployments.map((d) => {
          const recent = d.recent && typeof d.recent === 'object' ? d.recent : {};
          const cooling = d.cooling_seconds !== null && d.cooling_seconds !== undefined && Number(d.cooling_seconds) > 0;
          return {
            name: String(d.deployment),
            testid: 'deployment',
            cells: [
              h('div', { class: 'model-name' }, h('code', null, String(d.deployment)),
                d.model && String(d.model) !== String(d.deployment) ? h('span', { class: 'muted small' }, String(d.model)) : null),
              d.local ? badge('local', 'local') : badge('upstream', 'upstream'),
              cooling
                ? h('span', { class: 'badge badge-warn', 'data-health': 'cooling' }, 'cooling down ' + Math.ceil(Number(d.cooling_seconds)) + ' s')
                : h('span', { class: 'badge badge-ok', 'data-health': 'ok' }, 'in rotation'),
              num(d.failures || 0),
              num(recent.requests), rate(recent.error_rate), ms(recent.p50_ms), ms(recent.p95_ms), ms(recent.mean_ttft_ms),
            ],
          };
        })) : h('p', { class: 'muted small' }, 'This route has no deployments.'),
        latencySection(deployments.map((d) => latencyFigure(String(d.deployment), d.recent && typeof d.recent === 'object' ? d.recent : {}))));
    }

    const playground = canPlay ? makePlayground() : null;
    const pulls = makePulls(() => {
      if (alive) load();
    });

    return {
      mount(container) {
        container.appendChild(h('div', { class: 'page-models' },
          pageHeader('Models & routes', 'What is installed, how requests are routed, and how each deployment is doing.', refresh),
          h('section', { class: 'panel' }, h('h2', null, 'Models'), modelsHolder),
          pulls.el,
          h('section', { class: 'panel' }, h('h2', null, 'Routes'), routesHolder),
          h('section', { class: 'panel' }, h('h2', null, 'Models asked for by name'), implicitHolder, windowNote),
          playground ? playground.el : null));
        load();
        pulls.start();
      },
      unmount() {
        alive = false;
        pulls.stop();
        if (playground) playground.stop();
      },
    };
  }

  /* ---------- pulls from the Hugging Face Hub ---------- */

  const PULL_STATES = {
    running: ['pulling', 'active'],
    done: ['done', 'ok'],
    failed: ['failed', 'error'],
    cancelled: ['cancelled', 'idle'],
  };

  /* The "Pull a model" panel: admins start and cancel pulls, everyone watches them live.
     onArrived runs when a pull finishes while the page is open (the models table then has it). */
  function makePulls(onArrived) {
    const isAdmin = state.me.role === 'admin';
    let alive = false;
    let live = null;
    let gotLive = false;
    let mountedAt = 0;
    const items = new Map();
    /* pulls this page started that no snapshot has listed yet */
    const started = new Map();

    const liveText = h('span', { class: 'live-text' }, 'Connecting…');
    const liveStatus = h('span', { id: 'pulls-live', class: 'live', 'data-state': 'connecting', title: 'Live progress' },
      h('span', { class: 'live-dot', 'aria-hidden': 'true' }), liveText);
    const where = h('p', { id: 'pulls-endpoint', class: 'muted small panel-sub' },
      'From the Hugging Face Hub into its cache, which this server reads.');
    const offlineNote = h('p', { id: 'pulls-offline', class: 'notice notice-warn pulls-offline', hidden: true });
    const list = h('ul', { id: 'pulls', class: 'pull-list', 'aria-label': 'Pulls' }, h('li', { class: 'pull-empty' }, loading()));

    const modelInput = h('input', {
      id: 'pull-model', name: 'model', type: 'text', class: 'input', required: true, autocomplete: 'off',
      autocapitalize: 'none', spellcheck: 'false', placeholder: 'Qwen/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M',
    });
    const revisionInput = h('input', {
      id: 'pull-revision', name: 'revision', type: 'text', class: 'input', autocomplete: 'off',
      autocapitalize: 'none', spellcheck: 'false', placeholder: 'main',
    });
    const submit = h('button', { id: 'pull-submit', type: 'submit', class: 'btn btn-primary' }, 'Pull');
    const formError = h('div', { id: 'pull-error', class: 'form-error', role: 'alert', hidden: true });
    const form = isAdmin
      ? h('form', { id: 'pull-form', class: 'pull-form', novalidate: true },
        h('div', { class: 'pull-fields' },
          h('div', { class: 'field pull-field-model' }, h('label', { for: 'pull-model' }, 'Model'), modelInput),
          h('div', { class: 'field pull-field-revision' }, h('label', { for: 'pull-revision' }, 'Revision'), revisionInput),
          h('div', { class: 'pull-field-submit' }, submit)),
        h('p', { class: 'muted small' },
          h('code', null, 'ORG/REPO'), ', ', h('code', null, 'ORG/REPO:QUANT'), ' or ', h('code', null, 'ORG/REPO:FILE.gguf'),
          '; the revision is a branch, tag or commit (', h('code', null, 'main'), ' when empty).'),
        formError)
      : null;

    function setLive(mode) {
      liveStatus.setAttribute('data-state', mode);
      liveText.textContent = mode === 'on' ? 'Live' : mode === 'off' ? 'Offline: retrying' : 'Connecting…';
    }

    function failForm(text, input, param) {
      formError.textContent = text;
      if (param) formError.setAttribute('data-param', String(param));
      else formError.removeAttribute('data-param');
      formError.hidden = false;
      for (const el of [modelInput, revisionInput]) el.removeAttribute('aria-invalid');
      if (input) {
        input.setAttribute('aria-invalid', 'true');
        input.focus();
      }
    }

    function clearForm() {
      formError.hidden = true;
      formError.textContent = '';
      formError.removeAttribute('data-param');
      for (const el of [modelInput, revisionInput]) el.removeAttribute('aria-invalid');
    }

    if (form) {
      form.addEventListener('submit', (event) => {
        event.preventDefault();
        clearForm();
        const model = modelInput.value.trim();
        const revision = revisionInput.value.trim();
        if (!model) {
          failForm('Enter the model to pull: ORG/REPO, ORG/REPO:QUANT or ORG/REPO:FILE.gguf.', modelInput, 'model');
          return;
        }
        const body = { model };
        if (revision) body.revision = revision;
        withBusy(submit, async () => {
          try {
            const data = await api('POST', API + '/models/pulls', body);
            if (!alive) return;
            const pull = data && data.pull && typeof data.pull === 'object' ? data.pull : null;
            /* the live stream may have listed it already, with news newer than this answer */
            if (pull && pull.id !== undefined && pull.id !== null && !items.has(String(pull.id))) {
              started.set(String(pull.id), pull);
              upsert(pull);
            }
            modelInput.value = '';
            revisionInput.value = '';
            toast('Pulling ' + model);
          } catch (e) {
            if (!alive) return;
            const text = e.code === 'too_many_pulls'
              ? 'Too many pulls are running: ' + (e.retryAfter === null ? 'try again later.' : 'try again in ' + e.retryAfter + ' s.')
              : e.message;
            failForm(text, e.param === 'revision' ? revisionInput : e.param === 'model' ? modelInput : null, e.param);
            if (!e.status || e.status >= 500) showError(e);
          }
        });
      });
    }

    function cancel(id, btn) {
      withBusy(btn, async () => {
        try {
          const data = await api('POST', API + '/models/pulls/' + encodeURIComponent(id) + '/cancel', {});
          if (!alive) return;
          if (data && data.pull && typeof data.pull === 'object') upsert(data.pull);
        } catch (e) {
          if (alive) showError(e);
        }
      });
    }

    function pullItem(id) {
      const item = {
        state: null,
        model: h('code', { class: 'pull-model' }),
        badge: h('span', { class: 'badge pull-state' }),
        when: h('span', { class: 'pull-when muted small' }),
        bar: h('progress', { class: 'pull-bar' }),
        amount: h('span', { class: 'pull-bytes small' }),
        files: h('ul', { class: 'pull-files', hidden: true }),
        error: h('div', { class: 'pull-error notice notice-error', hidden: true }),
        served: h('p', { class: 'pull-served', hidden: true }),
        meta: h('p', { class: 'pull-meta muted small', hidden: true }),
      };
      item.cancel = isAdmin
        ? button({ class: 'btn btn-sm btn-danger pull-cancel', hidden: true }, 'Cancel', () => cancel(id, item.cancel))
        : null;
      item.el = h('li', { class: 'pull', 'data-id': id },
        h('div', { class: 'pull-head' }, item.model, item.badge, item.when, item.cancel),
        h('div', { class: 'pull-progress' }, item.bar, item.amount),
        item.files, item.error, item.served, item.meta);
      return item;
    }

    function sizeOf(v) {
      return v === null || v === undefined || !Number.isFinite(Number(v)) ? null : Number(v);
    }

    function updateItem(item, p) {
      const st = String(p.state === undefined || p.state === null ? 'unknown' : p.state);
      const label = PULL_STATES[st] || [st, 'idle'];
      item.el.setAttribute('data-state', st);
      const model = String(p.model === undefined || p.model === null ? '' : p.model);
      const revision = p.revision === undefined || p.revision === null ? '' : String(p.revision);
      item.model.textContent = revision && revision !== 'main' ? model + ' @ ' + revision : model;
      item.badge.textContent = label[0];
      item.badge.setAttribute('class', 'badge pull-state badge-' + label[1]);

      const startedAt = toDate(p.started_at);
      const finishedAt = toDate(p.finished_at);
      if (st === 'running' || !finishedAt) {
        item.when.textContent = startedAt ? 'started ' + ago(p.started_at) : '';
      } else {
        item.when.textContent = dateTime(p.finished_at) +
          (startedAt ? ' · took ' + duration(finishedAt.getTime() - startedAt.getTime()) : '');
      }
      item.when.title = startedAt ? 'Started ' + dateTime(p.started_at) : '';

      const done = sizeOf(p.bytes_done) || 0;
      const total = sizeOf(p.bytes_total);
      if (total !== null && total > 0) {
        item.bar.max = total;
        item.bar.value = Math.min(done, total);
        item.amount.textContent = binaryBytes(done) + ' of ' + binaryBytes(total) +
          ' (' + Math.floor(Math.min(1, done / total) * 100) + ' %)';
      } else if (st === 'running') {
        item.bar.removeAttribute('value');
        item.amount.textContent = done > 0 ? binaryBytes(done) : 'Finding the files…';
      } else {
        item.bar.max = 1;
        item.bar.value = st === 'done' ? 1 : 0;
        item.amount.textContent = done > 0 ? binaryBytes(done) : '';
      }
      item.bar.setAttribute('aria-label', 'Progress of ' + model);

      const files = Array.isArray(p.files) ? p.files.filter((f) => f && typeof f === 'object') : [];
      fill(item.files, files.map((f) => {
        const fileDone = sizeOf(f.bytes_done) || 0;
        const fileTotal = sizeOf(f.bytes_total);
        let text;
        if (f.done) text = binaryBytes(fileTotal === null ? fileDone : fileTotal) + ' · done';
        else if (fileTotal !== null && fileTotal > 0) text = binaryBytes(fileDone) + ' of ' + binaryBytes(fileTotal);
        else text = fileDone > 0 ? binaryBytes(fileDone) : 'waiting';
        return h('li', { class: ['pull-file', f.done && 'is-done'], 'data-file': String(f.file) },
          h('span', { class: 'pull-file-name' }, String(f.file === undefined || f.file === null ? '' : f.file)),
          h('span', { class: 'pull-file-bytes muted' }, text));
      }));
      item.files.hidden = !files.length;

      const error = p.error && typeof p.error === 'object' ? p.error : null;
      if (error) {
        fill(item.error,
          h('p', null, String(error.message || 'The pull failed.')),
          error.code ? h('code', { class: 'small' }, String(error.code)) : null);
      }
      item.error.hidden = !error;

      const name = st === 'done' && p.name !== null && p.name !== undefined ? String(p.name) : null;
      if (name) fill(item.served, 'serve as: ', h('code', { class: 'pull-name' }, name));
      item.served.hidden = !name;

      const facts = [];
      if (st === 'done' && p.commit) facts.push(h('span', { title: String(p.commit) }, 'commit ' + String(p.commit).slice(0, 12)));
      if (st === 'done' && p.path) facts.push(h('span', { class: 'mono pull-path', title: String(p.path) }, String(p.path)));
      fill(item.meta, facts.map((f, i) => (i ? [' · ', f] : f)));
      item.meta.hidden = !facts.length;

      if (item.cancel) item.cancel.hidden = st !== 'running';
    }

    /* Updates (or adds) one pull's item; true when it just arrived, so the models table should change. */
    function apply(p) {
      const id = String(p.id);
      let item = items.get(id);
      if (!item) {
        item = pullItem(id);
        items.set(id, item);
      }
      const before = item.state;
      updateItem(item, p);
      item.state = String(p.state);
      if (item.state !== 'done' || before === 'done') return false;
      if (before !== null) return true;
      /* first seen already done: it may have finished after the models table was read */
      const finished = Number(p.finished_at);
      return Number.isFinite(finished) && finished >= mountedAt - 10;
    }

    function upsert(p) {
      const arrived = apply(p);
      const el = items.get(String(p.id)).el;
      if (!el.isConnected) {
        const empty = list.querySelector('.pull-empty');
        if (empty) empty.remove();
        list.insertBefore(el, list.firstChild);
      }
      if (arrived) onArrived();
    }

    function render(data) {
      if (!data || typeof data !== 'object') return;
      const canPull = data.can_pull === undefined ? isAdmin : data.can_pull === true;
      if (form) form.hidden = !canPull;
      const endpoint = data.endpoint ? String(data.endpoint) : 'the Hugging Face Hub';
      fill(where, 'From ', h('span', { class: 'mono' }, endpoint), ' into the Hugging Face cache this server reads; ',
        'what arrives is listed under Models by its Hub name.', canPull ? '' : ' Only admins start pulls.');
      if (data.offline) {
        fill(offlineNote, h('code', null, 'HF_HUB_OFFLINE'), ' is set: pulls only resolve from the cache, nothing is downloaded.');
      }
      offlineNote.hidden = !data.offline;

      const pulls = (Array.isArray(data.pulls) ? data.pulls : [])
        .filter((p) => p && typeof p === 'object' && p.id !== undefined && p.id !== null);
      const listed = new Set(pulls.map((p) => String(p.id)));
      for (const id of Array.from(started.keys())) if (listed.has(id)) started.delete(id);
      const shown = Array.from(started.values()).reverse().concat(pulls);
      let arrived = false;
      const els = shown.map((p) => {
        if (apply(p)) arrived = true;
        return items.get(String(p.id)).el;
      });
      const keep = new Set(shown.map((p) => String(p.id)));
      for (const id of Array.from(items.keys())) if (!keep.has(id)) items.delete(id);
      if (!els.length) {
        fill(list, h('li', { class: 'pull-empty muted' }, 'No pulls since this server started.'));
      } else {
        const same = list.children.length === els.length && els.every((el, i) => list.children[i] === el);
        if (!same) list.replaceChildren(...els);
      }
      if (arrived) onArrived();
    }

    async function loadPulls() {
      try {
        const data = await api('GET', API + '/models/pulls');
        if (alive && !gotLive) render(data);
      } catch (e) {
        if (!alive || gotLive) return;
        fill(list, h('li', { class: 'pull-empty' }, inlineError('Could not load the pulls.', loadPulls)));
        showError(e);
      }
    }

    function closeLive() {
      if (live) {
        live.close();
        live = null;
      }
    }

    function connectLive() {
      closeLive();
      if (!alive) {
        setLive('off');
        return;
      }
      live = liveStream(API + '/models/pulls/live', {
        setLive,
        isAlive: () => alive,
        events: {
          pulls(event) {
            const data = parseJson(event.data);
            if (!data || typeof data !== 'object') return;
            gotLive = true;
            setLive('on');
            render(data);
          },
        },
        async recover() {
          const data = await api('GET', API + '/models/pulls');
          if (alive) render(data);
        },
        reconnect: () => connectLive(),
      });
    }

    const el = h('section', { id: 'pulls-panel', class: 'panel pulls' },
      h('div', { class: 'panel-head' }, h('h2', null, 'Pull a model'), liveStatus),
      where, offlineNote, form, list);

    return {
      el,
      start() {
        alive = true;
        mountedAt = Date.now() / 1000;
        loadPulls();
        connectLive();
      },
      stop() {
        alive = false;
        closeLive();
      },
    };
  }

  function makePlayground() {
    let history = [];
    let controller = null;

    const select = h('select', { id: 'playground-model', class: 'select', 'aria-label': 'Model or route' },
      h('option', { value: '' }, 'Loading…'));
    select.disabled = true;
    const input = h('textarea', {
      id: 'playground-input', class: 'textarea', rows: '3', placeholder: 'Write a message… (Ctrl+Enter sends)', 'aria-label': 'Message',
    });
    const maxTokens = h('input', { id: 'playground-max-tokens', type: 'number', class: 'input', min: '1', step: '1', value: '128', inputmode: 'numeric' });
    const temperature = h('input', { id: 'playground-temperature', type: 'number', class: 'input', min: '0', max: '2', step: '0.1', value: '0.7', inputmode: 'decimal' });
    const send = h('button', { id: 'playground-send', type: 'submit', class: 'btn btn-primary' }, 'Send');
    const stopBtn = button({ id: 'playground-stop', class: 'btn', disabled: true }, 'Stop', () => {
      if (controller) controller.abort();
    });
    const clearBtn = button({ id: 'playground-clear', class: 'btn btn-quiet' }, 'New conversation', () => {
      if (controller) controller.abort();
      history = [];
      renderEmpty();
      input.focus();
    });
    const formError = h('div', { id: 'playground-error', class: 'form-error', role: 'alert', hidden: true });
    const transcript = h('div', { id: 'playground-transcript', class: 'pg-transcript', 'aria-live': 'polite', tabindex: '0' });

    function renderEmpty() {
      fill(transcript, h('p', { class: 'muted pg-empty' }, 'Pick a model or route, write a message, and the answer streams in here. The whole conversation is sent with each message.'));
    }
    renderEmpty();

    function field(label, control, cls) {
      return h('label', { class: ['control', cls] }, h('span', { class: 'control-label' }, label), control);
    }

    const form = h('form', { id: 'playground-form', class: 'pg-form', novalidate: true },
      h('div', { class: 'pg-settings' },
        field('Model or route', select, 'pg-model'),
        field('Max tokens', maxTokens, 'pg-number'),
        field('Temperature', temperature, 'pg-number')),
      input,
      formError,
      h('div', { class: 'form-row' }, clearBtn, h('div', { class: 'pg-buttons' }, stopBtn, send)));
    submitOnCtrlEnter(input, form);

    function failForm(text, control) {
      formError.textContent = text;
      formError.hidden = false;
      if (control) control.focus();
    }

    function setTargets(chatModels, aliases) {
      const previous = select.value || prefs.playgroundModel || '';
      select.replaceChildren();
      if (chatModels.length) select.appendChild(h('optgroup', { label: 'Chat models' }, chatModels.map((n) => h('option', { value: n }, n))));
      if (aliases.length) select.appendChild(h('optgroup', { label: 'Routes' }, aliases.map((n) => h('option', { value: n }, n))));
      if (!chatModels.length && !aliases.length) {
        select.appendChild(h('option', { value: '' }, 'No chat model or route'));
        select.disabled = true;
        return;
      }
      select.disabled = !!controller;
      if (previous && selectHas(select, previous)) select.value = previous;
    }

    select.addEventListener('change', () => savePref('playgroundModel', select.value));

    function turn(role, text) {
      const body = h('div', { class: 'pg-content' }, text || '');
      const el = h('div', { class: ['pg-turn', 'pg-' + role], 'data-role': role },
        h('div', { class: 'speaker' }, role === 'user' ? 'You' : 'Assistant'), body);
      return { el, body };
    }

    function scrollDown() {
      transcript.scrollTop = transcript.scrollHeight;
    }

    function busy(on) {
      send.disabled = on;
      stopBtn.disabled = !on;
      select.disabled = on || !select.options.length || !select.value;
      send.classList.toggle('is-busy', on);
    }

    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      if (controller) return;
      formError.hidden = true;
      clearError();
      const model = select.value;
      const text = input.value.trim();
      if (!model) return failForm('There is no chat model or route to talk to.', select);
      if (!text) return failForm('Write a message first.', input);
      const max = Number(maxTokens.value);
      if (maxTokens.validity.badInput || !Number.isInteger(max) || max < 1) return failForm('Max tokens must be a whole number of at least 1.', maxTokens);
      const temp = Number(temperature.value);
      if (temperature.validity.badInput || temperature.value.trim() === '' || !Number.isFinite(temp) || temp < 0 || temp > 2) {
        return failForm('Temperature must be a number from 0 to 2.', temperature);
      }

      if (!history.length) fill(transcript);
      const messages = history.concat([{ role: 'user', content: text }]);
      const user = turn('user', text);
      const answer = turn('assistant', '');
      answer.el.classList.add('is-streaming');
      const reasoning = h('div', { class: 'pg-reasoning', hidden: true });
      const meta = h('div', { class: 'pg-meta muted small' }, 'Waiting for the first token…');
      answer.el.insertBefore(reasoning, answer.body);
      answer.el.appendChild(meta);
      transcript.append(user.el, answer.el);
      input.value = '';
      scrollDown();

      const ctl = new AbortController();
      controller = ctl;
      busy(true);
      let content = '';
      let thought = '';
      let usage = null;
      let finish = null;
      let firstAt = null;
      const started = performance.now();
      let outcome = 'done';
      let failure = null;
      try {
        const complete = await streamPost(API + '/v1/chat/completions', {
          model, messages, stream: true, max_tokens: max, temperature: temp, stream_options: { include_usage: true },
        }, ctl.signal, (chunk) => {
          if (chunk.usage && typeof chunk.usage === 'object') usage = chunk.usage;
          const choice = Array.isArray(chunk.choices) && chunk.choices.length ? chunk.choices[0] : null;
          if (!choice) return;
          const delta = choice.delta || choice.message || {};
          if (typeof delta.reasoning_content === 'string' && delta.reasoning_content) {
            thought += delta.reasoning_content;
            reasoning.textContent = thought;
            reasoning.hidden = false;
          }
          if (typeof delta.content === 'string' && delta.content) {
            content += delta.content;
            answer.body.textContent = content;
          }
          if ((delta.content || delta.reasoning_content) && firstAt === null) {
            firstAt = performance.now();
            meta.textContent = 'Streaming…';
          }
          if (choice.finish_reason) finish = String(choice.finish_reason);
          scrollDown();
        });
        if (!complete) outcome = 'cut';
      } catch (e) {
        if (isAbort(e)) outcome = 'stopped';
        else {
          outcome = 'failed';
          failure = e;
        }
      } finally {
        if (controller === ctl) controller = null;
        busy(false);
        answer.el.classList.remove('is-streaming');
      }

      if (outcome === 'failed' && !content) {
        answer.el.classList.add('pg-failed');
        fill(answer.body, h('span', { class: 'pg-error' }, failure.message));
        meta.textContent = 'Not kept in the conversation.';
        user.el.classList.add('pg-dropped');
        if (!input.value) input.value = text;
        showError(failure);
        scrollDown();
        return;
      }
      if (!content && !thought) answer.body.appendChild(h('span', { class: 'muted' }, outcome === 'stopped' ? '(stopped before any text)' : '(empty answer)'));
      history = messages.concat([{ role: 'assistant', content }]);

      const parts = [];
      if (usage) {
        parts.push(num(usage.prompt_tokens || 0) + ' tokens in', num(usage.completion_tokens || 0) + ' out');
        const details = usage.completion_tokens_details;
        if (details && details.reasoning_tokens) parts.push(num(details.reasoning_tokens) + ' thinking');
      }
      if (firstAt !== null) parts.push('first token ' + duration(firstAt - started));
      parts.push(duration(performance.now() - started));
      if (finish === 'length') parts.push('cut at max tokens');
      else if (finish && finish !== 'stop') parts.push('ended: ' + finish);
      if (outcome === 'stopped') parts.push('stopped');
      if (outcome === 'cut') parts.push('the stream ended early');
      if (outcome === 'failed') {
        parts.push('failed: ' + failure.message);
        answer.el.classList.add('pg-failed');
        showError(failure);
      }
      meta.textContent = parts.join(' · ');
      scrollDown();
    });

    const el = h('section', { id: 'playground', class: 'panel playground' },
      h('div', { class: 'panel-head' },
        h('h2', null, 'Playground'),
        h('p', { class: 'muted small' }, 'Requests go through the gateway like any client’s and count in Spend.')),
      transcript,
      form);

    return {
      el,
      setTargets,
      stop() {
        if (controller) controller.abort();
      },
    };
  }

  /* ---------- recommendations ---------- */

  const PARAM_NAMES = { lambda: 'λ', regularization: 'reg', neighbours: 'neighbours', neighbors: 'neighbours' };
  const PARAM_HIDDEN = new Set(['model', 'seed', 'iterations', 'cg_steps']);

  function paramValue(v) {
    if (typeof v === 'number') return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(6)));
    if (typeof v === 'string') return v;
    return JSON.stringify(v);
  }

  function modelKind(params) {
    return params && typeof params === 'object' && params.model !== undefined && params.model !== null ? String(params.model) : 'model';
  }

  function paramBits(params) {
    if (!params || typeof params !== 'object') return [];
    return Object.keys(params).filter((k) => !PARAM_HIDDEN.has(k)).map((k) => {
      const label = PARAM_NAMES[k] || k;
      return label + '=' + paramValue(params[k]);
    });
  }

  function modelLabel(params) {
    if (!params || typeof params !== 'object') return '—';
    return [String(params.model || 'model')].concat(paramBits(params)).join(' ');
  }

  function modelLabelFull(params) {
    if (!params || typeof params !== 'object') return '';
    return Object.keys(params).map((k) => k + '=' + paramValue(params[k])).join(', ');
  }

  function sameParams(a, b) {
    if (!a || !b || typeof a !== 'object' || typeof b !== 'object') return false;
    const ka = Object.keys(a);
    const kb = Object.keys(b);
    if (ka.length !== kb.length) return false;
    return ka.every((k) => Object.prototype.hasOwnProperty.call(b, k) &&
      (typeof a[k] === 'number' && typeof b[k] === 'number' ? Math.abs(a[k] - b[k]) < 1e-9 : JSON.stringify(a[k]) === JSON.stringify(b[k])));
  }

  function candidatesOf(report) {
    const list = report && Array.isArray(report.candidates) ? report.candidates : [];
    return list.filter((c) => Array.isArray(c) && c.length >= 2 && Number.isFinite(Number(c[1])))
      .map((c) => ({ params: c[0], score: Number(c[1]) }));
  }

  /* per-candidate metrics on the validation split (reports written before they were kept have none) */
  function validationOf(report) {
    const list = report && Array.isArray(report.validation) ? report.validation : [];
    return list.filter((v) => v && typeof v === 'object' && v.params && typeof v.params === 'object' && Number.isFinite(Number(v.ndcg)));
  }

  function chosenScore(report) {
    const candidates = candidatesOf(report);
    if (!candidates.length) return null;
    const same = candidates.filter((c) => sameParams(c.params, report.chosen));
    const pool = same.length ? same : candidates;
    return pool.reduce((best, c) => Math.max(best, c.score), -Infinity);
  }

  /* rows: {label, value, highlight?, muted?, tip?, dataValue?} */
  function hbarChart(opts) {
    const { id, title, rows, format } = opts;
    const axisFormat = opts.axisFormat || format;
    const W = Math.max(280, Math.round(opts.width || 720));
    const narrow = W < 560;
    const labelW = narrow ? 0 : Math.min(270, Math.round(W * 0.36));
    const m = { t: 6, r: 58, b: 26, l: narrow ? 4 : labelW + 10 };
    const rowH = narrow ? 32 : 20;
    const barH = narrow ? 11 : 13;
    const n = rows.length;
    const H = m.t + n * rowH + m.b;
    const pw = W - m.l - m.r;
    const max = rows.reduce((a, r) => Math.max(a, r.value), 0);
    const ticks = niceTicks(max, narrow ? 3 : 5, false);
    const top = ticks[ticks.length - 1] || 1;
    const x = (v) => m.l + (Math.max(0, v) / top) * pw;

    const svg = s('svg', {
      id, class: ['chart', 'hbar-chart', opts.cls], viewBox: '0 0 ' + W + ' ' + H, preserveAspectRatio: 'xMidYMid meet',
      role: 'img', 'aria-label': title, width: '100%',
    }, s('title', null, title));

    const grid = s('g', { class: 'chart-grid' });
    for (const t of ticks) {
      grid.appendChild(s('line', { x1: x(t), x2: x(t), y1: m.t, y2: H - m.b, class: t === 0 ? 'axis-line' : 'grid-line' }));
      grid.appendChild(s('text', { x: x(t), y: H - m.b + 16, 'text-anchor': 'middle', class: 'axis-label' }, axisFormat(t)));
    }
    svg.appendChild(grid);

    rows.forEach((r, i) => {
      const y0 = m.t + i * rowH;
      const barY = narrow ? y0 + 16 : y0 + (rowH - barH) / 2;
      const g = s('g', {
        class: ['hbar', r.highlight && 'hbar-chosen', r.muted && 'hbar-muted'], 'data-testid': opts.testid || 'candidate', 'data-score': String(r.value),
      },
        s('title', null, r.tip || (r.label + ': ' + format(r.value))));
      g.appendChild(s('rect', { x: m.l, y: y0 + 1, width: pw, height: rowH - 2, class: 'hbar-hit' }));
      g.appendChild(s('text', {
        x: narrow ? m.l : m.l - 8, y: narrow ? y0 + 11 : barY + barH / 2,
        'text-anchor': narrow ? 'start' : 'end', 'dominant-baseline': 'middle', class: 'hbar-label',
      }, r.label));
      const w = Math.max(1, x(r.value) - m.l);
      g.appendChild(s('rect', {
        x: m.l, y: barY, width: w, height: barH, rx: 2, class: ['hbar-bar', opts.barClass], 'data-value': r.dataValue === undefined ? null : r.dataValue,
      }));
      g.appendChild(s('text', { x: m.l + w + 5, y: barY + barH / 2, 'dominant-baseline': 'middle', class: 'hbar-value' }, format(r.value)));
      svg.appendChild(g);
    });
    return svg;
  }

  function recsPage() {
    let alive = true;
    let versionsSeq = 0;
    let viewSeq = 0;
    let current = { sub: null, id: null };
    let evalReport = null;
    let chartWidth = 0;
    let metricsVersion = null;
    let plotWidth = 0;
    let assistantCtl = null;

    /* lookups (always shown) */
    const userInput = h('input', { id: 'recs-user', type: 'text', class: 'input', placeholder: 'e.g. 1', autocomplete: 'off', spellcheck: 'false', 'aria-label': 'User id' });
    const userGo = h('button', { id: 'recs-user-go', type: 'submit', class: 'btn btn-primary' }, 'Show');
    const userForm = h('form', { id: 'recs-user-form', class: 'inline-form', novalidate: true },
      h('label', { class: 'inline-label', for: 'recs-user' }, 'Shopper'), userInput, userGo);
    userForm.addEventListener('submit', (event) => {
      event.preventDefault();
      const id = userInput.value.trim();
      if (!id) {
        showError('Enter a user id.');
        userInput.focus();
        return;
      }
      const hash = '#/recs/user/' + encodeURIComponent(id);
      if (location.hash !== hash) location.hash = hash;
      else show({ sub: 'user', id }, true);
    });
    const itemInput = h('input', { id: 'recs-item-id', type: 'text', class: 'input', placeholder: 'e.g. 50', autocomplete: 'off', spellcheck: 'false', 'aria-label': 'Item id' });
    const itemGo = h('button', { id: 'recs-item-go', type: 'submit', class: 'btn' }, 'Show');
    const itemForm = h('form', { id: 'recs-item-form', class: 'inline-form', novalidate: true },
      h('label', { class: 'inline-label', for: 'recs-item-id' }, 'Item'), itemInput, itemGo);
    itemForm.addEventListener('submit', (event) => {
      event.preventDefault();
      const id = itemInput.value.trim();
      if (!id) {
        showError('Enter an item id.');
        itemInput.focus();
        return;
      }
      const hash = itemHref(id);
      if (location.hash !== hash) location.hash = hash;
      else show({ sub: 'item', id }, true);
    });
    const lookups = h('div', { class: 'panel lookups' }, userForm, itemForm);

    /* overview: versions and the evaluation chart */
    const versionsHolder = h('div', null, loading());
    const chartHolder = h('div', { class: 'eval-chart' });
    const chartTitle = h('h3', { class: 'chart-title' });
    const chartPanel = h('section', { class: 'panel', hidden: true }, chartTitle, chartHolder);

    /* the current version's candidates on the validation split: every metric, and the best of each kind */
    const metricsTitle = h('h2', null, 'Validation metrics');
    const metricsSub = h('p', { class: 'muted small panel-sub' });
    const plotTitle = h('h3', { class: 'chart-title' });
    const plotHolder = h('div', { class: 'eval-chart recs-plot' });
    const metricsHolder = h('div', { class: 'recs-metrics-wrap' });
    const metricsPanel = h('section', { id: 'recs-metrics-panel', class: 'panel', hidden: true },
      metricsTitle, metricsSub, plotTitle, plotHolder, metricsHolder);

    async function loadVersions() {
      const mine = ++versionsSeq;
      fill(versionsHolder, loading());
      try {
        const data = await api('GET', API + '/recs/versions');
        if (!alive || mine !== versionsSeq) return;
        renderVersions(Array.isArray(data && data.versions) ? data.versions : []);
      } catch (e) {
        if (!alive || mine !== versionsSeq) return;
        fill(versionsHolder, errorState(e.code === 'not_trained' ? e.message : 'Could not load the model versions.', loadVersions));
        chartPanel.hidden = true;
        metricsPanel.hidden = true;
        metricsVersion = null;
        showError(e);
      }
    }

    function renderVersions(versions) {
      if (!versions.length) {
        fill(versionsHolder, h('p', { id: 'recs-versions-empty', class: 'notice notice-muted' },
          'No model trained yet — run ', h('code', null, 'hearth recs train'), '.'));
        chartPanel.hidden = true;
        evalReport = null;
        metricsPanel.hidden = true;
        metricsVersion = null;
        return;
      }
      fill(versionsHolder, table('recs-versions', [
        { label: 'Version', num: true }, { label: h('span', { class: 'sr-only' }, 'Current') }, { label: 'Trained' }, { label: 'Model' }, { label: 'Users', num: true },
        { label: 'Items', num: true }, { label: 'Interactions', num: true }, { label: 'Training', num: true },
        { label: 'Validation NDCG', num: true },
      ], versions.map((v) => {
        const r = v.report && typeof v.report === 'object' ? v.report : null;
        const score = r ? chosenScore(r) : null;
        return {
          cls: v.current ? 'current' : null,
          name: String(v.version),
          testid: 'recs-version',
          cells: [
            num(v.version),
            v.current ? badge('current', 'ok') : null,
            r ? h('span', { title: dateTime(r.trained_at) }, dateTime(r.trained_at)) : h('span', { class: 'muted' }, 'no report'),
            r ? h('code', { title: modelLabelFull(r.chosen) }, modelLabel(r.chosen)) : '—',
            r ? num(r.users) : '—',
            r ? num(r.items) : '—',
            r ? num(r.interactions) : '—',
            r && Number.isFinite(Number(r.seconds)) ? duration(Number(r.seconds) * 1000) : '—',
            score === null ? h('span', { class: 'muted' }, '—') : h('span', { title: 'NDCG@' + (r.k || '?') }, score.toFixed(4) + (r.k ? ' @' + r.k : '')),
          ],
        };
      })));
      const cur = versions.find((v) => v.current) || null;
      evalReport = cur && cur.report && candidatesOf(cur.report).length ? cur.report : null;
      chartPanel.hidden = !evalReport;
      renderChart();
      const report = cur && cur.report && typeof cur.report === 'object' ? cur.report : null;
      metricsVersion = report && (validationOf(report).length || candidatesOf(report).length) ? { version: cur.version, report } : null;
      metricsPanel.hidden = !metricsVersion;
      renderMetrics();
    }

    function renderMetrics() {
      if (!metricsVersion || metricsPanel.hidden || !plotHolder.isConnected) return;
      const r = metricsVersion.report;
      const k = r.k || 10;
      const validation = validationOf(r);
      metricsTitle.textContent = 'Validation metrics of version ' + num(metricsVersion.version);
      fill(metricsSub, validation.length
        ? 'Every candidate scored on the held-out validation split at K = ' + k + ', best NDCG first; the one marked was published. ' +
          'Coverage is the share of the catalogue that appears in some user’s top ' + k + '.'
        : 'This version was trained before hearth kept every metric: only NDCG@' + k + ' is known.');
      renderPlot();

      if (!validation.length) {
        fill(metricsHolder);
        return;
      }
      const fixed = (v) => (v === null || v === undefined || !Number.isFinite(Number(v)) ? '—' : Number(v).toFixed(4));
      const share = (v) => (v === null || v === undefined || !Number.isFinite(Number(v)) ? '—' : (Number(v) * 100).toFixed(1) + ' %');
      let chosen = null;
      for (const v of validation) {
        if (sameParams(v.params, r.chosen) && (!chosen || Number(v.ndcg) > Number(chosen.ndcg))) chosen = v;
      }
      const rows = validation.slice().sort((a, b) => Number(b.ndcg) - Number(a.ndcg));
      fill(metricsHolder, table('recs-metrics', [
        { label: 'Model' }, { label: 'Parameters' },
        { label: 'NDCG@' + k, num: true, cls: 'ndcg' }, { label: 'Precision@' + k, num: true, cls: 'precision' },
        { label: 'Recall@' + k, num: true, cls: 'recall' }, { label: 'HR@' + k, num: true, cls: 'hit-rate' },
        { label: 'MAP@' + k, num: true, cls: 'map' }, { label: 'Coverage', num: true, cls: 'coverage' },
        { label: 'Users', num: true, cls: 'users' },
      ], rows.map((v) => {
        const isChosen = v === chosen;
        const bits = paramBits(v.params);
        return {
          cls: isChosen ? 'chosen' : null,
          attrs: { 'data-model': modelKind(v.params), 'data-chosen': isChosen ? 'true' : null },
          cells: [
            h('span', { class: 'metric-model' }, h('code', null, modelKind(v.params)), isChosen ? badge('chosen', 'ok') : null),
            bits.length
              ? h('code', { class: 'metric-params', title: modelLabelFull(v.params) }, bits.join(' '))
              : h('span', { class: 'muted' }, '—'),
            fixed(v.ndcg), fixed(v.precision), fixed(v.recall), fixed(v.hit_rate), fixed(v.map), share(v.coverage), num(v.users),
          ],
        };
      })));
    }

    /* each model kind's best candidate, as `hearth recs eval --plot` draws it */
    function renderPlot() {
      if (!metricsVersion || metricsPanel.hidden || !plotHolder.isConnected) return;
      const r = metricsVersion.report;
      const k = r.k || 10;
      const validation = validationOf(r);
      const scored = validation.length
        ? validation.map((v) => ({ params: v.params, ndcg: Number(v.ndcg) }))
        : candidatesOf(r).map((c) => ({ params: c.params, ndcg: c.score }));
      const best = new Map();
      for (const c of scored) {
        const kind = modelKind(c.params);
        const seen = best.get(kind);
        if (!seen || c.ndcg > seen.ndcg) best.set(kind, { kind, ndcg: c.ndcg, params: c.params });
      }
      const chosenKind = r.chosen && typeof r.chosen === 'object' ? modelKind(r.chosen) : null;
      const kinds = Array.from(best.values()).sort((a, b) => b.ndcg - a.ndcg);
      const title = 'NDCG@' + k + ' on the validation split';
      plotTitle.textContent = title;
      plotWidth = plotHolder.clientWidth;
      fill(plotHolder, hbarChart({
        title, cls: 'recs-eval-plot', barClass: 'bar', testid: 'model-kind',
        rows: kinds.map((x) => ({
          label: x.kind,
          value: x.ndcg,
          dataValue: x.ndcg.toFixed(4),
          highlight: x.kind === chosenKind,
          muted: x.kind === 'off-the-shelf' || x.kind === 'popularity',
          tip: x.kind + ' — NDCG@' + k + ' ' + x.ndcg.toFixed(4) + ' (its best: ' + modelLabel(x.params) + ')',
        })),
        format: (v) => v.toFixed(4),
        axisFormat: (v) => v.toFixed(v === 0 ? 0 : 2),
        width: plotWidth,
      }));
    }

    function renderChart() {
      if (!evalReport || chartPanel.hidden || !chartHolder.isConnected) return;
      const r = evalReport;
      const k = r.k || 10;
      const title = 'Validation NDCG@' + k + ' of every candidate';
      chartTitle.textContent = title;
      const chosen = chosenScore(r);
      let marked = false;
      const rows = candidatesOf(r).map((c) => {
        const isChosen = !marked && sameParams(c.params, r.chosen) && c.score === chosen;
        if (isChosen) marked = true;
        return { params: c.params, value: c.score, highlight: isChosen };
      });
      if (!marked) {
        const same = rows.filter((x) => sameParams(x.params, r.chosen));
        if (same.length) same[0].highlight = true;
      }
      rows.sort((a, b) => b.value - a.value);
      chartWidth = chartHolder.clientWidth;
      fill(chartHolder,
        hbarChart({
          id: 'recs-eval-chart', title,
          rows: rows.map((x) => ({
            label: modelLabel(x.params) + (x.highlight ? '  ★ chosen' : ''),
            value: x.value,
            highlight: x.highlight,
            tip: modelLabelFull(x.params) + ' — NDCG@' + k + ' ' + x.value.toFixed(4) + (x.highlight ? ' (chosen)' : ''),
          })),
          format: (v) => v.toFixed(v === 0 ? 0 : 2),
          width: chartWidth,
        }),
        h('p', { class: 'muted small caption' },
          'Each bar is one candidate model scored on held-out interactions; the highlighted one was published. ',
          r.seconds !== undefined ? 'Training and evaluation took ' + duration(Number(r.seconds) * 1000) + '.' : ''));
    }

    const resizer = typeof ResizeObserver === 'function'
      ? new ResizeObserver(() => {
        if (evalReport && Math.abs(chartHolder.clientWidth - chartWidth) > 16) renderChart();
        if (metricsVersion && Math.abs(plotHolder.clientWidth - plotWidth) > 16) renderPlot();
      })
      : null;

    /* search */
    const searchInput = h('input', { id: 'recs-search', type: 'search', class: 'input', placeholder: 'e.g. space adventure', autocomplete: 'off', 'aria-label': 'Search the catalogue' });
    const searchGo = h('button', { id: 'recs-search-go', type: 'submit', class: 'btn btn-primary' }, 'Search');
    const searchResults = h('div', { id: 'recs-search-results', class: 'search-results' });
    const searchForm = h('form', { id: 'recs-search-form', class: 'inline-form', novalidate: true }, searchInput, searchGo);
    searchForm.addEventListener('submit', (event) => {
      event.preventDefault();
      const query = searchInput.value.trim();
      clearError();
      withBusy(searchGo, async () => {
        fill(searchResults, loading('Searching…'));
        try {
          const data = await api('POST', API + '/v1/search', { query, n: 10 });
          if (!alive) return;
          const list = Array.isArray(data && data.data) ? data.data : [];
          fill(searchResults,
            h('p', { class: 'muted small' },
              num(list.length) + (list.length === 1 ? ' match' : ' matches') + ' · ' + (data && data.hybrid ? 'text and embedding similarity' : 'text match only')),
            recList('recs-search-list', list, 'Nothing in the catalogue matches.'));
        } catch (e) {
          if (!alive) return;
          fill(searchResults, inlineError(e));
          showError(e);
        }
      });
    });
    const searchPanel = h('section', { class: 'panel' },
      h('h2', null, 'Search the catalogue'), searchForm, searchResults);

    /* shopping assistant */
    const wish = h('textarea', { id: 'assistant-wish', class: 'textarea', rows: '2', placeholder: 'e.g. a funny film for a rainy evening, nothing scary', 'aria-label': 'What the shopper wants' });
    const assistantGo = h('button', { id: 'assistant-go', type: 'submit', class: 'btn btn-primary' }, 'Ask');
    const assistantStop = button({ id: 'assistant-stop', class: 'btn', disabled: true }, 'Stop', () => {
      if (assistantCtl) assistantCtl.abort();
    });
    const constraintsEl = h('div', { id: 'assistant-constraints', class: 'chips assistant-constraints', hidden: true });
    const candidatesEl = h('div', { id: 'assistant-items', class: 'assistant-items', hidden: true });
    const answerEl = h('div', { id: 'assistant-answer', class: 'assistant-answer', 'aria-live': 'polite', hidden: true });
    const assistantMeta = h('p', { id: 'assistant-meta', class: 'muted small', hidden: true });
    const assistantForm = h('form', { id: 'assistant-form', class: 'assistant-form', novalidate: true },
      wish, h('div', { class: 'form-row form-row-end' }, assistantStop, assistantGo));
    submitOnCtrlEnter(wish, assistantForm);

    function renderConstraints(event) {
      const w = event.wish && typeof event.wish === 'object' ? event.wish : {};
      const chips = [];
      if (w.category) chips.push(chip('category: ' + String(w.category)));
      const hasMin = w.min_price !== null && w.min_price !== undefined;
      const hasMax = w.max_price !== null && w.max_price !== undefined;
      if (hasMin && hasMax) chips.push(chip('price: ' + usd(w.min_price) + ' – ' + usd(w.max_price)));
      else if (hasMin) chips.push(chip('price ≥ ' + usd(w.min_price)));
      else if (hasMax) chips.push(chip('price ≤ ' + usd(w.max_price)));
      for (const word of Array.isArray(w.must_have) ? w.must_have : []) chips.push(chip('must have: ' + String(word)));
      if (!chips.length) chips.push(chip('no constraints', 'chip-quiet'));
      fill(constraintsEl, h('span', { class: 'chips-label muted small' }, 'Understood as'), chips,
        event.relaxed ? h('span', { class: 'badge badge-warn', title: 'Nothing matched all of them, so some were dropped' }, 'relaxed: nothing matched all') : null);
      constraintsEl.hidden = false;
    }

    function renderCandidates(items, named) {
      const list = Array.isArray(items) ? items : [];
      const chosen = new Set((named || []).map(String));
      fill(candidatesEl,
        h('div', { class: 'chips-label muted small' }, named ? 'Candidates (named in the answer are marked)' : 'Candidates offered to the model'),
        list.length
          ? h('ul', { class: 'assistant-list' }, list.map((it) => h('li', {
            class: ['assistant-item', chosen.has(String(it.item)) && 'named'], 'data-testid': 'assistant-item', 'data-item': String(it.item),
          },
          itemLink(it.item, it.title),
          it.price !== null && it.price !== undefined ? h('span', { class: 'muted small' }, ' · ' + usd(it.price)) : null,
          it.reason ? h('span', { class: 'muted small' }, ' — ' + String(it.reason)) : null,
          chosen.has(String(it.item)) ? h('span', { class: 'badge badge-ok' }, 'named') : null)))
          : h('p', { class: 'muted' }, 'No catalogue item matched.'));
      candidatesEl.hidden = false;
    }

    assistantForm.addEventListener('submit', async (event) => {
      event.preventDefault();
      if (assistantCtl) return;
      for (const old of assistantPanel.querySelectorAll('.assistant-error')) old.remove();
      clearError();
      const text = wish.value.trim();
      const ctl = new AbortController();
      assistantCtl = ctl;
      assistantGo.disabled = true;
      assistantGo.classList.add('is-busy');
      assistantStop.disabled = false;
      fill(constraintsEl);
      constraintsEl.hidden = true;
      fill(candidatesEl);
      candidatesEl.hidden = true;
      answerEl.textContent = '';
      answerEl.hidden = false;
      answerEl.classList.add('is-streaming');
      assistantMeta.hidden = false;
      assistantMeta.textContent = 'Reading the wish…';
      let answer = '';
      let candidates = [];
      let usage = null;
      let named = null;
      let outcome = 'done';
      const started = performance.now();
      try {
        const complete = await streamPost(API + '/v1/assistant', { wish: text }, ctl.signal, (ev) => {
          if (!alive) return;
          switch (ev.type) {
            case 'constraints':
              renderConstraints(ev);
              assistantMeta.textContent = 'Looking in the catalogue…';
              break;
            case 'items':
              candidates = Array.isArray(ev.items) ? ev.items : [];
              renderCandidates(candidates, null);
              assistantMeta.textContent = 'Writing the answer…';
              break;
            case 'delta':
              if (typeof ev.text === 'string') {
                answer += ev.text;
                answerEl.textContent = answer;
              }
              break;
            case 'done':
              if (Array.isArray(ev.items)) named = ev.items.map(String);
              if (ev.usage && typeof ev.usage === 'object') usage = ev.usage;
              break;
            default:
              /* a whole answer (no stream) */
              if (ev.object === 'assistant.answer') {
                if (ev.constraints) renderConstraints({ wish: ev.constraints, relaxed: ev.relaxed });
                if (Array.isArray(ev.candidates)) candidates = ev.candidates;
                if (Array.isArray(ev.items)) named = ev.items.map(String);
                if (typeof ev.answer === 'string') answer = ev.answer;
                answerEl.textContent = answer;
                if (ev.usage) usage = ev.usage;
              }
          }
        });
        if (!complete) outcome = 'cut';
      } catch (e) {
        if (isAbort(e)) outcome = 'stopped';
        else {
          outcome = 'failed';
          if (alive) {
            if (!answer) answerEl.hidden = true;
            assistantMeta.textContent = '';
            assistantMeta.hidden = true;
            answerEl.parentNode.insertBefore(h('div', { class: 'assistant-error' }, inlineError(e)), answerEl);
          }
          showError(e);
        }
      } finally {
        if (assistantCtl === ctl) assistantCtl = null;
        assistantGo.disabled = false;
        assistantGo.classList.remove('is-busy');
        assistantStop.disabled = true;
        answerEl.classList.remove('is-streaming');
      }
      if (!alive || outcome === 'failed') return;
      if (named) renderCandidates(candidates, named);
      if (!answer) answerEl.textContent = outcome === 'stopped' ? '(stopped before any text)' : '(no answer)';
      const parts = [];
      if (named) parts.push(named.length ? plural(named.length, 'item') + ' named' : 'no item named');
      if (usage) parts.push(num(usage.prompt_tokens || 0) + ' tokens in', num(usage.completion_tokens || 0) + ' out');
      parts.push(duration(performance.now() - started));
      if (outcome === 'stopped') parts.push('stopped');
      if (outcome === 'cut') parts.push('the stream ended early');
      assistantMeta.textContent = parts.join(' · ');
    });
    const assistantPanel = h('section', { class: 'panel' },
      h('h2', null, 'Shopping assistant'),
      h('p', { class: 'muted small panel-sub' }, 'A wish in plain words: the local model reads constraints, the catalogue gives candidates, and the answer names only those.'),
      assistantForm, constraintsEl, candidatesEl, answerEl, assistantMeta);

    const overview = h('div', { class: 'recs-overview' },
      h('section', { class: 'panel' }, h('h2', null, 'Model versions'), versionsHolder),
      metricsPanel,
      chartPanel,
      h('div', { class: 'recs-try' }, searchPanel, assistantPanel));

    /* the shopper and item views */
    const view = h('div', { class: 'recs-view' });

    function backLink() {
      return h('a', { id: 'recs-back', class: 'btn btn-quiet btn-sm back-link', href: '#/recs' }, '← Recommendations');
    }

    function showUser(id) {
      const mine = ++viewSeq;
      userInput.value = id;
      const history = h('section', { id: 'recs-history', class: 'panel recs-col', 'aria-label': 'History' },
        h('h2', null, 'What they did'), loading());
      const list = h('section', { id: 'recs-list', class: 'panel recs-col', 'aria-label': 'Recommended' },
        h('h2', null, 'Recommended for them'), loading());
      fill(view,
        h('div', { class: 'view-head' }, backLink(), h('h2', null, 'Shopper ', h('code', { id: 'recs-user-id' }, id))),
        h('div', { class: 'recs-columns' }, history, list));
      const path = encodeURIComponent(id);

      (async () => {
        try {
          const data = await api('GET', API + '/recs/users/' + path + '/history');
          if (!alive || mine !== viewSeq) return;
          const events = Array.isArray(data && data.events) ? data.events.slice(0, 50) : [];
          const total = Number(data && data.total);
          fill(history, h('h2', null, 'What they did'),
            h('p', { class: 'muted small' }, Number.isFinite(total) && total > events.length
              ? 'The newest ' + num(events.length) + ' of ' + plural(total, 'event')
              : plural(events.length, 'event')),
            events.length
              ? h('ul', { class: 'event-list' }, events.map((row) => {
                const e = row && row.event ? row.event : {};
                return h('li', { class: 'event', 'data-testid': 'history-event', 'data-item': String(e.item) },
                  h('div', { class: 'event-main' }, itemLink(e.item, row.title)),
                  h('div', { class: 'event-meta' },
                    chip(String(e.type || 'event'), 'chip-type'),
                    e.value !== null && e.value !== undefined ? h('span', { class: 'event-value' }, paramValue(e.value)) : null,
                    h('time', { class: 'muted small', title: dateTime(e.timestamp) }, dateOnly(e.timestamp))));
              }))
              : h('p', { class: 'empty' }, 'No events for this shopper.'));
        } catch (e) {
          if (!alive || mine !== viewSeq) return;
          fill(history, h('h2', null, 'What they did'), inlineError(e, () => showUser(id)));
          if (e.status !== 404) showError(e);
        }
      })();

      (async () => {
        try {
          const data = await api('GET', API + '/v1/recommendations/' + path + '?n=10');
          if (!alive || mine !== viewSeq) return;
          fill(list, h('h2', null, 'Recommended for them'),
            h('p', { class: 'muted small' }, 'Model version ' + num(data && data.model_version)),
            recList('recs-list-items', data && data.data, 'Nothing to recommend.'));
        } catch (e) {
          if (!alive || mine !== viewSeq) return;
          fill(list, h('h2', null, 'Recommended for them'), inlineError(e));
          showError(e);
        }
      })();
    }

    function showItem(id) {
      const mine = ++viewSeq;
      itemInput.value = id;
      const itemEl = h('section', { id: 'recs-item', class: 'panel recs-col', 'aria-label': 'Item' }, loading());
      const similar = h('section', { id: 'recs-similar', class: 'panel recs-col', 'aria-label': 'Similar items' },
        h('h2', null, 'Chosen together'), loading());
      fill(view,
        h('div', { class: 'view-head' }, backLink(), h('h2', null, 'Item ', h('code', { id: 'recs-item-code' }, id))),
        h('div', { class: 'recs-columns' }, itemEl, similar));
      const path = encodeURIComponent(id);

      (async () => {
        try {
          const item = await api('GET', API + '/v1/items/' + path);
          if (!alive || mine !== viewSeq) return;
          fill(itemEl, itemCard(item || {}));
        } catch (e) {
          if (!alive || mine !== viewSeq) return;
          fill(itemEl, inlineError(e, () => showItem(id)));
          showError(e);
        }
      })();

      (async () => {
        try {
          const data = await api('GET', API + '/v1/items/' + path + '/similar?n=10');
          if (!alive || mine !== viewSeq) return;
          fill(similar, h('h2', null, 'Chosen together'),
            h('p', { class: 'muted small' }, 'Model version ' + num(data && data.model_version)),
            recList('recs-similar-items', data && data.data, 'No similar items.'));
        } catch (e) {
          if (!alive || mine !== viewSeq) return;
          fill(similar, h('h2', null, 'Chosen together'), inlineError(e));
          showError(e);
        }
      })();
    }

    function itemCard(item) {
      const categories = Array.isArray(item.categories) ? item.categories : [];
      const tags = Array.isArray(item.tags) ? item.tags : [];
      const attributes = item.attributes && typeof item.attributes === 'object' ? Object.keys(item.attributes) : [];
      const facts = [];
      const fact = (label, value) => facts.push(h('div', { class: 'fact' }, h('dt', null, label), h('dd', null, value)));
      fact('Id', h('code', null, String(item.id)));
      if (item.price !== null && item.price !== undefined) fact('Price', usd(item.price));
      fact('Available', item.available === false ? badge('not available', 'error') : badge('available', 'ok'));
      if (categories.length) fact('Categories', h('span', { class: 'chips' }, categories.map((c) => chip(String(c)))));
      if (tags.length) fact('Tags', h('span', { class: 'chips' }, tags.map((t) => chip(String(t), 'chip-quiet'))));
      for (const key of attributes) {
        const v = item.attributes[key];
        fact(key.replace(/_/g, ' '), typeof v === 'string' || typeof v === 'number' ? String(v) : pretty(v));
      }
      if (item.created_at !== null && item.created_at !== undefined) fact('Added', dateTime(item.created_at));
      return [
        h('h2', { class: 'item-title' }, item.title ? String(item.title) : String(item.id)),
        item.description ? h('p', { class: 'item-description' }, String(item.description)) : null,
        h('dl', { class: 'facts facts-stacked' }, facts),
      ];
    }

    const body = h('div', { class: 'recs-body' });

    function show(target, force) {
      const parts = target.parts || [];
      const sub = parts[0] === 'user' || parts[0] === 'item' ? parts[0] : null;
      let id = null;
      if (sub && parts.length > 1) {
        const raw = parts.slice(1).join('/');
        try {
          id = decodeURIComponent(raw);
        } catch (_) {
          id = raw;
        }
      }
      const next = sub && id ? { sub, id } : { sub: null, id: null };
      if (!force && next.sub === current.sub && next.id === current.id && body.firstChild) return;
      current = next;
      clearError();
      if (!next.sub) {
        viewSeq++;
        fill(body, overview);
        renderChart();
        renderMetrics();
        return;
      }
      fill(body, view);
      if (next.sub === 'user') showUser(next.id);
      else showItem(next.id);
      window.scrollTo(0, 0);
    }

    return {
      mount(container, target) {
        container.appendChild(h('div', { class: 'page-recs' },
          pageHeader('Recommendations', 'The trained recommender: how it was chosen, what it suggests, and the shopping assistant.'),
          lookups,
          body));
        if (resizer) {
          resizer.observe(chartHolder);
          resizer.observe(plotHolder);
        }
        show(target || {}, true);
        loadVersions();
      },
      update(target) {
        show(target, false);
      },
      unmount() {
        alive = false;
        if (resizer) resizer.disconnect();
        if (assistantCtl) assistantCtl.abort();
      },
    };
  }

  /* ---------- knowledge base ---------- */

  function knowledgePage() {
    let alive = true;
    let seq = 0;
    const docs = h('div', null, loading());
    const input = h('input', { id: 'kb-search', type: 'search', class: 'input', placeholder: 'e.g. how long do refunds take', autocomplete: 'off', 'aria-label': 'Search the knowledge base' });
    const go = h('button', { id: 'kb-search-go', type: 'submit', class: 'btn btn-primary' }, 'Search');
    const form = h('form', { id: 'kb-search-form', class: 'inline-form', novalidate: true }, input, go);
    const results = h('div', { id: 'kb-results', class: 'kb-results' },
      h('p', { class: 'muted' }, 'Search to see exactly the passages the support agent would cite for a question.'));

    async function loadDocs() {
      fill(docs, loading());
      try {
        const data = await api('GET', API + '/kb/documents');
        if (!alive) return;
        const list = Array.isArray(data && data.documents) ? data.documents : [];
        const passages = list.reduce((a, d) => a + (Number(d.passages) || 0), 0);
        fill(docs,
          table('kb-documents', [{ label: 'Source' }, { label: 'Passages', num: true }],
            list.map((d) => ({ name: String(d.source), cells: [h('code', { class: 'kb-source' }, String(d.source)), num(d.passages)] })),
            { empty: 'The knowledge base is empty.', footer: list.length > 1 ? [h('strong', null, plural(list.length, 'document')), num(passages)] : null }),
          h('p', { class: 'muted small caption' }, 'Add documents (Markdown or text files) with ', h('code', null, 'hearth support kb add DIR'), '.'));
      } catch (e) {
        if (!alive) return;
        fill(docs, errorState(e.status === 503 ? e.message : 'Could not load the documents.', loadDocs));
        showError(e);
      }
    }

    form.addEventListener('submit', (event) => {
      event.preventDefault();
      const q = input.value.trim();
      const mine = ++seq;
      clearError();
      withBusy(go, async () => {
        fill(results, loading('Searching…'));
        try {
          const data = await api('GET', API + '/kb/search?q=' + encodeURIComponent(q));
          if (!alive || mine !== seq) return;
          const hits = Array.isArray(data && data.hits) ? data.hits : [];
          fill(results,
            h('p', { class: 'muted small' }, plural(hits.length, 'passage') + ' for ', h('q', null, String((data && data.query) || q))),
            hits.length
              ? hits.map((hit) => h('article', { class: 'kb-hit', 'data-testid': 'kb-hit', 'data-id': String(hit.id) },
                h('header', { class: 'kb-hit-head' },
                  h('h3', null, String(hit.title || 'Untitled')),
                  h('span', { class: 'kb-score', title: 'Score' }, sig(hit.score, 3))),
                h('div', { class: 'kb-hit-meta muted small' },
                  h('code', null, String(hit.id)), ' · ', h('span', { class: 'kb-source' }, String(hit.source || ''))),
                h('p', { class: 'kb-text' }, String(hit.text === undefined ? '' : hit.text))))
              : h('p', { class: 'empty' }, 'No passage matches.'));
        } catch (e) {
          if (!alive || mine !== seq) return;
          fill(results, inlineError(e));
          showError(e);
        }
      });
    });

    return {
      mount(container) {
        container.appendChild(h('div', { class: 'page-knowledge' },
          pageHeader('Knowledge base', 'The documents the support agent answers from and cites.'),
          h('section', { class: 'panel' }, h('h2', null, 'Documents'), docs),
          h('section', { class: 'panel' }, h('h2', null, 'Search'), form, results)));
        loadDocs();
      },
      unmount() {
        alive = false;
      },
    };
  }

  /* ---------- start ---------- */

  async function boot() {
    const app = document.getElementById('app');
    fill(app, h('div', { class: 'boot' }, loading('Loading the console…')));
    try {
      const me = await api('GET', API + '/me');
      signedIn(me, false);
    } catch (e) {
      if (e.status === 401) return;
      fill(app, h('div', { class: 'boot' },
        h('div', { class: 'login-card' },
          h('div', { class: 'login-brand' }, icon('flame', 'brand-mark'), h('span', { class: 'brand-name' }, 'hearth')),
          h('p', { class: 'form-error' }, e.message),
          button({ class: 'btn btn-primary' }, 'Try again', () => boot()))));
    }
  }

  window.addEventListener('hashchange', route);
  setInterval(refreshAgo, 30000);
  boot();
})();
