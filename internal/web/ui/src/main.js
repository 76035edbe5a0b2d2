// vswitch console: the live topology (cytoscape.js, dagre layout), the
// details of what is selected, and forms that mirror vswitchctl. All
// state comes from vswitchd's REST API; changes arrive on its event
// stream (GET /v1/events), never by reloading.
import cytoscape from 'cytoscape';
import dagre from 'cytoscape-dagre';
import svg from 'cytoscape-svg';
import { h, clear, ranges, inRanges, vlanColor, download } from './util.js';
import { openForm, edited } from './forms.js';

cytoscape.use(dagre);
cytoscape.use(svg);

// A switch with more adapters than this is drawn as one group node until
// it is expanded (select it, or search for something on it).
const COLLAPSE_AT = 24;
// With more adapters than this drawn, the picture is compact: each switch
// is a block with its ports in a grid, adapters are labelled with their
// VM's name and VMs are not drawn as nodes of their own.
const COMPACT_AT = 150;
// A VM with more adapters than this is drawn with one node for them until
// it is selected or searched into.
const VM_COLLAPSE_AT = 6;

const $ = (s) => document.querySelector(s);
const ui = {
  topo: null, cy: null, selected: null, expanded: new Set(), expandedVMs: new Set(), expandAll: false, vlan: 0, host: '',
  structure: '', keys: new Map(), events: null, statsFor: '', statsWant: '', statsHost: '', statsTimer: 0, stats: null, firstRender: null,
};
window.vswitch = ui; // for tests and the curious: the topology as last pushed, render timings

// ---- API -------------------------------------------------------------

// The API's paths of a switch, a VM and an adapter.
const swPath = (name) => '/v1/switches/' + encodeURIComponent(name);
const vmPath = (name) => '/v1/vms/' + encodeURIComponent(name);
const adPath = (vm, name) => vmPath(vm) + '/adapters/' + encodeURIComponent(name);

export async function api(method, path, body, host) {
  const init = { method, credentials: 'same-origin', headers: {} };
  // A read of another host's live data is answered by that host (through this one).
  if (host && host !== ui.topo.self) init.headers['Vswitch-Host'] = host;
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (r.status === 401) loggedOut();
  if (!r.ok) {
    const e = new Error((data && data.error && data.error.message) || text || r.statusText);
    e.status = r.status;
    e.problems = (data && data.error && data.error.problems) || [];
    throw e;
  }
  return data;
}

function loggedOut() {
  if (ui.events) ui.events.close();
  clearInterval(ui.statsTimer);
  clearInterval(ui.consoleTimer);
  setLive(false, 'logged out: open the URL that vswitchctl console prints');
}

function setLive(up, text) {
  const el = $('#live');
  el.className = up ? 'up' : 'down';
  el.textContent = text;
}

// ---- event stream ------------------------------------------------------

function connect() {
  if (ui.events) ui.events.close();
  const q = new URLSearchParams();
  if (ui.host) q.set('host', ui.host);
  if (ui.statsFor) q.set('stats', ui.statsFor);
  const es = new EventSource('/v1/events?' + q);
  ui.events = es;
  es.addEventListener('open', () => setLive(true, 'live'));
  es.addEventListener('topology', (ev) => {
    const t0 = performance.now();
    const t = JSON.parse(ev.data);
    const t1 = performance.now();
    render(t);
    ui.lastPush = { at: t0, parseMs: t1 - t0, renderMs: performance.now() - t1, bytes: ev.data.length };
  });
  es.addEventListener('stats', (ev) => { ui.stats = JSON.parse(ev.data); showStats(); });
  es.addEventListener('error', async () => {
    setLive(false, 'reconnecting…');
    try { await api('GET', '/v1/host'); } catch (e) { if (e.status === 401) es.close(); }
  });
}

// watchStats shows the counters of switch sw as they are on host: pushed
// on this host's event stream, or read from another host every 2 s.
function watchStats(sw, host) {
  const remote = host && ui.topo && host !== ui.topo.self ? host : '';
  if (sw === ui.statsWant && remote === ui.statsHost) return;
  ui.statsWant = sw;
  clearInterval(ui.statsTimer);
  ui.statsHost = remote;
  ui.stats = null;
  if (remote) {
    const read = () => api('GET', swPath(sw) + '/stats', undefined, remote)
      .then((st) => { ui.stats = st; showStats(); }).catch(() => {});
    ui.statsTimer = setInterval(read, 2000);
    read();
    sw = '';
  }
  if (sw === ui.statsFor) return;
  ui.statsFor = sw;
  connect();
}

// where is the host whose part of switch ts to show: its own host, or
// this host's part of a spanning switch.
function where(ts) { return ts && !ts.span && ts.host ? ts.host : ''; }

// ---- the picture -------------------------------------------------------

function isCluster(t) { return Boolean(t.hosts && t.hosts.length > 0); }

function portClasses(p) {
  const c = ['port'];
  if (p.state && p.state !== 'up') c.push('down', 'state-' + p.state);
  if (p.tagged) c.push('tagged');
  return c.join(' ');
}

