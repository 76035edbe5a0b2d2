// Forms that mirror vswitchctl: they build the API's documents, send them,
// and put each field error the API answers next to the field it names.
import { h, clear } from './util.js';

const VLAN_KEYS = { untagged: [], access: ['access'], trunk: ['allowed', 'native'], hybrid: ['pvid', 'untagged', 'tagged'] };

// Fill each VLAN fieldset from the template once, naming its inputs
// PREFIX.KEY so that they match the API's field names.
function vlanFieldsets(form) {
  for (const fs of form.querySelectorAll('fieldset.vlan')) {
    if (fs.dataset.ready) continue;
    fs.dataset.ready = '1';
    const prefix = fs.dataset.prefix;
    fs.append(document.getElementById('vlan-fields').content.cloneNode(true));
    for (const el of fs.querySelectorAll('[data-v]')) {
      el.name = prefix + '.' + el.dataset.v;
      el.dataset.field = el.name;
    }
    const mode = fs.querySelector('[data-v=mode]');
    const show = () => {
      for (const m of ['access', 'trunk', 'hybrid']) {
        for (const l of fs.querySelectorAll('.m-' + m)) l.hidden = mode.value !== m;
      }
    };
    mode.addEventListener('change', show);
    fs.showMode = show;
  }
}

function get(obj, path) {
  return path.split('.').reduce((o, k) => (o == null ? undefined : o[k]), obj);
}

function set(obj, path, v) {
  const keys = path.split('.');
  let o = obj;
  for (const k of keys.slice(0, -1)) o = o[k] = o[k] || {};
  o[keys[keys.length - 1]] = v;
}

function fill(form, kind, doc, opts) {
  const sel = (name, values, labels) => {
    const s = form.querySelector(`[name="${name}"]`);
    if (!s) return;
    clear(s).append(...values.map((v, i) => h('option', { value: v }, labels ? labels[i] : v)));
  };
  if (kind === 'switch') sel('uplink', ['', ...(opts.nics || [])], ['(none)', ...(opts.nics || [])]);
  if (kind === 'adapter') {
    sel('vm', opts.vms || []);
    sel('switch', opts.switches || []);
  }
  for (const el of form.querySelectorAll('[data-field]')) {
    const f = el.dataset.field;
    let v = get(doc, f);
    if (f.endsWith('.mode') && !v) v = 'untagged';
    if (kind === 'switch' && f === 'datapath' && !v) v = opts.editing ? 'userspace' : 'auto'; // "" is the core, as stored before auto
    if (el.type === 'checkbox') el.checked = v === undefined ? el.defaultChecked : Boolean(v);
    else el.value = v === undefined || v === null || v === 0 ? '' : String(v);
    if (opts.editing && (f === 'name' || (kind === 'adapter' && f === 'vm'))) el.disabled = true;
    else el.disabled = false;
  }
  for (const fs of form.querySelectorAll('fieldset.vlan')) fs.showMode();
  const kindSel = form.querySelector('[name="attachment.kind"]');
  if (kindSel) attachShow(form, kindSel);
  const type = form.querySelector('[name=type]');
  if (kind === 'switch') typeShow(form, type);
}

function typeShow(form, type) {
  for (const l of form.querySelectorAll('.ext')) l.hidden = type.value !== 'external';
  for (const l of form.querySelectorAll('.not-private')) l.hidden = type.value === 'private';
}

function attachShow(form, sel) {
  const k = sel.value;
  form.querySelector('.att-netns').hidden = k !== 'netns';
  form.querySelector('.att-dev').hidden = k !== 'netns' && k !== 'tap';
  form.querySelector('.att-sock').hidden = !k.startsWith('qemu');
}

const NUMBER = new Set(['number']);

// read builds the document from the form: empty fields are left out, a
// VLAN carries only the keys of its mode.
function read(form, kind) {
  const doc = {};
  for (const el of form.querySelectorAll('[data-field]')) {
    const f = el.dataset.field;
    if (el.disabled && !(f === 'name' || f === 'vm')) continue;
    if (el.closest('[hidden]') && !f.endsWith('.mode')) continue;
    if (el.type === 'checkbox') { set(doc, f, el.checked); continue; }
    if (el.value === '') continue;
    set(doc, f, NUMBER.has(el.type) ? Number(el.value) : el.value.trim());
  }
  for (const fs of form.querySelectorAll('fieldset.vlan')) {
    if (fs.hidden) {
      set(doc, fs.dataset.prefix, {});
      continue;
    }
    const v = get(doc, fs.dataset.prefix) || {};
    const keep = { mode: v.mode };
    for (const k of VLAN_KEYS[v.mode] || []) if (v[k] !== undefined) keep[k] = v[k];
    if (v.mode === 'untagged') set(doc, fs.dataset.prefix, {});
    else set(doc, fs.dataset.prefix, keep);
  }
  if (kind === 'adapter') {
    doc.dynamicMAC = !doc.mac;
    if (doc.attachment && !doc.attachment.kind.startsWith('qemu')) delete doc.attachment.socket;
  }
  if (kind === 'switch' && doc.type !== 'external') {
    delete doc.allowManagementOS;
    delete doc.uplink;
  }
  return doc;
}

