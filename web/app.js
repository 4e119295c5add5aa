// Knit web console: hash-routed views over the public REST API. No framework, no build step, no
// inline handlers or styles (the page runs under `default-src 'self'`). Every text that comes from
// the server is put into the DOM with textContent, never as HTML.

import { adaptGraph, layoutGraph, renderGraph } from './graph.js';

const TOKEN_KEY = 'knit.token';
const REFRESH_MS = 5000;
const STATUSES = ['deactivated', 'waiting', 'ready', 'starting', 'running', 'completing', 'aborting', 'done', 'failed'];
const ABORTABLE = new Set(['deactivated', 'waiting', 'ready', 'starting', 'running']);
const TEAROFFABLE = new Set(['ready', 'starting', 'running']);
const LIVE = new Set(['starting', 'running']);
const NOT_STARTED = new Set(['deactivated', 'waiting', 'ready']);

// ---------------------------------------------------------------------------------------------
// DOM helpers

function h(tag, props, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k === 'value') e.value = v;
    else if (k === 'checked') e.checked = Boolean(v);
    else if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  append(e, kids);
  return e;
}

function append(e, kids) {
  for (const kid of [kids].flat(Infinity)) {
    if (kid === null || kid === undefined || kid === false) continue;
    e.append(kid instanceof Node ? kid : String(kid));
  }
  return e;
}

function clear(e) {
  while (e.firstChild) e.removeChild(e.firstChild);
  return e;
}

const link = (href, text, cls) => h('a', { href, class: cls }, text);
const mono = (text) => h('code', {}, text);
const dataLink = (id) => link(`#/data/${id}`, id, 'id');
const runLink = (id) => link(`#/runs/${id}`, id, 'id');
const planLink = (id) => link(`#/plans/${id}`, id, 'id');
/// Who made a Data, Plan or Run (Knit's `creator`; absent from Knitfab and for the pseudo plan), linking to
/// the list of `path` filtered by that user.
const creatorLink = (path, name) => (name ? link(`#${path}?creator=${encodeURIComponent(name)}`, name, 'creator') : '');
const CREATOR_FILTER = { name: 'creator', label: 'creator', placeholder: 'alice' };

function tagString(t) {
  return typeof t === 'string' ? t : `${t.key}:${t.value}`;
}

function tagChips(tags, { system = true } = {}) {
  const list = (tags || []).map(tagString);
  const shown = system ? list : list.filter((t) => !t.startsWith('knit#'));
  return h(
    'span',
    { class: 'tags' },
    shown.map((t) => {
      const sys = t.startsWith('knit#');
      return link(`#/data?tag=${encodeURIComponent(t)}`, t, sys ? 'tag system' : 'tag');
    })
  );
}

function statusBadge(status) {
  return h('span', { class: `status status-${status}` }, status);
}

function planName(plan) {
  if (!plan) return '';
  return plan.image || plan.name || plan.planId;
}

function localTime(text) {
  if (!text) return '';
  const d = new Date(text);
  return Number.isNaN(d.getTime()) ? text : d.toLocaleString();
}

function timeCell(text) {
  return h('time', { datetime: text, title: text }, localTime(text));
}

function exitText(exit) {
  if (!exit) return '';
  return exit.message ? `${exit.code} (${exit.message})` : String(exit.code);
}

function table(headers, rows, cls = '') {
  return h(
    'table',
    { class: cls },
    h('thead', {}, h('tr', {}, headers.map((x) => h('th', {}, x)))),
    h('tbody', {}, rows.map((cells) => h('tr', {}, cells.map((c) => h('td', {}, c)))))
  );
}

function dl(pairs) {
  return h(
    'dl',
    { class: 'fields' },
    pairs.filter(Boolean).map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])
  );
}

// ---------------------------------------------------------------------------------------------
// Token and API

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || '';
}

/// A one-shot `#token=T[&route=/path?query]` fragment: stored in sessionStorage and removed from
/// the address bar and the history at once, so headless tests (and bookmarks made by scripts) can
/// sign in without typing, while the token never stays in a URL that could be shared or logged.
/// The fragment never reaches the server or a Referer header.
function takeFragmentToken() {
  if (!location.hash.startsWith('#token=')) return;
  const params = new URLSearchParams(location.hash.slice(1));
  const t = params.get('token');
  if (t) sessionStorage.setItem(TOKEN_KEY, t);
  const route = params.get('route') || '/data';
  history.replaceState(null, '', `${location.pathname}${location.search}#${route.startsWith('/') ? route : '/' + route}`);
}

class ApiError extends Error {
  constructor(status, body, what) {
    const reason = (body && (body.reason || body.message)) || `HTTP ${status}`;
    super(reason);
    this.status = status;
    this.reason = reason;
    this.advice = body && body.reason ? body.advice || '' : '';
    this.see = (body && body.see) || '';
    this.what = what;
  }
}

let signInMessage = '';