function portColor(p) {
  const u = ranges(p.untagged);
  return u.length === 1 && u[0][0] === u[0][1] ? vlanColor(u[0][0]) : '#7b8494';
}

function box(label) {
  const lines = label.split('\n');
  return { w: Math.max(...lines.map((l) => l.length)) * 6.4 + 18, h: lines.length * 13 + 12 };
}

function node(id, label, kind, classes, extra) {
  return { group: 'nodes', data: { id, label, kind, ...box(label), ...extra }, classes: kind + ' ' + (classes || '') };
}

function edge(a, b) { return { group: 'edges', data: { id: a + '>' + b, source: a, target: b } }; }

// elements turns the topology into nodes and edges: hosts (in a cluster)
// hold their switches, ports and VMs; a switch links to its uplink, its
// host adapter and its adapters, each adapter to its VM.
function elements(t) {
  const els = [];
  const cluster = isCluster(t);
  const parent = (host) => (cluster && host ? 'host:' + host : undefined);
  if (cluster) {
    for (const hs of t.hosts) {
      els.push(node('host:' + hs.name, hs.name + (hs.up ? '' : ' (down)'), 'host', hs.up ? '' : 'down', { name: hs.name }));
    }
  }
  const vms = new Map(t.vms.map((v) => [v.name, v]));
  const drawn = new Set();
  const expanded = (sw) => sw.adapters.length <= COLLAPSE_AT || ui.expandAll || ui.expanded.has(sw.name);
  const compact = t.switches.reduce((n, sw) => n + (expanded(sw) ? sw.adapters.length : 0), 0) > COMPACT_AT;
  ui.compact = compact;
  const withAdapters = new Set();
  const perVM = new Map();
  for (const sw of t.switches) for (const a of sw.adapters) perVM.set(a.vm, (perVM.get(a.vm) || 0) + 1);
  const vmFolded = (vm) => !compact && perVM.get(vm) > VM_COLLAPSE_AT && !ui.expandAll && !ui.expandedVMs.has(vm);
  const linked = new Set();
  for (const sw of t.switches) {
    const sid = 'sw:' + sw.name;
    let label = sw.name + '\n' + sw.type + (sw.datapath === 'kernel' ? ' · kernel' : '');
    if (sw.span) label += '\nspans ' + (sw.spanHosts || 'every host') + ' · VNI ' + sw.vni;
    els.push(node(sid, label, 'switch', sw.running ? '' : 'down', { name: sw.name, parent: sw.span ? undefined : parent(sw.host) }));
    const port = (id, p, title) => {
      els.push(node(id, title + '\n' + p.vlan, 'port', portClasses(p), { name: sw.name, sw: sw.name, color: portColor(p), untagged: p.untagged, tagged: p.tagged, state: p.state, parent: parent(sw.host) }));
      els.push(edge(sid, id));
    };
    if (sw.uplink) port('up:' + sw.name, sw.uplink, 'NIC ' + sw.uplink.name);
    if (sw.hostAdapter) port('ha:' + sw.name, sw.hostAdapter, 'host adapter');
    for (const a of sw.adapters) withAdapters.add(a.vm);
    if (!expanded(sw)) {
      const gid = 'grp:' + sw.name;
      els.push(node(gid, sw.adapters.length + ' adapters\n(select to expand)', 'group', '', { sw: sw.name, parent: sw.span ? undefined : parent(sw.host) }));
      els.push(edge(sid, gid));
      continue;
    }
    for (const a of sw.adapters) {
      if (vmFolded(a.vm)) {
        // The VM's adapters are one node, linked to each of their switches once.
        const gid = 'vmgrp:' + a.vm;
        if (!drawn.has(a.vm)) {
          drawn.add(a.vm);
          els.push(node(gid, perVM.get(a.vm) + ' adapters of ' + a.vm + '\n(select to expand)', 'group', '', { vm: a.vm, parent: parent(a.host) }));
          els.push(vmNode(vms.get(a.vm) || { name: a.vm }, parent), edge(gid, 'vm:' + a.vm));
        }
        if (!linked.has(sid + gid)) {
          linked.add(sid + gid);
          els.push(edge(sid, gid));
        }
        continue;
      }
      const id = 'ad:' + a.name;
      els.push(node(id, (compact ? a.name : a.name.split('/')[1]) + '\n' + a.vlan + '\n' + a.mac, 'port', 'adapter ' + portClasses(a),
        { name: a.name, sw: sw.name, vm: a.vm, color: portColor(a), untagged: a.untagged, tagged: a.tagged, state: a.state, parent: parent(a.host) }));
      els.push(edge(sid, id));
      if (compact) continue;
      if (!drawn.has(a.vm)) {
        drawn.add(a.vm);
        els.push(vmNode(vms.get(a.vm) || { name: a.vm }, parent));
      }
      els.push(edge(id, 'vm:' + a.vm));
    }
  }
  for (const v of t.vms) {
    if (!drawn.has(v.name) && !withAdapters.has(v.name)) els.push(vmNode(v, parent));
  }
  return els;
}

// ---- layout ----------------------------------------------------------------

