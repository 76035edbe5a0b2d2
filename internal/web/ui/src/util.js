// Small DOM and VLAN helpers for the console.

// h makes an element: attributes, then children (strings become text).
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) {
    if (c === undefined || c === null || c === '') continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

// ranges parses a VLAN set as the API writes it ("1-10,20") into [lo, hi] pairs.
export function ranges(s) {
  if (!s) return [];
  return s.split(',').filter(Boolean).map((part) => {
    const [lo, hi] = part.split('-').map(Number);
    return [lo, hi === undefined ? lo : hi];
  });
}

export function inRanges(s, vid) {
  return ranges(s).some(([lo, hi]) => vid >= lo && vid <= hi);
}

// vlanColor gives every VLAN its own colour (golden-angle hues).
export function vlanColor(vid) {
  return 'hsl(' + Math.round((vid * 137.508) % 360) + ', 70%, 42%)';
}

export function download(name, blob) {
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}
