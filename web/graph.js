// Graph view: one adapter from whatever JSON the server sends to a canonical graph, a deterministic
// layered layout, and an SVG renderer. No DOM access outside renderGraph, so the layout can be
// reasoned about (and tested) on its own.

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i;

const KIND_RANK = { root: 0, upload: 1, plan: 2, input: 3, output: 4, log: 5, run: 6, data: 7 };
const POINT_KINDS = { input: true, output: true, log: true };

function str(v) {
  return v === undefined || v === null ? '' : String(v);
}

function tagText(t) {
  if (typeof t === 'string') return t;
  if (t && typeof t === 'object' && 'key' in t) return `${t.key}:${t.value}`;
  return str(t);
}

/// The one place that knows the server's graph schema (KnitGraph of `GET /api/data/{id}/lineage` and
/// `GET /api/plans/{id}/graph`): {nodes:[{id, type, start?, knitId?, tags?, runId?, status?, plan?,
/// planId?, active?, path?}], edges:[{from, to, type, label?}]}, node types data, run, root, plan,
/// input, output, log. `kind` is accepted for `type`, and a `label`, `image` or `name` on a node is
/// shown, so small schema changes do not break the view; anything unknown is ignored.
export function adaptGraph(json, focusId) {
  const rawNodes = Array.isArray(json && json.nodes) ? json.nodes : [];
  const rawEdges = Array.isArray(json && json.edges) ? json.edges : [];
  const nodes = [];
  const byId = new Map();
  for (const n of rawNodes) {
    if (!n || n.id === undefined || n.id === null) continue;
    const id = str(n.id);
    if (byId.has(id)) continue;
    const plan = n.plan && typeof n.plan === 'object' ? n.plan : {};
    const image = str(n.image || n.name || plan.image || plan.name);
    let kind = str(n.kind || n.type).toLowerCase();
    if (kind === 'uploaded' || kind === 'import' || kind === 'imported') kind = 'upload';
    if (kind === 'run' && !(n.image || plan.image) && image.startsWith('knit#')) kind = 'upload';
    if (!(kind in KIND_RANK)) kind = n.knitId ? 'data' : n.runId ? 'run' : n.planId ? 'plan' : 'data';
    const match = id.match(UUID);
    const entity = str(n.knitId || n.runId || n.planId || plan.planId || (match ? match[0] : id));
    const tags = Array.isArray(n.tags) ? n.tags.map(tagText) : [];
    const lines = [];
    let tip = [];
    if (kind === 'input' || kind === 'output' || kind === 'log') {
      lines.push(str(n.label || n.path || (kind === 'log' ? '(log)' : kind)));
      tip = [`${kind} of plan ${entity}`, ...tags];
    } else if (kind !== 'root') {
      const title = { data: 'Data', run: 'Run', upload: 'Upload', plan: 'Plan' }[kind];
      if (n.label) lines.push(...str(n.label).split('\n'));
      else lines.push(`${title} ${entity.slice(0, 8)}`);
      if (image) lines.push(image);
      if (n.status) lines.push(str(n.status));
      if (kind === 'plan' && n.active === false) lines.push('inactive');
      const shown = tags.filter((t) => !t.startsWith('knit#id:') && !t.startsWith('knit#timestamp:'));
      lines.push(...shown.slice(0, 4));
      if (shown.length > 4) lines.push(`+${shown.length - 4} more`);
      tip = [`${title} ${entity}`, ...lines.slice(1), ...shown.slice(4)];
    } else {
      tip = ['start of a Run without inputs (an upload)'];
    }
    let href = null;
    if (kind === 'data') href = `#/data/${entity}`;
    else if (kind === 'run' || kind === 'upload') href = `#/runs/${entity}`;
    else if (kind !== 'root') href = `#/plans/${entity}`;
    const node = {
      id,
      kind,
      entity,
      lines: lines.map((l) => (l.length > 42 ? l.slice(0, 41) + '…' : l)),
      tip,
      status: str(n.status),
      href,
      focus: Boolean(n.focus || n.start) || (focusId !== undefined && entity === focusId && !(kind in POINT_KINDS)),
    };
    byId.set(id, node);
    nodes.push(node);
  }
  const edges = [];
  const seen = new Set();
  for (const e of rawEdges) {
    if (!e) continue;
    const from = str(e.from ?? e.source);
    const to = str(e.to ?? e.target);
    if (!byId.has(from) || !byId.has(to) || from === to) continue;
    const type = str(e.kind || e.type);
    // A mountpoint node already shows its path; repeating it on the edge would only add clutter.
    const toPoint = byId.get(from).kind in POINT_KINDS || byId.get(to).kind in POINT_KINDS;
    const label = toPoint ? '' : str(e.label ?? e.path ?? (type === 'log' ? '(log)' : ''));
    const key = `${from}\u0000${to}\u0000${label}`;
    if (seen.has(key)) continue;
    seen.add(key);
    edges.push({ from, to, label, type });
  }
  return { nodes, edges };
}