// place lays the picture out: layered (dagre) for a few ports, switch
// blocks for many; then the disconnected parts are packed into rows that
// fit the view instead of one long line.
function place(cy, t) {
  if (ui.compact) {
    cy.nodes('.switch').forEach((sw) => grid(sw, sw.outgoers('node')));
    grid(null, cy.nodes('.vm').filter((n) => n.degree() === 0));
  } else {
    cy.layout({ name: 'dagre', rankDir: 'TB', nodeSep: 14, rankSep: 70, padding: 20, animate: false }).run();
    if (isCluster(t)) {
      fit(cy);
      return;
    }
  }
  if (isCluster(t)) {
    const units = [];
    cy.nodes('.host').forEach((h) => {
      pack(h.children().components());
      units.push(h.union(h.descendants()));
    });
    units.push(...cy.nodes().orphans().not('.host').components());
    pack(units);
  } else {
    pack(cy.elements().components());
  }
  fit(cy);
}

// fit shows the whole picture, no larger than 1.3 times its size.
function fit(cy) {
  cy.fit(undefined, 20);
  if (cy.zoom() > 1.3) {
    cy.zoom(1.3);
    cy.center();
  }
}

// grid puts head on top and nodes in a grid under it, about square.
function grid(head, nodes) {
  if (nodes.empty()) return;
  const cols = Math.max(1, Math.ceil(Math.sqrt(nodes.length * 1.6)));
  const cw = Math.max(...nodes.map((n) => n.data('w'))) + 12;
  const ch = Math.max(...nodes.map((n) => n.data('h'))) + 12;
  const top = head ? head.data('h') + 40 : 0;
  nodes.forEach((n, i) => { n.position({ x: (i % cols) * cw, y: top + Math.floor(i / cols) * ch }); });
  if (head) head.position({ x: ((Math.min(cols, nodes.length) - 1) * cw) / 2, y: 0 });
}

// pack moves each unit (a collection) into rows about as wide as the view
// is wide for their total area.
function pack(units) {
  const gap = 40;
  const items = units.map((u) => ({ u, bb: u.boundingBox() })).filter((x) => x.u.nonempty());
  if (items.length < 2) return;
  const area = items.reduce((sum, x) => sum + (x.bb.w + gap) * (x.bb.h + gap), 0);
  const aspect = ui.cy.width() / Math.max(ui.cy.height(), 1);
  const rowW = Math.max(Math.sqrt(area * aspect), ...items.map((x) => x.bb.w));
  let x = 0;
  let y = 0;
  let rowH = 0;
  for (const { u, bb } of items) {
    if (x > 0 && x + bb.w > rowW) {
      x = 0;
      y += rowH + gap;
      rowH = 0;
    }
    const dx = x - bb.x1;
    const dy = y - bb.y1;
    u.nodes().filter((n) => !n.isParent()).forEach((n) => {
      const p = n.position();
      n.position({ x: p.x + dx, y: p.y + dy });
    });
    x += bb.w + gap;
    rowH = Math.max(rowH, bb.h);
  }
}

function vmNode(v, parent) {
  const down = v.state === 'stopped' || v.state === 'exited';
  return node('vm:' + v.name, 'VM ' + v.name + (v.state ? '\n' + v.state : ''), 'vm', down ? 'down' : '', { name: v.name, parent: parent(v.host) });
}

const style = [
  { selector: 'node', style: { label: 'data(label)', 'text-wrap': 'wrap', 'font-size': 10, 'text-valign': 'center', 'text-halign': 'center', width: 'data(w)', height: 'data(h)', shape: 'round-rectangle', 'background-color': '#eef1f6', 'border-width': 2, 'border-color': '#7b8494', color: '#1d2330' } },
  { selector: 'node.port', style: { 'border-color': 'data(color)', 'border-width': 3 } },
  { selector: 'node.tagged', style: { 'border-style': 'dashed' } },
  { selector: 'node.switch', style: { 'background-color': '#2457c5', 'border-color': '#173a87', color: '#fff', 'font-weight': 'bold' } },
  { selector: 'node.vm', style: { shape: 'rectangle', 'background-color': '#fff4d6', 'border-color': '#b08a2e' } },
  { selector: 'node.group', style: { 'background-color': '#e4e8f0', 'border-style': 'double', 'border-width': 4 } },
  { selector: 'node.host', style: { shape: 'round-rectangle', 'background-color': '#f3f6fb', 'border-color': '#9aa3b2', 'text-valign': 'top', 'text-halign': 'center', 'font-size': 13, 'font-weight': 'bold', padding: 16 } },
  { selector: 'node.down', style: { 'background-color': '#e3e3e3', color: '#6b6b6b', 'border-color': '#9e9e9e', 'border-style': 'dotted' } },
  { selector: 'node.state-failed', style: { 'border-color': '#b3261e', 'border-style': 'solid' } },
  { selector: 'edge', style: { width: 1.5, 'line-color': '#9aa3b2', 'curve-style': 'bezier' } },
  { selector: '.dim', style: { opacity: 0.18 } },
  { selector: 'node.carries-u', style: { 'border-width': 6, 'border-color': 'data(hl)', 'border-style': 'solid' } },
  { selector: 'node.carries-t', style: { 'border-width': 6, 'border-color': 'data(hl)', 'border-style': 'dashed' } },
  { selector: 'node.match', style: { 'outline-width': 4, 'outline-color': '#f2a900', 'outline-offset': 3 } },
  { selector: 'node:selected', style: { 'overlay-color': '#f2a900', 'overlay-opacity': 0.25, 'overlay-padding': 6 } },
];