async function request(path, { method = 'GET', query, body, signal } = {}) {
  const qs = query ? new URLSearchParams(query).toString() : '';
  const url = `/api${path}${qs ? '?' + qs : ''}`;
  const headers = { Authorization: `Bearer ${token()}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(url, { method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store' });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, { reason: 'the server is not reachable', advice: String(e.message || e) }, `${method} ${path}`);
  }
  if (!res.ok) {
    let parsed = null;
    const text = await res.text().catch(() => '');
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = text ? { reason: text.slice(0, 300) } : null;
    }
    const err = new ApiError(res.status, parsed, `${method} ${path}`);
    if (res.status === 401) signOut(`The server rejected the token (401): ${err.reason}`);
    throw err;
  }
  return res;
}

async function getJSON(path, opts) {
  const res = await request(path, opts);
  const text = await res.text();
  return { text, data: text ? JSON.parse(text) : null };
}

function errorBox(err) {
  if (err instanceof ApiError) {
    const title =
      err.status === 0
        ? 'Server not reachable'
        : err.status === 403
          ? 'Not allowed (403)'
          : err.status === 404
            ? 'Not found (404)'
            : err.status >= 500
              ? `Server error (${err.status})`
              : `Request failed (${err.status})`;
    return h(
      'div',
      { class: 'error', role: 'alert' },
      h('strong', {}, title),
      ' ',
      err.reason,
      err.advice ? h('div', { class: 'advice' }, err.advice) : null,
      err.see ? h('div', { class: 'advice' }, 'see: ', err.see) : null,
      h('div', { class: 'what' }, err.what || '')
    );
  }
  return h('div', { class: 'error', role: 'alert' }, h('strong', {}, 'Error'), ' ', String((err && err.message) || err));
}

// ---------------------------------------------------------------------------------------------
// Time filters, as loose as `knit data find --since` (missing offset = local time)

const LOOSE_TIME = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{1,2})(?::(\d{2})(?::(\d{2})(\.\d+)?)?)?)?\s*(Z|[+-]\d{2}:?\d{2})?$/i;

function pad(n, w = 2) {
  return String(n).padStart(w, '0');
}

function toRFC3339(text) {
  const t = text.trim();
  if (!t) return '';
  const m = t.match(LOOSE_TIME);
  if (!m) throw new Error(`"${t}" is not a time (use e.g. 2024-01-31, 2024-01-31 12:30 or RFC3339)`);
  const [, y, mo, d, hh = '0', mi = '0', ss = '0', frac = '', zone] = m;
  if (zone) {
    const z = zone.toUpperCase() === 'Z' ? 'Z' : zone.length === 5 ? `${zone.slice(0, 3)}:${zone.slice(3)}` : zone;
    return `${y}-${mo}-${d}T${pad(hh)}:${mi}:${ss}${frac}${z}`;
  }
  const date = new Date(Number(y), Number(mo) - 1, Number(d), Number(hh), Number(mi), Number(ss), frac ? Math.round(Number(frac) * 1000) : 0);
  const off = -date.getTimezoneOffset();
  const sign = off >= 0 ? '+' : '-';
  const abs = Math.abs(off);
  return `${y}-${mo}-${d}T${pad(hh)}:${mi}:${ss}${frac}${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
}

function lines(text) {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
}

function commaList(text) {
  return text
    .split(/[\s,]+/)
    .map((s) => s.trim())
    .filter(Boolean);
}

// ---------------------------------------------------------------------------------------------
// Panels: a piece of a page that loads JSON and re-renders only when the answer changed, so
// auto-refresh keeps scroll position, selections, graph zoom and whatever the user is typing.

class Panel {
  constructor(load, render, { keepOnError = true } = {}) {
    this.load = load;
    this.render = render;
    this.keepOnError = keepOnError;
    this.key = undefined;
    this.err = h('div', { class: 'panel-error' });
    this.body = h('div', { class: 'panel-body' }, h('p', { class: 'loading' }, 'Loading…'));
    this.el = h('div', { class: 'panel' }, this.err, this.body);
  }

  async refresh(signal) {
    try {
      const result = await this.load(signal);
      clear(this.err);
      if (result.text === this.key) return result;
      this.key = result.text;
      const y = window.scrollY;
      const content = this.render(result.data);
      clear(this.body);
      append(this.body, content);
      window.scrollTo(window.scrollX, y);
      return result;
    } catch (e) {
      if (e && e.name === 'AbortError') return null;
      if (e instanceof ApiError && e.status === 401) return null;
      clear(this.err).append(errorBox(e));
      if (!this.keepOnError || this.key === undefined) {
        this.key = undefined;
        clear(this.body);
      }
      return null;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Filter forms: the filter lives in the URL (#/data?tag=…), so refresh, back/forward and links
// all keep it. Submitting rewrites the hash; the router renders the result.

function filterForm(path, fields, params) {
  const inputs = {};
  const form = h('form', { class: 'filters', autocomplete: 'off' });
  for (const f of fields) {
    let input;
    const values = params.getAll(f.name);
    if (f.type === 'lines') {
      input = h('textarea', { name: f.name, rows: 2, placeholder: f.placeholder, value: values.join('\n') });
    } else if (f.type === 'select') {
      input = h('select', { name: f.name }, f.options.map(([v, label]) => h('option', { value: v }, label)));
      input.value = values[0] || f.options[0][0];
    } else if (f.type === 'checks') {
      const chosen = new Set(values.flatMap(commaList));
      input = h(
        'span',
        { class: 'checks' },
        f.options.map((o) => h('label', {}, h('input', { type: 'checkbox', value: o, checked: chosen.has(o) }), o))
      );
    } else {
      input = h('input', { type: 'text', name: f.name, placeholder: f.placeholder, value: values[0] || '' });
    }
    inputs[f.name] = input;
    // A group of checkboxes has labels of its own, and a label may not contain labels.
    form.append(h(f.type === 'checks' ? 'div' : 'label', { class: 'field' }, h('span', {}, f.label), input));
  }
  const problem = h('div', { class: 'form-error', role: 'alert' });
  form.append(
    h('div', { class: 'buttons' }, h('button', { type: 'submit' }, 'Find'), link(`#${path}`, 'Clear', 'button secondary')),
    problem
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const next = new URLSearchParams();
    try {
      for (const f of fields) {
        const input = inputs[f.name];
        if (f.type === 'lines') for (const l of lines(input.value)) next.append(f.name, l);
        else if (f.type === 'checks') {
          const chosen = [...input.querySelectorAll('input:checked')].map((i) => i.value);
          if (chosen.length) next.set(f.name, chosen.join(','));
        } else if (f.type === 'select') {
          if (input.value !== f.options[0][0]) next.set(f.name, input.value);
        } else if (input.value.trim()) {
          if (f.time) toRFC3339(input.value);
          next.set(f.name, input.value.trim());
        }
      }
    } catch (e) {
      problem.textContent = e.message;
      return;
    }
    const qs = next.toString();
    location.hash = `#${path}${qs ? '?' + qs : ''}`;
  });
  return form;
}

/// Query pairs for the API from the URL filter, with times normalised to RFC3339.
function apiQuery(params, names, timeNames = ['since']) {
  const q = [];
  for (const n of names) for (const v of params.getAll(n)) q.push([n, timeNames.includes(n) ? toRFC3339(v) : v]);
  return q;
}

// ---------------------------------------------------------------------------------------------
// Views. Each returns {el, refresh(signal), dispose()}.

function dataListView(params) {
  const transient = params.get('transient') || 'both';
  const panel = new Panel(
    (signal) => getJSON('/data/', { query: apiQuery(params, ['tag', 'since', 'duration', 'creator']), signal }),
    (all) => {
      let list = [...all].reverse();
      const isTransient = (d) => d.tags.some((t) => tagString(t).startsWith('knit#transient:'));
      if (transient === 'yes') list = list.filter(isTransient);
      if (transient === 'no') list = list.filter((d) => !isTransient(d));
      if (!list.length) return h('p', { class: 'empty' }, 'No Data matches.');
      return [
        h('p', { class: 'count' }, `${list.length} Data, newest first`),
        table(
          ['knitId', 'tags', 'timestamp', 'state', 'produced by', 'creator'],
          list.map((d) => {
            const tags = d.tags.map(tagString);
            const ts = (tags.find((t) => t.startsWith('knit#timestamp:')) || '').slice('knit#timestamp:'.length);
            const tr = (tags.find((t) => t.startsWith('knit#transient:')) || '').slice('knit#transient:'.length);
            const up = d.upstream && d.upstream.run;
            return [
              dataLink(d.knitId),
              tagChips(tags, { system: false }),
              ts ? timeCell(ts) : '',
              tr ? statusBadge(tr) : '',
              up ? [link(`#/runs/${up.runId}`, planName(up.plan)), ' ', statusBadge(up.status)] : '',
              creatorLink('/data', d.creator),
            ];
          }),
          'list data-list'
        ),
      ];
    }
  );
  const form = filterForm(
    '/data',
    [
      { name: 'tag', label: 'tags (one key:value a line, all must match)', type: 'lines', placeholder: 'project:demo' },
      { name: 'since', label: 'since', placeholder: '2024-01-31 12:00', time: true },
      { name: 'duration', label: 'duration (needs since)', placeholder: '24h' },
      { name: 'transient', label: 'transient', type: 'select', options: [['both', 'both'], ['yes', 'only transient'], ['no', 'no transient']] },
      CREATOR_FILTER,
    ],
    params
  );
  return { el: [h('h2', {}, 'Data'), form, panel.el], refresh: (s) => panel.refresh(s) };
}

function plansListView(params) {
  const panel = new Panel(
    (signal) => {
      const q = apiQuery(params, ['image', 'in_tag', 'out_tag', 'creator']);
      const active = params.get('active');
      if (active === 'yes') q.push(['active', 'true']);
      if (active === 'no') q.push(['active', 'false']);
      return getJSON('/plans/', { query: q, signal });
    },
    (list) => {
      if (!list.length) return h('p', { class: 'empty' }, 'No Plan matches.');
      return [
        h('p', { class: 'count' }, `${list.length} Plans`),
        table(
          ['planId', 'image', 'state', 'inputs', 'outputs', 'creator'],
          list.map((p) => [
            planLink(p.planId),
            planName(p),
            p.active === false ? statusBadge('inactive') : statusBadge('active'),
            h('ul', { class: 'mounts' }, (p.inputs || []).map((i) => h('li', {}, mono(i.path), ' ', tagChips(i.tags)))),
            h(
              'ul',
              { class: 'mounts' },
              (p.outputs || []).map((o) => h('li', {}, mono(o.path), ' ', tagChips(o.tags))),
              p.log ? h('li', {}, mono('(log)'), ' ', tagChips(p.log.tags)) : null
            ),
          ]),
          'list plan-list'
        ),
      ];
    }
  );
  const form = filterForm(
    '/plans',
    [
      { name: 'active', label: 'state', type: 'select', options: [['both', 'both'], ['yes', 'active'], ['no', 'inactive']] },
      { name: 'image', label: 'image[:tag]', placeholder: 'localhost/train' },
      { name: 'in_tag', label: 'input tags (one input has all)', type: 'lines', placeholder: 'type:dataset' },
      { name: 'out_tag', label: 'output tags (one output has all)', type: 'lines', placeholder: 'type:model' },
      CREATOR_FILTER,
    ],
    params
  );
  return { el: [h('h2', {}, 'Plans'), form, panel.el], refresh: (s) => panel.refresh(s) };
}

function runsListView(params) {
  const panel = new Panel(
    (signal) => {
      const q = [];
      for (const n of ['plan', 'knitIdInput', 'knitIdOutput', 'status']) {
        const v = params.getAll(n).flatMap(commaList);
        if (v.length) q.push([n, v.join(',')]);
      }
      q.push(...apiQuery(params, ['since', 'duration', 'creator']));
      return getJSON('/runs/', { query: q, signal });
    },
    (all) => {
      const list = [...all].reverse();
      if (!list.length) return h('p', { class: 'empty' }, 'No Run matches.');
      return [
        h('p', { class: 'count' }, `${list.length} Runs, most recently updated first`),
        table(
          ['runId', 'status', 'plan', 'updated', 'exit', 'inputs', 'outputs', 'creator'],
          list.map((r) => [
            runLink(r.runId),
            statusBadge(r.status),
            link(`#/plans/${r.plan.planId}`, planName(r.plan)),
            timeCell(r.updatedAt),
            exitText(r.exit),
            h('ul', { class: 'mounts' }, (r.inputs || []).map((i) => h('li', {}, mono(i.path), ' ', link(`#/data/${i.knitId}`, i.knitId.slice(0, 8), 'id')))),
            h(
              'ul',
              { class: 'mounts' },
              (r.outputs || []).map((o) => h('li', {}, mono(o.path), ' ', link(`#/data/${o.knitId}`, o.knitId.slice(0, 8), 'id'))),
              r.log ? h('li', {}, mono('(log)'), ' ', link(`#/data/${r.log.knitId}`, r.log.knitId.slice(0, 8), 'id')) : null
            ),
          ]),
          'list run-list'
        ),
      ];
    }
  );
  const form = filterForm(
    '/runs',
    [
      { name: 'plan', label: 'plan ids', placeholder: 'planId, …' },
      { name: 'knitIdInput', label: 'input knitIds', placeholder: 'knitId, …' },
      { name: 'knitIdOutput', label: 'output knitIds', placeholder: 'knitId, …' },
      { name: 'status', label: 'status', type: 'checks', options: STATUSES },
      { name: 'since', label: 'since', placeholder: '2024-01-31 12:00', time: true },
      { name: 'duration', label: 'duration (needs since)', placeholder: '1h' },
      CREATOR_FILTER,
    ],
    params
  );
  return { el: [h('h2', {}, 'Runs'), form, panel.el], refresh: (s) => panel.refresh(s) };
}

// ---------------------------------------------------------------------------------------------
// Graph panel: asks the server's graph endpoint; when the server has none (404/405/501) it says
// so and draws the direct neighbours that the detail JSON already names.

function graphPanel({ endpoint, focus, fallback, title }) {
  const opts = { upstream: true, downstream: true, depth: '3' };
  let scale = 1;
  const note = h('p', { class: 'note' });
  const holder = h('div', { class: 'graph-holder' });
  const err = h('div', { class: 'panel-error' });
  let key;
  let svg = null;
  const applyScale = () => {
    if (!svg) return;
    svg.setAttribute('width', String(Math.ceil(Number(svg.dataset.w) * scale)));
    svg.setAttribute('height', String(Math.ceil(Number(svg.dataset.h) * scale)));
  };
  const controls = endpoint
    ? h(
        'div',
        { class: 'graph-controls' },
        h('label', {}, h('input', { type: 'checkbox', checked: true, onchange: (ev) => ((opts.upstream = ev.target.checked), reload()) }), 'upstream'),
        h('label', {}, h('input', { type: 'checkbox', checked: true, onchange: (ev) => ((opts.downstream = ev.target.checked), reload()) }), 'downstream'),
        h(
          'label',
          {},
          'depth ',
          h(
            'select',
            { onchange: (ev) => ((opts.depth = ev.target.value), reload()) },
            ['1', '2', '3', '5', '10', 'all'].map((d) => h('option', { value: d, selected: d === '3' }, d))
          )
        ),
        h('button', { type: 'button', class: 'secondary small', onclick: () => ((scale = Math.min(scale * 1.25, 4)), applyScale()) }, '+'),
        h('button', { type: 'button', class: 'secondary small', onclick: () => ((scale = Math.max(scale / 1.25, 0.25)), applyScale()) }, '−')
      )
    : null;
  let lastSignal;
  const draw = (graphJSON) => {
    const graph = adaptGraph(graphJSON, focus);
    const layout = layoutGraph(graph);
    svg = renderGraph(layout, (href) => {
      location.hash = href;
    });
    svg.dataset.w = String(layout.width);
    svg.dataset.h = String(layout.height);
    applyScale();
    clear(holder).append(svg);
  };
  const refresh = async (signal, detail) => {
    lastSignal = signal;
    let text;
    let json;
    if (endpoint) {
      const q = [['format', 'json'], ['depth', opts.depth]];
      if (opts.upstream) q.push(['upstream', '']);
      if (opts.downstream) q.push(['downstream', '']);
      try {
        ({ text, data: json } = await getJSON(endpoint, { query: q, signal }));
        note.textContent = '';
      } catch (e) {
        if (e && e.name === 'AbortError') return;
        if (e instanceof ApiError && [404, 405, 501].includes(e.status) && detail) {
          note.textContent = `${title} not available from this server; showing the direct neighbours from the detail.`;
          json = fallback(detail);
          text = JSON.stringify(json);
        } else {
          if (!(e instanceof ApiError && e.status === 401)) clear(err).append(errorBox(e));
          return;
        }
      }
    } else {
      json = fallback(detail);
      text = JSON.stringify(json);
    }
    clear(err);
    if (text === key) return;
    key = text;
    draw(json);
  };
  let lastDetail;
  const reload = () => {
    key = undefined;
    refresh(lastSignal, lastDetail);
  };
  return {
    el: h('section', { class: 'graph-section' }, h('h3', {}, title), controls, note, err, holder),
    refresh: (signal, detail) => {
      lastDetail = detail;
      return refresh(signal, detail);
    },
  };
}

// Fallback graphs, in the same shape the server's endpoints are expected to send.

function dataNeighbours(d) {
  const nodes = [{ id: `d${d.knitId}`, kind: 'data', knitId: d.knitId, tags: d.tags, focus: true }];
  const edges = [];
  const up = d.upstream;
  if (up && up.run) {
    const r = up.run;
    const pseudo = !r.plan.image;
    nodes.push({ id: `r${r.runId}`, kind: pseudo ? 'upload' : 'run', runId: r.runId, status: r.status, image: planName(r.plan) });
    edges.push({ from: `r${r.runId}`, to: `d${d.knitId}`, label: up.log ? '(log)' : (up.mountpoint && up.mountpoint.path) || '' });
  }
  for (const dn of d.downstreams || []) {
    const r = dn.run;
    if (!nodes.some((n) => n.id === `r${r.runId}`)) nodes.push({ id: `r${r.runId}`, kind: 'run', runId: r.runId, status: r.status, image: planName(r.plan) });
    edges.push({ from: `d${d.knitId}`, to: `r${r.runId}`, label: (dn.mountpoint && dn.mountpoint.path) || '' });
  }
  return { nodes, edges };
}

function runNeighbours(r) {
  const pseudo = !r.plan.image;
  const nodes = [{ id: `r${r.runId}`, kind: pseudo ? 'upload' : 'run', runId: r.runId, status: r.status, image: planName(r.plan), focus: true }];
  const edges = [];
  for (const i of r.inputs || []) {
    nodes.push({ id: `d${i.knitId}`, kind: 'data', knitId: i.knitId, tags: i.tags });
    edges.push({ from: `d${i.knitId}`, to: `r${r.runId}`, label: i.path });
  }
  for (const o of r.outputs || []) {
    nodes.push({ id: `d${o.knitId}`, kind: 'data', knitId: o.knitId, tags: o.tags });
    edges.push({ from: `r${r.runId}`, to: `d${o.knitId}`, label: o.path });
  }
  if (r.log) {
    nodes.push({ id: `d${r.log.knitId}`, kind: 'data', knitId: r.log.knitId, tags: r.log.tags });
    edges.push({ from: `r${r.runId}`, to: `d${r.log.knitId}`, label: '(log)' });
  }
  return { nodes, edges };
}

function planNeighbours(p) {
  const nodes = [{ id: `p${p.planId}`, kind: 'plan', planId: p.planId, image: planName(p), active: p.active, focus: true }];
  const edges = [];
  const addPlan = (s) => {
    if (!nodes.some((n) => n.id === `p${s.planId}`)) nodes.push({ id: `p${s.planId}`, kind: 'plan', planId: s.planId, image: planName(s) });
  };
  for (const i of p.inputs || [])
    for (const u of i.upstreams || []) {
      addPlan(u.plan);
      edges.push({ from: `p${u.plan.planId}`, to: `p${p.planId}`, label: i.path });
    }
  const outs = [...(p.outputs || [])];
  if (p.log) outs.push({ path: '(log)', downstreams: p.log.downstreams });
  for (const o of outs)
    for (const dn of o.downstreams || []) {
      addPlan(dn.plan);
      edges.push({ from: `p${p.planId}`, to: `p${dn.plan.planId}`, label: (dn.mountpoint && dn.mountpoint.path) || o.path });
    }
  return { nodes, edges };
}

// ---------------------------------------------------------------------------------------------
// Detail views

function confirmAndDo(question, action, problem) {
  if (!window.confirm(question)) return;
  clear(problem);
  action().then(
    () => current && current.refreshNow(),
    (e) => {
      if (!(e instanceof ApiError && e.status === 401)) problem.append(errorBox(e));
    }
  );
}

async function download(knitId, button, problem) {
  button.disabled = true;
  const old = button.textContent;
  button.textContent = 'Downloading…';
  clear(problem);
  try {
    // The download needs the Authorization header, which a plain link cannot send; the archive is
    // collected as a blob (in memory) and saved through an object URL.
    const res = await request(`/data/${knitId}/`);
    const blob = await res.blob();
    const type = res.headers.get('Content-Type') || '';
    const ext = type.includes('zstd') ? '.tar.zst' : type.includes('x-tar') ? '.tar' : '.tar.gz';
    const url = URL.createObjectURL(blob);
    const a = h('a', { href: url, download: `${knitId}${ext}`, class: 'hidden' });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) problem.append(errorBox(e));
  } finally {
    button.disabled = false;
    button.textContent = old;
  }
}

function dataDetailView(knitId) {
  const problem = h('div', { class: 'action-error' });
  const graph = graphPanel({
    endpoint: `/data/${knitId}/lineage`,
    focus: knitId,
    fallback: dataNeighbours,
    title: 'Lineage',
  });
  const panel = new Panel(
    (signal) => getJSON('/data/', { query: [['tag', `knit#id:${knitId}`]], signal }).then((r) => {
      if (!r.data.length) throw new ApiError(404, { reason: `no Data with knitId ${knitId}` }, `GET /data/?tag=knit#id:${knitId}`);
      return { text: JSON.stringify(r.data[0]), data: r.data[0] };
    }),
    (d) => {
      const tags = d.tags.map(tagString);
      const user = tags.filter((t) => !t.startsWith('knit#'));
      const system = tags.filter((t) => t.startsWith('knit#'));
      const up = d.upstream;
      const dlButton = h('button', { type: 'button', onclick: () => download(d.knitId, dlButton, problem) }, 'Download');
      return [
        h('div', { class: 'actions' }, dlButton),
        dl([
          ['knitId', mono(d.knitId)],
          ['tags', user.length ? tagChips(user) : h('span', { class: 'muted' }, 'none')],
          ['system tags', tagChips(system)],
          d.creator && ['creator', creatorLink('/data', d.creator)],
          [
            'upstream',
            up && up.run
              ? [runLink(up.run.runId), ' ', statusBadge(up.run.status), ' ', link(`#/plans/${up.run.plan.planId}`, planName(up.run.plan)), ' → ', mono(up.log ? '(log)' : (up.mountpoint && up.mountpoint.path) || '')]
              : '',
          ],
        ]),
        h('h3', {}, 'Downstream Runs'),
        (d.downstreams || []).length
          ? table(
              ['run', 'status', 'plan', 'input'],
              d.downstreams.map((dn) => [runLink(dn.run.runId), statusBadge(dn.run.status), link(`#/plans/${dn.run.plan.planId}`, planName(dn.run.plan)), mono((dn.mountpoint && dn.mountpoint.path) || '')])
            )
          : h('p', { class: 'muted' }, 'None yet.'),
        h('h3', {}, 'Assignable to'),
        (d.nomination || []).length
          ? table(
              ['plan', 'input', 'tags'],
              d.nomination.map((n) => [link(`#/plans/${n.plan.planId}`, planName(n.plan)), mono(n.path), tagChips(n.tags)])
            )
          : h('p', { class: 'muted' }, 'No plan input matches its tags.'),
      ];
    }
  );
  return {
    el: [h('h2', {}, 'Data ', h('span', { class: 'id' }, knitId)), problem, panel.el, graph.el],
    refresh: async (s) => {
      const r = await panel.refresh(s);
      if (r && r.data) await graph.refresh(s, r.data);
    },
  };
}

function planDetailView(planId) {
  const problem = h('div', { class: 'action-error' });
  const graph = graphPanel({ endpoint: `/plans/${planId}/graph`, focus: planId, fallback: planNeighbours, title: 'Plan graph' });
  const mountTable = (rows, relHeader, relKey) =>
    table(
      ['path', 'tags', relHeader],
      rows.map((m) => [
        mono(m.path),
        tagChips(m.tags),
        h(
          'ul',
          { class: 'mounts' },
          (m[relKey] || []).map((u) => h('li', {}, link(`#/plans/${u.plan.planId}`, planName(u.plan)), ' ', mono(u.log ? '(log)' : (u.mountpoint && u.mountpoint.path) || '')))
        ),
      ])
    );
  const panel = new Panel(
    (signal) => getJSON(`/plans/${planId}/`, { signal }),
    (p) => {
      const toggle = h(
        'button',
        {
          type: 'button',
          class: 'secondary write',
          onclick: () =>
            confirmAndDo(
              p.active ? `Deactivate plan ${p.planId}? Its waiting Runs will be parked.` : `Activate plan ${p.planId}?`,
              () => request(`/plans/${p.planId}/active`, { method: p.active ? 'DELETE' : 'PUT' }),
              problem
            ),
        },
        p.active ? 'Deactivate' : 'Activate'
      );
      const onNode = p.on_node ? ['may', 'prefer', 'must'].filter((k) => (p.on_node[k] || []).length).map((k) => `${k}: ${p.on_node[k].join(', ')}`) : [];
      return [
        h('div', { class: 'actions' }, p.image ? toggle : null, link(`#/runs?plan=${p.planId}`, 'Runs of this plan', 'button secondary')),
        dl([
          ['planId', mono(p.planId)],
          [p.image ? 'image' : 'name', mono(planName(p))],
          ['state', statusBadge(p.active === false ? 'inactive' : 'active')],
          p.entrypoint && ['entrypoint', mono(JSON.stringify(p.entrypoint))],
          p.args && ['args', mono(JSON.stringify(p.args))],
          p.annotations && p.annotations.length && ['annotations', h('ul', { class: 'mounts' }, p.annotations.map((a) => h('li', {}, a)))],
          p.resources && ['resources', Object.entries(p.resources).map(([k, v]) => `${k}=${v}`).join(', ')],
          onNode.length && ['on_node', onNode.join('; ')],
          p.service_account && ['service account', p.service_account],
          p.creator && ['creator', creatorLink('/plans', p.creator)],
        ]),
        h('h3', {}, 'Inputs'),
        (p.inputs || []).length ? mountTable(p.inputs, 'upstream plans', 'upstreams') : h('p', { class: 'muted' }, 'None.'),
        h('h3', {}, 'Outputs'),
        (p.outputs || []).length ? mountTable(p.outputs, 'downstream plans', 'downstreams') : h('p', { class: 'muted' }, 'None.'),
        h('h3', {}, 'Log'),
        p.log ? mountTable([{ path: '(log)', tags: p.log.tags, downstreams: p.log.downstreams }], 'downstream plans', 'downstreams') : h('p', { class: 'muted' }, 'This plan keeps no log.'),
      ];
    }
  );
  return {
    el: [h('h2', {}, 'Plan ', h('span', { class: 'id' }, planId)), problem, panel.el, graph.el],
    refresh: async (s) => {
      const r = await panel.refresh(s);
      if (r && r.data) await graph.refresh(s, r.data);
    },
  };
}

/// The Run's log, followed while the Run is live (fetch + ReadableStream), kept scrolled to the
/// end unless the reader scrolled up.
function logPanel(runId) {
  const pre = h('pre', { class: 'log', tabindex: '0' });
  const state = h('p', { class: 'note' });
  const controller = new AbortController();
  let streaming = false;
  let complete = false;
  const atBottom = () => pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 24;
  const write = (text) => {
    const stick = atBottom();
    pre.append(document.createTextNode(text));
    if (stick) pre.scrollTop = pre.scrollHeight;
  };
  const start = async (live) => {
    streaming = true;
    clear(pre);
    state.textContent = live ? 'following the log…' : 'loading the log…';
    try {
      const res = await request(`/runs/${runId}/log`, { query: live ? [['follow', '']] : [], signal: controller.signal });
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        write(decoder.decode(value, { stream: true }));
      }
      write(decoder.decode());
      state.textContent = live ? 'log stream ended.' : '';
      complete = !live;
    } catch (e) {
      if (e && e.name === 'AbortError') return;
      if (e instanceof ApiError && e.status === 503) state.textContent = 'The log is not available yet (the Run has not started).';
      else if (!(e instanceof ApiError && e.status === 401)) {
        state.textContent = '';
        pre.append(errorBox(e));
      }
    } finally {
      streaming = false;
    }
  };
  return {
    el: h('section', { class: 'log-section' }, h('h3', {}, 'Log'), state, pre),
    update(run) {
      if (!run.log) {
        state.textContent = 'This plan keeps no log.';
        pre.classList.add('hidden');
        return;
      }
      if (NOT_STARTED.has(run.status)) {
        state.textContent = 'The log starts when the Run starts.';
        return;
      }
      if (streaming || complete) return;
      // A followed stream ends when the container ends; the finished log is then read once more
      // from the log Data, so the page shows exactly what was kept.
      start(LIVE.has(run.status));
    },
    dispose: () => controller.abort(),
  };
}

function runDetailView(runId) {
  const problem = h('div', { class: 'action-error' });
  const log = logPanel(runId);
  const graph = graphPanel({ endpoint: null, focus: runId, fallback: runNeighbours, title: 'Inputs and outputs' });
  const panel = new Panel(
    (signal) => getJSON(`/runs/${runId}/`, { signal }),
    (r) => {
      const buttons = [];
      if (ABORTABLE.has(r.status) && r.plan.image)
        buttons.push(
          h('button', { type: 'button', class: 'danger write', onclick: () => confirmAndDo(`Abort run ${r.runId}? It will end as failed (exit 253).`, () => request(`/runs/${r.runId}/abort`, { method: 'PUT' }), problem) }, 'Abort')
        );
      if (TEAROFFABLE.has(r.status) && r.plan.image)
        buttons.push(
          h('button', { type: 'button', class: 'secondary write', onclick: () => confirmAndDo(`Tear off run ${r.runId}? It stops now and what it wrote so far becomes its output (done).`, () => request(`/runs/${r.runId}/tearoff`, { method: 'PUT' }), problem) }, 'Tear off')
        );
      const mounts = (list) => table(['path', 'mountpoint tags', 'knitId'], list.map((m) => [mono(m.path), tagChips(m.tags), dataLink(m.knitId)]));
      return [
        buttons.length ? h('div', { class: 'actions' }, buttons) : null,
        dl([
          ['runId', mono(r.runId)],
          ['status', statusBadge(r.status)],
          ['updated', timeCell(r.updatedAt)],
          r.exit && ['exit', exitText(r.exit)],
          ['plan', [link(`#/plans/${r.plan.planId}`, planName(r.plan)), ' ', h('span', { class: 'muted' }, r.plan.planId)]],
          r.creator && ['creator', creatorLink('/runs', r.creator)],
        ]),
        h('h3', {}, 'Inputs'),
        (r.inputs || []).length ? mounts(r.inputs) : h('p', { class: 'muted' }, 'None (an upload).'),
        h('h3', {}, 'Outputs'),
        (r.outputs || []).length ? mounts(r.outputs) : h('p', { class: 'muted' }, 'None.'),
        r.log ? [h('h3', {}, 'Log Data'), mounts([{ path: '(log)', tags: r.log.tags, knitId: r.log.knitId }])] : null,
      ];
    }
  );
  return {
    el: [h('h2', {}, 'Run ', h('span', { class: 'id' }, runId)), problem, panel.el, graph.el, log.el],
    refresh: async (s) => {
      const r = await panel.refresh(s);
      if (r && r.data) {
        log.update(r.data);
        await graph.refresh(s, r.data);
      }
    },
    dispose: () => log.dispose(),
  };
}

// ---------------------------------------------------------------------------------------------
// Sign-in

function signInView() {
  const input = h('input', { type: 'password', name: 'token', id: 'token', autocomplete: 'off', required: true, placeholder: 'token from your knitprofile handout' });
  const problem = h('div', { class: 'form-error', role: 'alert' }, signInMessage);
  const form = h(
    'form',
    { class: 'signin', id: 'signin' },
    h('h2', {}, 'Sign in'),
    h('p', {}, 'Paste your API token: the ', mono('token:'), ' line of your knitprofile handout, or a new one from ', mono('knitadm user token NAME'), '. It is kept in this browser tab only.'),
    h('label', { class: 'field', for: 'token' }, h('span', {}, 'API token'), input),
    h('div', { class: 'buttons' }, h('button', { type: 'submit' }, 'Sign in')),
    problem
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const t = input.value.trim();
    if (!t) return;
    sessionStorage.setItem(TOKEN_KEY, t);
    signInMessage = '';
    clear(problem);
    try {
      // Any authenticated read tells whether the token is good; this one answers [] cheaply.
      await request('/data/', { query: [['tag', 'knit#id:00000000-0000-0000-0000-000000000000']] });
      if (!location.hash || location.hash === '#' || location.hash.startsWith('#/signin')) location.hash = '#/data';
      else route();
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) return;
      clear(problem).append(errorBox(e));
    }
  });
  setTimeout(() => input.focus(), 0);
  return { el: form, refresh: async () => {} };
}

// Who the token belongs to, from GET /api/whoami (a Knit extension): shown in the header, and a
// reader's console hides the buttons that change things (elements of class "write"). Against a
// server without it every button stays; the API refuses what the role does not allow anyway.
let identityFor = null;

async function loadIdentity() {
  const t = token();
  if (!t || identityFor === t) return;
  identityFor = t;
  document.body.classList.remove('read-only');
  const who = document.getElementById('who');
  if (who) who.textContent = '';
  try {
    const { data } = await getJSON('/whoami');
    if (token() !== t || !data) return;
    document.body.classList.toggle('read-only', data.role === 'reader');
    if (who) who.textContent = `${data.name} (${data.role})`;
  } catch (e) {
    // 404 from a Knitfab server, or a network problem: keep every button.
  }
}

function signOut(message) {
  identityFor = null;
  sessionStorage.removeItem(TOKEN_KEY);
  signInMessage = message || '';
  route();
}

// ---------------------------------------------------------------------------------------------
// Router and refresh loop

let current = null;
const main = () => document.getElementById('view');

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/data';
  const q = raw.indexOf('?');
  const path = (q < 0 ? raw : raw.slice(0, q)).replace(/\/+$/, '') || '/data';
  const params = new URLSearchParams(q < 0 ? '' : raw.slice(q + 1));
  return { path, params };
}