// ---------------------------------------------------------------------------------------------
// Layout: layered ("Sugiyama-lite"). Deterministic: every step works on arrays sorted by
// (kind, id), ties are broken by the previous position, and no randomness is involved.

const CHAR_W = 6.6;
const LINE_H = 14;
const PAD_X = 12;
const PAD_Y = 8;
const LAYER_GAP = 56;
const NODE_GAP = 28;
const DUMMY_W = 8;

function cmp(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}

function countCrossings(upper, lower, edgesDown) {
  // edgesDown: Map node -> list of successors in the next layer (including dummies).
  const pos = new Map(lower.map((n, i) => [n, i]));
  const pairs = [];
  upper.forEach((n, i) => {
    for (const s of edgesDown.get(n) || []) if (pos.has(s)) pairs.push([i, pos.get(s)]);
  });
  let c = 0;
  for (let a = 0; a < pairs.length; a++)
    for (let b = a + 1; b < pairs.length; b++) {
      const [u1, l1] = pairs[a];
      const [u2, l2] = pairs[b];
      if ((u1 < u2 && l1 > l2) || (u1 > u2 && l1 < l2)) c++;
    }
  return c;
}

export function layoutGraph(graph) {
  const nodes = [...graph.nodes].sort((a, b) => cmp(KIND_RANK[a.kind], KIND_RANK[b.kind]) || cmp(a.id, b.id));
  const ids = nodes.map((n) => n.id);
  const index = new Map(ids.map((id, i) => [id, i]));
  const edges = [...graph.edges].sort((a, b) => cmp(index.get(a.from), index.get(b.from)) || cmp(index.get(a.to), index.get(b.to)) || cmp(a.label, b.label));

  // 1. Break cycles: a DFS in canonical order; back edges are reversed (drawn upwards).
  const out = new Map(ids.map((id) => [id, []]));
  edges.forEach((e, i) => out.get(e.from).push(i));
  const state = new Map();
  const reversed = new Set();
  const visit = (id) => {
    state.set(id, 1);
    for (const i of out.get(id)) {
      const t = edges[i].to;
      if (state.get(t) === 1) reversed.add(i);
      else if (!state.has(t)) visit(t);
    }
    state.set(id, 2);
  };
  for (const id of ids) if (!state.has(id)) visit(id);
  const dag = edges.map((e, i) => (reversed.has(i) ? { from: e.to, to: e.from, edge: i } : { from: e.from, to: e.to, edge: i }));

  // 2. Longest-path layering from the sources: layer = 1 + max(layer of predecessors).
  const preds = new Map(ids.map((id) => [id, []]));
  for (const e of dag) preds.get(e.to).push(e.from);
  const layerOf = new Map();
  const layerFor = (id) => {
    if (layerOf.has(id)) return layerOf.get(id);
    let l = 0;
    for (const p of preds.get(id)) l = Math.max(l, layerFor(p) + 1);
    layerOf.set(id, l);
    return l;
  };
  ids.forEach((id) => layerFor(id));

  // 3. Long edges get one dummy node per crossed layer, so ordering sees them.
  const items = new Map(); // id -> {id, layer, w, h, node|null}
  for (const n of nodes) {
    const w = Math.max(...n.lines.map((l) => l.length), 4) * CHAR_W + 2 * PAD_X;
    const h = Math.max(n.lines.length, 1) * LINE_H + 2 * PAD_Y;
    const point = n.kind in POINT_KINDS;
    const size = n.kind === 'root' ? [28, 28] : point ? [w - PAD_X, LINE_H + 8] : [w, h];
    items.set(n.id, { id: n.id, layer: layerOf.get(n.id), w: size[0], h: size[1], node: n });
  }
  const down = new Map([...items.keys()].map((id) => [id, []]));
  const up = new Map([...items.keys()].map((id) => [id, []]));
  const chains = []; // per dag edge: list of item ids from source to target
  dag.forEach((e, k) => {
    const chain = [e.from];
    const l0 = layerOf.get(e.from);
    const l1 = layerOf.get(e.to);
    for (let l = l0 + 1; l < l1; l++) {
      const did = `\u0000dummy${k}:${l}`;
      items.set(did, { id: did, layer: l, w: DUMMY_W, h: LINE_H, node: null });
      down.set(did, []);
      up.set(did, []);
      chain.push(did);
    }
    chain.push(e.to);
    for (let i = 0; i + 1 < chain.length; i++) {
      down.get(chain[i]).push(chain[i + 1]);
      up.get(chain[i + 1]).push(chain[i]);
    }
    chains.push(chain);
  });

  const layerCount = Math.max(0, ...[...items.values()].map((it) => it.layer + 1));
  let layers = Array.from({ length: layerCount }, () => []);
  for (const it of items.values()) layers[it.layer].push(it.id);
  // Initial order: canonical node order, dummies after (by their chain number).
  const canon = (id) => (index.has(id) ? index.get(id) : nodes.length + Number(id.slice(6).split(':')[0]));
  layers.forEach((layer) => layer.sort((a, b) => canon(a) - canon(b)));

  // 4. Barycenter sweeps, keeping the ordering with the fewest crossings.
  const total = (ls) => {
    let c = 0;
    for (let i = 0; i + 1 < ls.length; i++) c += countCrossings(ls[i], ls[i + 1], down);
    return c;
  };
  const reorder = (layer, fixed, nbrs) => {
    const pos = new Map(fixed.map((id, i) => [id, i]));
    const old = new Map(layer.map((id, i) => [id, i]));
    const bary = new Map(
      layer.map((id) => {
        const ps = nbrs.get(id).filter((n) => pos.has(n)).map((n) => pos.get(n));
        return [id, ps.length ? ps.reduce((a, b) => a + b, 0) / ps.length : old.get(id)];
      })
    );
    return [...layer].sort((a, b) => bary.get(a) - bary.get(b) || old.get(a) - old.get(b));
  };
  let best = layers.map((l) => [...l]);
  let bestCross = total(best);
  for (let sweep = 0; sweep < 8 && bestCross > 0; sweep++) {
    if (sweep % 2 === 0) for (let i = 1; i < layers.length; i++) layers[i] = reorder(layers[i], layers[i - 1], up);
    else for (let i = layers.length - 2; i >= 0; i--) layers[i] = reorder(layers[i], layers[i + 1], down);
    const c = total(layers);
    if (c < bestCross) {
      bestCross = c;
      best = layers.map((l) => [...l]);
    }
  }
  layers = best;

  // 5. Coordinates: y by layer; x packed, then pulled towards the mean of the neighbours while
  // keeping order and spacing (alternating directions, a fixed number of rounds).
  let y = 0;
  const layerY = [];
  for (const layer of layers) {
    const h = Math.max(LINE_H, ...layer.map((id) => items.get(id).h));
    layerY.push({ y, h });
    for (const id of layer) items.get(id).y = y + (h - items.get(id).h) / 2;
    y += h + LAYER_GAP;
  }
  const gap = (a, b) => (items.get(a).w + items.get(b).w) / 2 + (items.get(a).node && items.get(b).node ? NODE_GAP : NODE_GAP / 2);
  for (const layer of layers) {
    let x = 0;
    layer.forEach((id, i) => {
      if (i > 0) x += gap(layer[i - 1], id);
      items.get(id).cx = x;
    });
  }
  const place = (layer, nbrs) => {
    const want = layer.map((id) => {
      const ns = nbrs.get(id);
      return ns.length ? ns.reduce((s, n) => s + items.get(n).cx, 0) / ns.length : items.get(id).cx;
    });
    // Leftmost feasible placement respecting the wanted positions, then balance from the right.
    const xs = [...want];
    for (let i = 1; i < xs.length; i++) xs[i] = Math.max(xs[i], xs[i - 1] + gap(layer[i - 1], layer[i]));
    for (let i = xs.length - 2; i >= 0; i--) xs[i] = Math.min(xs[i], xs[i + 1] - gap(layer[i], layer[i + 1]));
    for (let i = 1; i < xs.length; i++) xs[i] = Math.max(xs[i], xs[i - 1] + gap(layer[i - 1], layer[i]));
    layer.forEach((id, i) => (items.get(id).cx = xs[i]));
  };
  for (let round = 0; round < 6; round++) {
    if (round % 2 === 0) for (let i = 1; i < layers.length; i++) place(layers[i], up);
    else for (let i = layers.length - 2; i >= 0; i--) place(layers[i], down);
  }
  const all = [...items.values()];
  const minX = all.length ? Math.min(...all.map((it) => it.cx - it.w / 2)) : 0;
  const margin = 16;
  for (const it of all) it.cx += margin - minX;
  const width = Math.max(...all.map((it) => it.cx + it.w / 2), 0) + margin;
  const height = Math.max(y - LAYER_GAP, 0) + 2 * margin;
  for (const it of all) it.y += margin;

  const placed = nodes.map((n) => {
    const it = items.get(n.id);
    return { ...n, x: it.cx - it.w / 2, y: it.y, w: it.w, h: it.h };
  });
  const routes = dag.map((e, k) => {
    const pts = chains[k].map((id) => items.get(id));
    const first = pts[0];
    const last = pts[pts.length - 1];
    const points = [[first.cx, first.y + first.h]];
    for (const d of pts.slice(1, -1)) points.push([d.cx, d.y + d.h / 2]);
    points.push([last.cx, last.y]);
    const original = edges[e.edge];
    return { from: original.from, to: original.to, label: original.label, reversed: reversed.has(e.edge), points };
  });
  return { width, height, nodes: placed, edges: routes, crossings: bestCross };
}