function render(t) {
  const t0 = performance.now();
  ui.topo = t;
  document.body.classList.toggle('cluster', isCluster(t));
  fillPickers(t);
  const els = elements(t);
  const structure = els.map((e) => e.data.id + '@' + (e.data.parent || '')).join('|');
  const cy = ui.cy;
  // Only what changed is touched: a change to one port of 1,000 restyles one node.
  const keys = new Map(els.map((e) => [e.data.id, JSON.stringify([e.data, e.classes])]));
  if (structure === ui.structure) {
    cy.batch(() => {
      for (const e of els) {
        if (ui.keys.get(e.data.id) === keys.get(e.data.id)) continue;
        const el = cy.getElementById(e.data.id);
        el.data(e.data);
        if (e.classes !== undefined) el.classes(e.classes);
      }
    });
  } else {
    ui.structure = structure;
    cy.batch(() => {
      cy.elements().remove();
      cy.add(els);
    });
    place(cy, t);
  }
  ui.keys = keys;
  highlightVLAN();
  reselect();
  ui.lastRenderMs = performance.now() - t0;
  ui.renders = (ui.renders || 0) + 1;
  if (ui.firstRender === null) {
    ui.firstRender = ui.lastRenderMs;
    ui.firstRenderAt = performance.now(); // since the navigation started
  }
  document.body.dataset.revision = String(ui.renders);
}

function fillPickers(t) {
  const vids = new Set();
  for (const sw of t.switches) {
    for (const p of [sw.uplink, sw.hostAdapter, ...sw.adapters]) {
      if (!p) continue;
      for (const [lo, hi] of [...ranges(p.untagged), ...ranges(p.tagged)]) {
        if (hi - lo < 64) for (let v = lo; v <= hi; v++) vids.add(v);
      }
    }
  }
  const sorted = [...vids].sort((a, b) => a - b);
  const pick = $('#vlan-pick');
  const want = ['', ...sorted.map(String)].join(',');
  if (pick.dataset.options !== want) {
    pick.dataset.options = want;
    clear(pick).append(h('option', { value: '' }, 'all'), ...sorted.map((v) => h('option', { value: String(v) }, 'VLAN ' + v)));
    pick.value = ui.vlan ? String(ui.vlan) : '';
    const legend = clear($('#legend'));
    for (const v of sorted.slice(0, 24)) {
      const b = h('button', { type: 'button', title: 'highlight VLAN ' + v, style: 'border-color:' + vlanColor(v) }, String(v));
      b.addEventListener('click', () => { pick.value = ui.vlan === v ? '' : String(v); pick.dispatchEvent(new Event('change')); });
      legend.append(b);
    }
    if (sorted.length > 24) legend.append(h('span', {}, '+' + (sorted.length - 24) + ' more in the VLAN list'));
  }
  const hp = $('#host-pick');
  const hosts = (t.hosts || []).map((x) => x.name).join(',');
  if (hp.dataset.options !== hosts) {
    hp.dataset.options = hosts;
    clear(hp).append(h('option', { value: '' }, 'every host'), ...(t.hosts || []).map((x) => h('option', { value: x.name }, x.name)));
    hp.value = ui.host;
  }
}

// highlightVLAN marks the ports that carry the chosen VLAN (solid border:
// it leaves untagged; dashed: tagged) and dims everything else.
function highlightVLAN() {
  const cy = ui.cy;
  const v = ui.vlan;
  cy.batch(() => {
    cy.elements().removeClass('dim carries-u carries-t');
    if (!v) return;
    const keep = cy.collection();
    cy.nodes('.port').forEach((n) => {
      const u = inRanges(n.data('untagged'), v);
      const tg = inRanges(n.data('tagged'), v);
      if (!u && !tg) return;
      n.data('hl', vlanColor(v));
      n.addClass(u ? 'carries-u' : 'carries-t');
      keep.merge(n).merge(n.connectedEdges()).merge(n.neighborhood('node.switch, node.vm'));
    });
    cy.elements().not(keep).not('node.host').addClass('dim');
  });
}

// showVM shows a VM's details, also where the picture has no node for it
// (compact views reach VMs through their adapters).
function showVM(vm) {
  const el = ui.cy.getElementById('vm:' + vm);
  if (el.nonempty()) {
    select(el.id());
    return;
  }
  ui.cy.elements().unselect();
  ui.selected = 'vm:' + vm;
  panel().dataset.for = ui.selected;
  ui.panelSeq++;
  clearInterval(ui.consoleTimer);
  vmDetails(clear(panel()), vm).catch((e) => alertIn(e.message));
}