function viewFor(path, params) {
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  const [section, id] = parts;
  if (parts.length === 1 && section === 'data') return ['data', dataListView(params)];
  if (parts.length === 2 && section === 'data') return ['data', dataDetailView(id)];
  if (parts.length === 1 && section === 'plans') return ['plans', plansListView(params)];
  if (parts.length === 2 && section === 'plans') return ['plans', planDetailView(id)];
  if (parts.length === 1 && section === 'runs') return ['runs', runsListView(params)];
  if (parts.length === 2 && section === 'runs') return ['runs', runDetailView(id)];
  return [
    '',
    { el: [h('h2', {}, 'Not found'), h('p', {}, 'No page at ', mono(path), '. Try ', link('#/data', 'Data'), '.')], refresh: async () => {} },
  ];
}

function route() {
  if (current) current.dispose();
  current = null;
  const signedIn = Boolean(token());
  document.body.classList.toggle('signed-out', !signedIn);
  if (signedIn) loadIdentity();
  const root = clear(main());
  let section = '';
  let view;
  if (!signedIn) view = signInView();
  else [section, view] = viewFor(parseHash().path, parseHash().params);
  for (const a of document.querySelectorAll('nav a[data-section]')) a.classList.toggle('active', a.dataset.section === section);
  append(root, view.el);
  const controller = new AbortController();
  let running = null;
  const state = {
    refreshNow() {
      if (running) return running;
      running = view
        .refresh(controller.signal)
        .catch((e) => {
          if (!(e && e.name === 'AbortError')) console.error(e);
        })
        .finally(() => {
          running = null;
          const stamp = document.getElementById('refreshed');
          if (stamp) stamp.textContent = `updated ${new Date().toLocaleTimeString()}`;
        });
      return running;
    },
    dispose() {
      controller.abort();
      if (view.dispose) view.dispose();
    },
    signedIn,
  };
  current = state;
  state.refreshNow();
}

function autoRefreshOn() {
  const box = document.getElementById('autorefresh');
  return !box || box.checked;
}

function start() {
  takeFragmentToken();
  document.getElementById('signout').addEventListener('click', () => signOut('Signed out.'));
  window.addEventListener('hashchange', () => {
    if (location.hash.startsWith('#token=')) takeFragmentToken();
    route();
  });
  setInterval(() => {
    if (document.visibilityState === 'visible' && current && current.signedIn && autoRefreshOn()) current.refreshNow();
  }, REFRESH_MS);
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible' && current && current.signedIn && autoRefreshOn()) current.refreshNow();
  });
  route();
}

start();