// ---------------------------------------------------------------------------------------------
// SVG rendering.

const SVG = 'http://www.w3.org/2000/svg';

function el(name, attrs = {}, parent) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (parent) parent.appendChild(e);
  return e;
}

function pathFor(points, reversed) {
  const pts = reversed ? [...points].reverse() : points;
  let d = `M${pts[0][0].toFixed(1)},${pts[0][1].toFixed(1)}`;
  for (let i = 1; i < pts.length; i++) {
    const [x0, y0] = pts[i - 1];
    const [x1, y1] = pts[i];
    const my = (y0 + y1) / 2;
    d += ` C${x0.toFixed(1)},${my.toFixed(1)} ${x1.toFixed(1)},${my.toFixed(1)} ${x1.toFixed(1)},${y1.toFixed(1)}`;
  }
  return d;
}

/// Renders the laid-out graph as an SVG element. `navigate(href)` is called when a node is
/// activated (click, Enter or Space).
export function renderGraph(layout, navigate) {
  const svg = el('svg', {
    class: 'graph',
    viewBox: `0 0 ${Math.ceil(layout.width)} ${Math.ceil(layout.height)}`,
    width: Math.ceil(layout.width),
    height: Math.ceil(layout.height),
    role: 'img',
    'data-nodes': layout.nodes.length,
    'data-edges': layout.edges.length,
  });
  const defs = el('defs', {}, svg);
  const marker = el('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' }, defs);
  el('path', { d: 'M0,0 L10,5 L0,10 z', class: 'arrowhead' }, marker);

  const edgeLayer = el('g', { class: 'edges' }, svg);
  for (const e of layout.edges) {
    const g = el('g', { class: 'edge', 'data-from': e.from, 'data-to': e.to }, edgeLayer);
    el('path', { d: pathFor(e.points, e.reversed), 'marker-end': 'url(#arrow)' }, g);
    if (e.label) {
      const mid = e.points[Math.floor((e.points.length - 1) / 2)];
      const next = e.points[Math.floor((e.points.length - 1) / 2) + 1] || mid;
      const t = el('text', { x: ((mid[0] + next[0]) / 2 + 4).toFixed(1), y: ((mid[1] + next[1]) / 2 + 4).toFixed(1), class: 'edge-label' }, g);
      t.textContent = e.label;
    }
  }
  const nodeLayer = el('g', { class: 'nodes' }, svg);
  for (const n of layout.nodes) {
    const cls = ['node', `node-${n.kind}`];
    if (n.status) cls.push(`status-${n.status}`);
    if (n.focus) cls.push('focus');
    if (n.href) cls.push('link');
    const g = el('g', { class: cls.join(' '), 'data-id': n.entity, transform: `translate(${n.x.toFixed(1)},${n.y.toFixed(1)})` }, nodeLayer);
    if (n.href) {
      g.setAttribute('tabindex', '0');
      g.setAttribute('role', 'link');
      g.setAttribute('aria-label', n.lines.join(', '));
      const go = () => navigate(n.href);
      g.addEventListener('click', go);
      g.addEventListener('keydown', (ev) => {
        if (ev.key === 'Enter' || ev.key === ' ') {
          ev.preventDefault();
          go();
        }
      });
    }
    const title = el('title', {}, g);
    title.textContent = (n.tip && n.tip.length ? n.tip : n.lines).join('\n');
    if (n.kind === 'run' || n.kind === 'upload') {
      el('ellipse', { cx: n.w / 2, cy: n.h / 2, rx: n.w / 2, ry: n.h / 2, class: 'shape' }, g);
    } else if (n.kind in POINT_KINDS) {
      el('rect', { width: n.w, height: n.h, rx: n.h / 2, class: 'shape' }, g);
    } else if (n.kind === 'root') {
      el('path', { d: `M${n.w / 2},0 L${n.w},${n.h / 2} L${n.w / 2},${n.h} L0,${n.h / 2} z`, class: 'shape' }, g);
    } else {
      el('rect', { width: n.w, height: n.h, rx: n.kind === 'data' ? 6 : 2, class: 'shape' }, g);
      if (n.kind === 'plan') el('rect', { x: 3, y: 3, width: n.w - 6, height: n.h - 6, rx: 1, class: 'inner' }, g);
    }
    const top = n.kind in POINT_KINDS ? 4 : PAD_Y;
    const text = el('text', { x: n.w / 2, y: top + LINE_H - 3, 'text-anchor': 'middle' }, g);
    n.lines.forEach((line, i) => {
      const span = el('tspan', { x: n.w / 2, dy: i === 0 ? 0 : LINE_H, class: i === 0 ? 'title' : '' }, text);
      span.textContent = line;
    });
  }
  return svg;
}