function reselect() {
  if (!ui.selected) return;
  const el = ui.cy.getElementById(ui.selected);
  if (el.empty() && ui.selected.startsWith('vm:') && ui.topo.vms.some((v) => 'vm:' + v.name === ui.selected)) {
    return; // a VM shown without a node of its own (showVM)
  }
  if (el.empty()) {
    ui.selected = null;
    showNothing();
    return;
  }
  if (!el.selected()) { ui.cy.elements().unselect(); el.select(); }
  showDetails(el, false);
}

// ---- details -------------------------------------------------------------

const panel = () => $('#details');

function showNothing() {
  clear(panel()).append(h('p', { class: 'hint' }, 'Select a switch, a port or a VM to see its settings, counters and MAC table.'));
}

function kv(obj) {
  const dl = h('dl', { class: 'kv' });
  for (const [k, v] of Object.entries(obj)) {
    if (v === undefined || v === '' || v === null) continue;
    dl.append(h('dt', {}, k), h('dd', {}, typeof v === 'object' ? JSON.stringify(v) : String(v)));
  }
  return dl;
}

function button(label, onClick, cls) {
  const b = h('button', { type: 'button', class: cls || '' }, label);
  b.addEventListener('click', onClick);
  return b;
}

// deleteButton deletes what (after asking) at path, and clears the selection.
function deleteButton(what, path) {
  return button('Delete', () => guarded(async () => {
    if (confirm('Delete ' + what + '?')) {
      await api('DELETE', path);
      select(null);
    }
  }), 'danger');
}

async function guarded(fn) {
  try { await fn(); } catch (e) { alertIn(e.message); }
}

function alertIn(msg) {
  const p = h('p', { class: 'form-error', role: 'alert' }, msg);
  panel().prepend(p);
}

function findSwitch(name) { return ui.topo.switches.find((s) => s.name === name); }

// showDetails fills the panel for the selected element; full is false on
// a live update (only what changes is refreshed).
async function showDetails(el, full = true) {
  const kind = el.data('kind');
  const id = el.id();
  if (!full && panel().dataset.for === id) {
    const vm = kind === 'vm' && ui.topo.vms.find((v) => v.name === el.data('name'));
    if (!vm || (vm.state || '') === panel().dataset.state) {
      if (vm) refreshConsole(vm.name);
      return;
    } // a VM that started or stopped: its details anew
  }
  panel().dataset.for = id;
  ui.panelSeq = (ui.panelSeq || 0) + 1;
  clearInterval(ui.consoleTimer);
  const p = clear(panel());
  if (kind === 'switch') return switchDetails(p, el.data('name'));
  if (kind === 'group') {
    p.append(h('h2', {}, el.data('label').split('\n')[0]), button('Expand', () => expandGroup(el)));
    return;
  }
  if (kind === 'vm') return vmDetails(p, el.data('name'));
  if (kind === 'host') {
    const hs = (ui.topo.hosts || []).find((x) => x.name === el.data('name')) || {};
    p.append(h('h2', {}, 'Host ' + hs.name), kv({ VTEP: hs.vtep, MTU: hs.mtu, version: hs.version, started: hs.started, 'last seen': hs.lastSeen, state: hs.up ? 'up' : 'down' }));
    return;
  }
  if (id.startsWith('ad:')) return adapterDetails(p, el.data('vm'), el.data('name').split('/')[1], el.data('sw'));
  const sw = findSwitch(el.data('sw'));
  const isUp = id.startsWith('up:');
  const port = isUp ? sw.uplink : sw.hostAdapter;
  watchStats(sw.name, where(sw));
  p.append(h('h2', {}, (isUp ? 'Uplink NIC ' : 'Host adapter ') + port.name), kv({ switch: sw.name, VLAN: port.vlan, untagged: port.untagged, tagged: port.tagged, state: port.state }),
    h('div', { class: 'actions' }, button('Edit switch', () => editSwitch(sw.name))),
    h('h3', {}, 'Counters'), h('div', { id: 'stats', 'data-port': isUp ? 'uplink' : 'host' }));
  showStats();
}

// current reports whether the panel still shows what was selected when
// seq was taken: an answer that comes after another selection is dropped.
function current(seq) { return seq === ui.panelSeq; }

async function switchDetails(p, name) {
  const seq = ui.panelSeq;
  watchStats(name, where(findSwitch(name)));
  const s = await api('GET', swPath(name));
  if (!current(seq)) return;
  const ts = findSwitch(name) || {};
  p.append(h('h2', {}, 'Switch ' + name),
    kv({ type: s.type, uplink: s.uplink, 'management OS': s.type === 'external' ? String(s.allowManagementOS !== false) : undefined, 'default VLAN': s.defaultVLAN || 1, 'data path': ts.datapath, running: String(ts.running), host: s.host, span: s.span ? (s.hosts || 'every host') : undefined, VNI: s.vni || undefined, MTU: ts.mtu || undefined, notes: s.notes }),
    h('div', { class: 'actions' },
      button('Edit', () => editSwitch(name)),
      button('Add adapter', () => newAdapter({ switch: name })),
      deleteButton('switch ' + name, swPath(name))),
    h('h3', {}, 'Counters'), h('div', { id: 'stats' }),
    h('h3', {}, 'MAC table' + (ts.span && ui.topo.self ? ' (on ' + ui.topo.self + ')' : '')), fdbView(name, where(ts)));
  showStats();
}