function clearErrors(form) {
  form.querySelector('.form-error').textContent = '';
  for (const el of form.querySelectorAll('.field-error')) el.remove();
  for (const el of form.querySelectorAll('[aria-invalid]')) {
    el.removeAttribute('aria-invalid');
    el.removeAttribute('aria-describedby');
  }
}

// fieldOf turns the API's field name (adapters[web/eth0].vlan.access,
// switches[lan0].uplink, host.macMin) into the form's (vlan.access).
function fieldOf(name) {
  const i = name.lastIndexOf(']');
  if (i >= 0) return name.slice(i + 2);
  return name.replace(/^host\./, '');
}

let errSeq = 0;

function showErrors(form, err) {
  let placed = 0;
  for (const p of err.problems || []) {
    const el = form.querySelector(`[data-field="${CSS.escape(fieldOf(p.field))}"]`);
    if (!el || el.closest('[hidden]')) continue;
    mark(el, `${p.value === '' ? 'missing' : '"' + p.value + '" is invalid'}: ${p.allowed}`);
    placed++;
  }
  // A value the API could not even read (a VLAN list that does not parse)
  // names the value: put it at the field that holds it.
  const m = /invalid VLAN "([^"]*)"/.exec(err.message);
  if (m) {
    for (const el of form.querySelectorAll('[data-field]')) {
      if (el.value === m[1] && !el.closest('[hidden]')) { mark(el, err.message.replace(/^.*?invalid VLAN/, 'invalid VLAN')); placed++; break; }
    }
  }
  if (!placed || placed < (err.problems || []).length) form.querySelector('.form-error').textContent = err.message;
  const first = form.querySelector('[aria-invalid=true]');
  if (first) first.focus();
}

function mark(el, msg) {
  const id = 'err-' + ++errSeq;
  el.setAttribute('aria-invalid', 'true');
  el.setAttribute('aria-describedby', id);
  el.closest('label').append(h('span', { class: 'field-error', id }, msg));
}

// openForm shows the dialog of kind filled from doc; save gets what the
// form says and returns a promise; done runs after a successful save.
export function openForm(kind, doc, opts, save, done) {
  const dlg = document.getElementById('dlg-' + kind);
  const form = dlg.querySelector('form');
  vlanFieldsets(form);
  if (!form.dataset.wired) {
    form.dataset.wired = '1';
    const type = form.querySelector('[name=type]');
    if (kind === 'switch') type.addEventListener('change', () => typeShow(form, type));
    const att = form.querySelector('[name="attachment.kind"]');
    if (att) att.addEventListener('change', () => attachShow(form, att));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      if (e.submitter && e.submitter.value === 'cancel') { dlg.close(); return; }
      clearErrors(form);
      const d = read(form, kind);
      const ok = form.querySelector('button.primary');
      ok.disabled = true;
      try {
        await form.save(d);
        dlg.close();
        if (form.done) form.done(d);
      } catch (err) {
        showErrors(form, err);
      } finally {
        ok.disabled = false;
      }
    });
  }
  form.save = save;
  form.done = done;
  clearErrors(form);
  fill(form, kind, doc, opts);
  dlg.querySelector('h2').textContent = (opts.editing ? 'Edit ' : 'New ') + { switch: 'switch', vm: 'VM', adapter: 'network adapter', pool: 'MAC address pool' }[kind];
  if (kind === 'pool') dlg.querySelector('h2').textContent = 'MAC address pool';
  dlg.showModal();
  const first = form.querySelector('input:not([disabled]), select:not([disabled])');
  if (first) first.focus();
}

// edited is orig changed as the form of kind says: every field the form
// has (set, emptied or hidden) is what the form read into doc; fields the
// form does not show (a switch's MAC ageing, say) stay as they were.
export function edited(kind, orig, doc) {
  const out = structuredClone(orig);
  const form = document.getElementById('dlg-' + kind).querySelector('form');
  for (const el of form.querySelectorAll('[data-field]')) {
    const keys = el.dataset.field.split('.');
    if (el.closest('fieldset.vlan')) keys.length = 1; // a VLAN setting is replaced whole
    let o = out;
    for (const k of keys.slice(0, -1)) o = o && o[k];
    if (o) delete o[keys[keys.length - 1]];
  }
  const put = (dst, src) => {
    for (const [k, v] of Object.entries(src)) {
      if (v && typeof v === 'object' && !Array.isArray(v) && dst[k] && typeof dst[k] === 'object') put(dst[k], v);
      else dst[k] = v;
    }
  };
  put(out, doc);
  return out;
}