function fdbView(sw, host) {
  const wrap = h('div', {});
  const f = h('form', { class: 'fdb-filter' });
  const vlan = h('input', { name: 'vlan', 'aria-label': 'filter by VLAN', placeholder: 'VLAN', type: 'number', min: '1', max: '4094' });
  const mac = h('input', { name: 'mac', 'aria-label': 'filter by MAC', placeholder: 'MAC' });
  const port = h('input', { name: 'port', 'aria-label': 'filter by port', placeholder: 'port' });
  f.append(vlan, mac, port, h('button', { type: 'submit' }, 'Filter'));
  const out = h('div', {});
  const load = async () => {
    const q = new URLSearchParams({ limit: '500' });
    for (const i of [vlan, mac, port]) if (i.value) q.set(i.name, i.value);
    try {
      const page = await api('GET', swPath(sw) + '/fdb?' + q, undefined, host);
      const t = h('table', { 'aria-label': 'MAC table of ' + sw }, h('thead', {}, h('tr', {}, ...['VLAN', 'MAC', 'port', 'type', 'age'].map((x) => h('th', {}, x)))));
      const tb = h('tbody');
      for (const e of page.entries) tb.append(h('tr', {}, h('td', {}, String(e.vlan || 'all')), h('td', {}, e.mac), h('td', {}, e.port), h('td', {}, e.static ? 'static' : 'learned'), h('td', { class: 'num' }, e.static ? '' : e.ageSeconds.toFixed(0) + ' s')));
      t.append(tb);
      clear(out).append(page.entries.length ? t : h('p', { class: 'hint' }, 'no entries'));
    } catch (e) {
      clear(out).append(h('p', { class: 'form-error' }, e.message));
    }
  };
  f.addEventListener('submit', (e) => { e.preventDefault(); load(); });
  wrap.append(f, out);
  load();
  return wrap;
}

async function vmDetails(p, name) {
  const seq = ui.panelSeq;
  const vm = await api('GET', '/v1/vms').then((l) => l.find((v) => v.name === name));
  if (!vm || !current(seq)) return;
  const tv = ui.topo.vms.find((v) => v.name === name) || {};
  const runnable = vm.kernel || vm.disk;
  const running = tv.state === 'running';
  panel().dataset.state = tv.state || '';
  p.append(h('h2', {}, 'VM ' + name), kv({ host: vm.host, state: tv.state, memory: vm.memoryMiB ? vm.memoryMiB + ' MiB' : undefined, CPUs: vm.cpus, kernel: vm.kernel, disk: vm.disk, notes: vm.notes }),
    h('div', { class: 'actions' },
      runnable && !running ? button('Start', () => guarded(() => api('POST', vmPath(name) + '/start'))) : '',
      runnable && running ? button('Stop', () => guarded(() => api('POST', vmPath(name) + '/stop'))) : '',
      button('Edit', () => editVM(vm)),
      button('Add adapter', () => newAdapter({ vm: name })),
      deleteButton('VM ' + name + ' and its adapters', vmPath(name) + '?force=true')));
  if (runnable) {
    p.append(h('h3', {}, 'Console'), h('pre', { class: 'console', id: 'console', tabindex: '0', 'aria-label': 'console of ' + name }));
    refreshConsole(name);
    // The console's tail is read again every 2 s while it is shown.
    clearInterval(ui.consoleTimer);
    ui.consoleTimer = setInterval(() => {
      if (!current(seq) || !document.getElementById('console')) clearInterval(ui.consoleTimer);
      else refreshConsole(name);
    }, 2000);
  }
}

async function refreshConsole(name) {
  const pre = $('#console');
  if (!pre) return;
  try {
    const text = await fetch(vmPath(name) + '/console', { credentials: 'same-origin' }).then((r) => r.text());
    let s = text;
    try { const j = JSON.parse(text); s = j.console !== undefined ? j.console : text; } catch { /* plain text */ }
    // Terminal control sequences (the firmware's, the guest's) are not text.
    s = s.replace(/\x1b\[[0-9;?]*[A-Za-z]|\x1b[c()][0-9A-Za-z]?|\r/g, '');
    pre.textContent = s.split('\n').slice(-200).join('\n');
    pre.scrollTop = pre.scrollHeight;
  } catch { /* the next update tries again */ }
}

async function adapterDetails(p, vm, name, sw) {
  const seq = ui.panelSeq;
  const tp = (findSwitch(sw) || { adapters: [] }).adapters.find((x) => x.name === vm + '/' + name) || {};
  watchStats(sw, tp.host);
  const a = await api('GET', adPath(vm, name));
  if (!current(seq)) return;
  p.append(h('h2', {}, 'Adapter ' + vm + '/' + name),
    kv({ switch: a.switch, MAC: a.mac + (a.dynamicMAC ? ' (dynamic)' : ' (static)'), type: a.type || 'synthetic', VLAN: tp.vlan, untagged: tp.untagged, tagged: tp.tagged, attachment: [a.attachment.kind, a.attachment.namespace, a.attachment.device, a.attachment.socket].filter(Boolean).join(' '), 'MAC spoofing guard': String(a.macSpoofGuard !== false), 'MAC limit': a.macLimit ? String(a.macLimit) : 'none of its own', state: tp.state }),
    h('div', { class: 'actions' },
      button('Edit', () => editAdapter(a)),
      button('VM ' + vm, () => showVM(vm)),
      deleteButton('adapter ' + vm + '/' + name, adPath(vm, name))),
    h('h3', {}, 'Counters'), h('div', { id: 'stats', 'data-port': vm + '/' + name }));
  showStats();
}

const fmt = (n) => n.toLocaleString('en');

// showStats fills the counters of what is selected from the last pushed
// counters of its switch.
function showStats() {
  const box = $('#stats');
  if (!box) return;
  if (!ui.stats || ui.stats.switch !== ui.statsWant) {
    clear(box).append(h('p', { class: 'hint' }, 'waiting for counters (the switch does not run here?)'));
    return;
  }
  const only = box.dataset.port;
  const ports = ui.stats.ports.filter((p) => !only || p.port === only);
  const t = h('table', { 'aria-label': 'counters' }, h('thead', {}, h('tr', {}, ...['port', 'rx frames', 'rx bytes', 'tx frames', 'tx bytes', 'drops'].map((x) => h('th', {}, x)))));
  const tb = h('tbody');
  for (const p of ports) {
    const drops = Object.entries(p.drops || {}).filter(([, n]) => n > 0);
    tb.append(h('tr', {}, h('td', {}, p.port), h('td', { class: 'num' }, fmt(p.rxPackets)), h('td', { class: 'num' }, fmt(p.rxBytes)), h('td', { class: 'num' }, fmt(p.txPackets)), h('td', { class: 'num' }, fmt(p.txBytes)),
      h('td', {}, drops.length ? drops.map(([r, n]) => r + ' ' + fmt(n)).join(', ') : '0')));
  }
  t.append(tb);
  clear(box).append(t);
}

// ---- forms ---------------------------------------------------------------

async function nics() { try { return await api('GET', '/v1/host/nics'); } catch { return []; } }

async function newSwitch() {
  openForm('switch', { type: 'private', allowManagementOS: true }, { nics: await nics() },
    (s) => api('POST', '/v1/switches', s), (s) => select('sw:' + s.name));
}

async function editSwitch(name) {
  const s = await api('GET', swPath(name));
  openForm('switch', s, { nics: await nics(), editing: true },
    (n) => api('PUT', swPath(name), edited('switch', s, n)));
}

function newVM() {
  openForm('vm', {}, {}, (v) => api('POST', '/v1/vms', v), (v) => select('vm:' + v.name));
}

function editVM(vm) {
  openForm('vm', vm, { editing: true }, (v) => api('PUT', vmPath(vm.name), edited('vm', vm, v)));
}

function pickers() {
  return { vms: ui.topo.vms.map((v) => v.name), switches: ui.topo.switches.map((s) => s.name) };
}

function newAdapter(initial) {
  openForm('adapter', { type: 'synthetic', attachment: { kind: 'netns' }, macSpoofGuard: true, ...initial }, pickers(),
    (a) => api('POST', '/v1/adapters', a), (a) => select('ad:' + a.vm + '/' + a.name));
}

function editAdapter(a) {
  openForm('adapter', a, { ...pickers(), editing: true },
    (n) => api('PUT', adPath(a.vm, a.name),
      { ...edited('adapter', a, n), dynamicMAC: !n.mac || (a.dynamicMAC && n.mac === a.mac) }));
}

async function macPool() {
  const hst = await api('GET', '/v1/host');
  openForm('pool', hst, {}, (p) => api('PUT', '/v1/host', edited('pool', hst, p)));
}

// ---- selection, search, keyboard ---------------------------------------

// expandGroup draws the adapters a group node stands for (a switch's or a VM's).
function expandGroup(n) {
  if (n.data('vm')) ui.expandedVMs.add(n.data('vm'));
  else ui.expanded.add(n.data('sw'));
  render(ui.topo);
}

function select(id) {
  ui.selected = id;
  const cy = ui.cy;
  cy.elements().unselect();
  if (!id) {
    panel().dataset.for = '';
    ui.panelSeq = (ui.panelSeq || 0) + 1;
    clearInterval(ui.consoleTimer);
    watchStats('', '');
    showNothing();
    return;
  }
  const el = cy.getElementById(id);
  if (el.nonempty()) {
    el.select();
    showDetails(el).catch((e) => alertIn(e.message));
  }
}

function search(term) {
  const cy = ui.cy;
  cy.nodes().removeClass('match');
  term = term.trim().toLowerCase();
  if (!term || !ui.topo) return;
  const vid = /^\d+$/.test(term) ? Number(term) : 0;
  let grew = false;
  const matches = (a) => a.name.toLowerCase().includes(term) || (a.mac || '').includes(term) || (vid && (inRanges(a.untagged, vid) || inRanges(a.tagged, vid)));
  for (const sw of ui.topo.switches) {
    for (const a of sw.adapters.filter(matches)) {
      if (!ui.expanded.has(sw.name) && sw.adapters.length > COLLAPSE_AT) { ui.expanded.add(sw.name); grew = true; }
      if (!ui.expandedVMs.has(a.vm)) { ui.expandedVMs.add(a.vm); grew = true; }
    }
  }
  if (grew) render(ui.topo);
  const hits = cy.nodes().filter((n) => {
    const label = (n.data('label') || '').toLowerCase();
    return label.includes(term) || (vid && n.hasClass('port') && (inRanges(n.data('untagged'), vid) || inRanges(n.data('tagged'), vid)));
  });
  hits.addClass('match');
  if (hits.nonempty()) cy.animate({ fit: { eles: hits, padding: 60 }, duration: 200 });
  $('#live').dataset.matches = String(hits.length);
}

// keys: arrows move the selection to the nearest node that way, Enter
// opens its details, + and - zoom, 0 fits, Escape clears.
function onKey(e) {
  const cy = ui.cy;
  const dirs = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
  if (e.key in dirs) {
    e.preventDefault();
    const nodes = cy.nodes().not('.host');
    const cur = ui.selected ? cy.getElementById(ui.selected) : null;
    if (!cur || cur.empty()) { if (nodes.nonempty()) select(nodes[0].id()); return; }
    const [dx, dy] = dirs[e.key];
    const p = cur.position();
    let best = null;
    let bestD = Infinity;
    nodes.forEach((n) => {
      if (n.same(cur)) return;
      const q = n.position();
      const along = (q.x - p.x) * dx + (q.y - p.y) * dy;
      if (along <= 1) return;
      const across = Math.abs((q.x - p.x) * dy) + Math.abs((q.y - p.y) * dx);
      const d = along + 2 * across;
      if (d < bestD) { bestD = d; best = n; }
    });
    if (best) { select(best.id()); cy.animate({ center: { eles: best }, duration: 120 }); }
  } else if (e.key === 'Enter' && ui.selected) {
    panel().focus();
  } else if (e.key === '+' || e.key === '=') {
    cy.zoom({ level: cy.zoom() * 1.2, renderedPosition: { x: cy.width() / 2, y: cy.height() / 2 } });
  } else if (e.key === '-') {
    cy.zoom({ level: cy.zoom() / 1.2, renderedPosition: { x: cy.width() / 2, y: cy.height() / 2 } });
  } else if (e.key === '0') {
    fit(cy);
  } else if (e.key === 'Escape') {
    select(null);
  }
}

// ---- export ---------------------------------------------------------------

function exportSVG() {
  const text = ui.cy.svg({ full: true, bg: '#ffffff' });
  download('vswitch-topology.svg', new Blob([text], { type: 'image/svg+xml' }));
  return text;
}

function exportPNG() {
  download('vswitch-topology.png', ui.cy.png({ full: true, bg: '#ffffff', scale: 2, output: 'blob' }));
}

function exportJSON() {
  const text = JSON.stringify(ui.topo, null, 2);
  download('vswitch-topology.json', new Blob([text], { type: 'application/json' }));
  return text;
}
ui.exportSVG = exportSVG;
ui.exportJSON = exportJSON;

// ---- start -----------------------------------------------------------------

function start() {
  ui.cy = cytoscape({ container: $('#graph'), style, wheelSensitivity: 0.3, minZoom: 0.05, maxZoom: 4, boxSelectionEnabled: false });
  ui.cy.on('tap', 'node', (e) => {
    const n = e.target;
    if (n.data('kind') === 'group') { expandGroup(n); return; }
    select(n.id());
  });
  ui.cy.on('tap', (e) => { if (e.target === ui.cy) select(null); });
  $('#graph').addEventListener('keydown', onKey);
  $('#new-switch').addEventListener('click', () => newSwitch());
  $('#new-vm').addEventListener('click', () => newVM());
  $('#new-adapter').addEventListener('click', () => newAdapter({}));
  $('#mac-pool').addEventListener('click', () => macPool());
  $('#fit').addEventListener('click', () => fit(ui.cy));
  $('#expand').addEventListener('click', (e) => {
    ui.expandAll = !ui.expandAll;
    if (!ui.expandAll) {
      ui.expanded.clear();
      ui.expandedVMs.clear();
    }
    e.target.setAttribute('aria-pressed', String(ui.expandAll));
    e.target.textContent = ui.expandAll ? 'Collapse' : 'Expand all';
    render(ui.topo);
  });
  $('#export-svg').addEventListener('click', exportSVG);
  $('#export-png').addEventListener('click', exportPNG);
  $('#export-json').addEventListener('click', exportJSON);
  let timer = 0;
  $('#search').addEventListener('input', (e) => { clearTimeout(timer); timer = setTimeout(() => search(e.target.value), 200); });
  $('#search').addEventListener('keydown', (e) => { if (e.key === 'Enter') search(e.target.value); });
  $('#vlan-pick').addEventListener('change', (e) => { ui.vlan = Number(e.target.value) || 0; highlightVLAN(); });
  $('#host-pick').addEventListener('change', (e) => { ui.host = e.target.value; connect(); });
  connect();
}

start();
