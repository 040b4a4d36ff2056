/* app.js -- the page: choose files, show the scan verdict first, then the
 * summary, the tensor table and the converter. All work happens in a worker
 * built from the inline source (#worker-src) through a Blob URL, so the
 * page's Content-Security-Policy binds it too: it cannot open a connection. */
'use strict';
(function () {
  const $ = id => document.getElementById(id);
  const GB = 1e9;
  let worker = null;
  let formats = [];
  let files = [];
  let model = null;         /* the open checkpoint's summary (ckw_open) */
  let lastUnsafe = false;
  let reopening = false;    /* after a cancel: a fresh worker reopens the same files */
  let rows = [];
  let sortKey = null, sortDir = 1;
  let heapBytes = 0;
  let conv = null;          /* the conversion running */
  const outputs = new Map();
  const cspViolations = [];
  const probes = [];

  /* ---- small helpers ---- */
  function human(n) {
    if (n < 1024) return n + ' B';
    const u = ['KiB', 'MiB', 'GiB', 'TiB'];
    let i = -1;
    do { n /= 1024; i++; } while (n >= 1024 && i < u.length - 1);
    return n.toFixed(n < 10 ? 2 : 1) + ' ' + u[i];
  }
  function group(n) { return Number(n).toLocaleString('en-US'); }
  function oneLine(s) { return String(s).replace(/\s+/g, ' ').trim(); }
  function showError(msg) { $('error').textContent = oneLine(msg); $('error').hidden = false; }
  function clearError() { $('error').hidden = true; $('error').textContent = ''; }
  function busy(msg) { $('busy').textContent = msg || ''; $('busy').hidden = !msg; }
  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function debugLine() {
    $('debug').textContent = 'wasm heap: ' + human(heapBytes) +
      ' · blocked by the CSP: ' + cspViolations.length;
  }
  function stem(name) {
    let s = name.replace(/\.index\.json$/i, '');
    const dot = s.lastIndexOf('.');
    return dot > 0 ? s.slice(0, dot) : s;
  }

  /* ---- the worker ---- */
  function startWorker() {
    const src = $('worker-src').textContent;
    const url = URL.createObjectURL(new Blob([src], {type: 'text/javascript'}));
    worker = new Worker(url);
    worker.onmessage = e => onWorker(e.data);
    worker.onerror = e => { e.preventDefault(); failed('the page worker stopped: ' + (e.message || 'error')); };
    worker.ready = false;
    worker.url = url;
  }
  function restartWorker() {
    if (worker) { worker.terminate(); URL.revokeObjectURL(worker.url); }
    startWorker();
  }
  function post(m) { worker.postMessage(m); }
  function failed(msg) {
    showError(msg);
    busy('');
    endConversion();
    restartWorker();
    if (model && files.length) reopen();
  }

  function onWorker(m) {
    if (m.heap) { heapBytes = m.heap; debugLine(); }
    switch (m.t) {
    case 'ready':
      worker.ready = true;
      formats = m.formats;
      fillFormats();
      return;
    case 'scan':
      if (reopening) return;
      busy('');
      showVerdict(m.res);
      return;
    case 'load':
      if (reopening) { reopening = false; return; }
      busy('');
      if (m.res.error) { showError(m.res.error); return; }
      model = m.res;
      showModel();
      return;
    case 'stats': statsDone(m.i, m.res); return;
    case 'progress': progress(m.done, m.total); return;
    case 'out-open': outOpen(m.id, m.path); return;
    case 'out-write': outWrite(m.id, m.off, m.buf); return;
    case 'out-commit': outCommit(m.id); return;
    case 'out-abort': outAbort(m.id); return;
    case 'converted': converted(m.res); return;
    case 'csp': cspViolations.push(m.v); debugLine(); return;
    case 'probe': { const p = probes.shift(); if (p) p(m.res); return; }
    case 'fail': failed(m.error); return;
    }
  }

  /* ---- choosing files ---- */
  function choose(list) {
    if (!list || !list.length) return;
    if (conv) cancel();
    files = Array.from(list);
    model = null;
    clearError();
    for (const id of ['verdict', 'summary', 'convert', 'tensors']) $(id).hidden = true;
    $('c-done').textContent = '';
    const total = files.reduce((a, f) => a + f.size, 0);
    busy('Scanning ' + (files.length === 1 ? files[0].name : files.length + ' files') + ' (' + human(total) + ')...');
    post({t: 'scan', files: files});
  }
  $('file').addEventListener('change', e => { choose(e.target.files); e.target.value = ''; });
  const drop = $('drop');
  ['dragenter', 'dragover'].forEach(ev => drop.addEventListener(ev, e => { e.preventDefault(); drop.classList.add('over'); }));
  ['dragleave', 'drop'].forEach(ev => drop.addEventListener(ev, () => drop.classList.remove('over')));
  drop.addEventListener('drop', e => { e.preventDefault(); choose(e.dataTransfer.files); });
  document.addEventListener('dragover', e => e.preventDefault());
  document.addEventListener('drop', e => e.preventDefault());

  /* ---- the verdict, first ---- */
  function showVerdict(res) {
    const v = $('verdict');
    v.className = res.verdict;
    v.dataset.verdict = res.verdict;
    v.hidden = false;
    const n = {allowed: 0, unknown: 0, dangerous: 0};
    res.items.forEach(it => n[it.verdict]++);
    $('verdict-word').textContent = res.verdict === 'clean' ? 'clean' :
      res.verdict === 'unsafe' ? 'unsafe' : 'not fully parseable';
    let text;
    if (res.verdict === 'clean')
      text = res.items.length ? res.items.length + ' globals: ' + n.allowed + ' allowed, ' + n.unknown +
        ' unknown (kept as inert values, never run).' : 'No pickled code references: nothing here can run code.';
    else if (res.verdict === 'unsafe')
      text = 'This file references ' + n.dangerous + ' global' + (n.dangerous === 1 ? '' : 's') +
        ' that would run code, touch files or the network if loaded with Python (torch.load, pickle). ' +
        'Do not load it with Python. Nothing was executed here.';
    else
      text = 'Part of this file could not be parsed, so it cannot be called clean.';
    $('verdict-text').textContent = text;
    if (res.error) showError(res.error);
    const ul = $('globals');
    ul.textContent = '';
    const order = {dangerous: 0, unknown: 1, allowed: 2};
    res.items.slice().sort((a, b) => order[a.verdict] - order[b.verdict]).forEach(it => {
      const li = el('li');
      li.dataset.verdict = it.verdict;
      li.append(el('span', {class: 'v v-' + it.verdict}, it.verdict), ' ' + it.module + '.' + it.name,
                el('span', {class: 'small'}, '  (' + it.where + ' @ ' + it.offset + ')'));
      ul.append(li);
    });
    $('override-box').hidden = res.verdict === 'clean';
    if (res.verdict === 'clean') load(false);
    else $('override').focus();
  }
  function load(unsafe) {
    lastUnsafe = unsafe;
    busy('Reading the checkpoint...');
    post({t: 'load', unsafe: unsafe});
  }
  $('override').addEventListener('click', () => { $('override-box').hidden = true; clearError(); load(true); });

  /* ---- summary ---- */
  function showModel() {
    const dl = $('summary-list');
    dl.textContent = '';
    const add = (key, label, text, value) => {
      const dd = el('dd', {id: 's-' + key}, text);
      dd.dataset.value = JSON.stringify(value);
      dl.append(el('dt', {}, label), dd);
    };
    add('files', files.length === 1 ? 'File' : 'Files', files.map(f => f.name).join(', ') + ' (' +
        human(files.reduce((a, f) => a + f.size, 0)) + ')', files.map(f => f.name));
    add('format', 'Format', model.format, model.format);
    add('tensors', 'Tensors', group(model.tensors), model.tensors);
    add('parameters', 'Parameters', group(model.parameters), model.parameters);
    add('bytes', 'Tensor bytes', group(model.bytes) + ' (' + human(model.bytes) + ')', model.bytes);
    add('dtypes', 'Dtypes', Object.entries(model.dtypes).map(([k, v]) => k + ' \u00d7 ' + v).join(', ') || '-', model.dtypes);
    const meta = Object.entries(model.metadata);
    add('metadata', 'Metadata', meta.length ? meta.map(([k, v]) => k + ' = ' + v).join('; ') : '-', model.metadata);
    $('values').textContent = JSON.stringify(model.values, null, 2);
    $('values').dataset.value = JSON.stringify(model.values);
    $('values-box').hidden = model.values === null;
    $('summary').hidden = false;
    rows = model.list.map((t, i) => Object.assign({i: i}, t));
    sortKey = null;
    document.querySelectorAll('th button').forEach(b => b.removeAttribute('aria-sort'));
    $('filter').value = '';
    renderTable();
    $('tensors').hidden = false;
    $('c-name').value = stem(files.length === 1 ? files[0].name :
      (files.find(f => f.name.endsWith('.index.json')) || files[0]).name) + currentExt();
    $('convert').hidden = false;
  }

  /* ---- tensor table ---- */
  const MAX_ROWS = 2000;
  function renderTable() {
    const q = $('filter').value.toLowerCase();
    let list = q ? rows.filter(r => r.name.toLowerCase().includes(q)) : rows.slice();
    if (sortKey) {
      list.sort((a, b) => {
        const x = a[sortKey], y = b[sortKey];
        return (x < y ? -1 : x > y ? 1 : a.i - b.i) * sortDir;
      });
    }
    const tb = document.querySelector('#table tbody');
    tb.textContent = '';
    const frag = document.createDocumentFragment();
    list.slice(0, MAX_ROWS).forEach(r => {
      const tr = el('tr');
      tr.dataset.name = r.name;
      tr.dataset.dtype = r.dtype;
      tr.dataset.shape = JSON.stringify(r.shape);
      tr.dataset.nbytes = r.nbytes;
      tr.dataset.index = r.i;
      tr.append(el('td', {class: 'name'}, r.name), el('td', {}, r.dtype),
                el('td', {}, '[' + r.shape.join(', ') + ']'), el('td', {class: 'num'}, group(r.nbytes)));
      const td = el('td', {class: 'stats'});
      if (r.stats) td.textContent = r.stats;
      else {
        const b = el('button', {type: 'button', 'aria-label': 'statistics of ' + r.name}, 'stats');
        b.addEventListener('click', () => { td.textContent = 'reading...'; post({t: 'stats', i: r.i}); });
        td.append(b);
      }
      tr.append(td);
      frag.append(tr);
    });
    tb.append(frag);
    $('count').textContent = list.length > MAX_ROWS ? 'showing ' + MAX_ROWS + ' of ' + group(list.length) +
      ' matches: type to narrow' : group(list.length) + ' of ' + group(rows.length);
  }
  $('filter').addEventListener('input', renderTable);
  document.querySelectorAll('th button').forEach(b => b.addEventListener('click', () => {
    const k = b.dataset.sort;
    sortDir = sortKey === k ? -sortDir : 1;
    sortKey = k;
    document.querySelectorAll('th button').forEach(o => o.removeAttribute('aria-sort'));
    b.setAttribute('aria-sort', sortDir > 0 ? 'ascending' : 'descending');
    renderTable();
  }));
  function statsDone(i, res) {
    const r = rows[i];
    if (!r) return;
    if (res.error) { r.stats = null; showError(res.error); renderTable(); return; }
    const f = x => x === undefined ? '-' : Number(x).toPrecision(6);
    r.stats = 'min ' + f(res.min) + ' · max ' + f(res.max) + ' · mean ' + f(res.mean) +
      ' · NaN ' + res.nan + ' · +Inf ' + res.posinf + ' · -Inf ' + res.neginf;
    r.statsRaw = res;
    renderTable();
    const tr = document.querySelector('#table tbody tr[data-index="' + i + '"]');
    if (tr) tr.dataset.stats = JSON.stringify(res);
  }

  /* ---- converting ---- */
  /* a format with no usual extension (raw) gets .bin, so that browsers do
   * not make one up */
  function currentExt() {
    const f = formats.find(x => x.name === $('c-format').value);
    return f ? f.ext || '.bin' : '';
  }
  function fillFormats() {
    const s = $('c-format');
    s.textContent = '';
    formats.forEach(f => s.append(el('option', {value: f.name}, f.ext ? f.name + ' (' + f.ext + ')' : f.name)));
    $('c-save').hidden = typeof window.showSaveFilePicker !== 'function';
  }
  $('c-format').addEventListener('change', () => {
    const n = $('c-name').value;
    const old = formats.map(f => f.ext || '.bin').find(e => n.endsWith(e));
    $('c-name').value = (old ? n.slice(0, n.length - old.length) : n) + currentExt();
  });
  function estimate() {
    const dt = $('c-dtype').value;
    const bits = {F32: 32, F16: 16, BF16: 16, F64: 64, F8_E4M3: 8, F8_E5M2: 8};
    const inBits = {F64: 64, F32: 32, F16: 16, BF16: 16};
    return model.list.reduce((a, t) =>
      a + (dt && inBits[t.dtype] ? t.nbytes / inBits[t.dtype] * bits[dt] : t.nbytes), 0);
  }
  function options() {
    return {t: 'convert', out: $('c-name').value.replace(/[\/\\]/g, '_'), format: $('c-format').value,
            dtype: $('c-dtype').value, ema: Number($('c-ema').value), prune: $('c-prune').checked,
            strip: $('c-strip').value, include: $('c-include').value, exclude: $('c-exclude').value};
  }
  async function start(toFile) {
    if (conv || !model) return;
    clearError();
    $('c-done').textContent = '';
    const opts = options();
    if (!opts.out) { showError('give the output a name'); return; }
    let writable = null;
    if (toFile) {
      try {
        const h = await window.showSaveFilePicker({suggestedName: opts.out});
        writable = await h.createWritable();
      } catch (e) { if (e.name !== 'AbortError') showError(e.message); return; }
    } else if (estimate() > 2 * GB) {
      const go = await confirmBig();
      if (!go) return;
    }
    const opfs = writable ? null : await stagingDir();
    conv = {start: performance.now(), writable: writable, mainPath: '/out/' + opts.out, chain: Promise.resolve(),
            failed: null, files: [], opfs: opfs};
    $('c-go').disabled = $('c-save').disabled = true;
    $('c-cancel').hidden = false;
    $('c-progress-box').hidden = false;
    $('c-progress').value = 0;
    $('c-rate').textContent = 'starting...';
    post(opts);
  }
  function confirmBig() {
    return new Promise(resolve => {
      /* Chromium fails downloads over 2 GB in a private (off-the-record)
       * profile, and deliberately gives a page no way to tell it is in one */
      $('c-warn-text').textContent = 'The output will be about ' + human(estimate()) + '. In a private (incognito) ' +
        'window Chromium cancels downloads over 2 GB, and a page cannot tell whether it is in one: if this is a ' +
        'private window, use a normal one' + (typeof window.showSaveFilePicker === 'function' ?
        ' or "Convert and save to a file"' : '') + '.';
      $('c-warn').hidden = false;
      $('c-warn-go').focus();
      const done = v => { $('c-warn').hidden = true; $('c-warn-go').onclick = $('c-warn-no').onclick = null; resolve(v); };
      $('c-warn-go').onclick = () => done(true);
      $('c-warn-no').onclick = () => done(false);
    });
  }
  $('convert-form').addEventListener('submit', e => { e.preventDefault(); start(false); });
  $('c-save').addEventListener('click', () => start(true));
  $('c-cancel').addEventListener('click', cancel);
  document.addEventListener('keydown', e => { if (e.key === 'Escape' && conv) cancel(); });

  function progress(done, total) {
    if (!conv) return;
    const secs = (performance.now() - conv.start) / 1000;
    $('c-progress').max = total || 1;
    $('c-progress').value = done;
    $('c-rate').textContent = human(done) + ' of ' + human(total) + ' · ' +
      (secs > 0 ? human(done / secs) + '/s' : '');
  }
  /* Where the output goes: a file the user picked (showSaveFilePicker), else a
   * staging file in the origin-private file system, which lives on disk, so
   * the download of any size is a disk-backed File (over http; file:// pages
   * have no such storage), else Blob parts kept by the browser. */
  function outOpen(id, path) {
    const o = {path: path, name: path.replace(/^.*\//, ''), parts: [], size: 0, patches: [], writable: null};
    if (conv && conv.writable && path === conv.mainPath) { o.writable = conv.writable; conv.writable = null; }
    else if (conv && conv.opfs) {
      const dir = conv.opfs;
      o.staged = STAGE + Date.now() + '-' + id;
      conv.chain = conv.chain.then(() => dir.getFileHandle(o.staged, {create: true}))
        .then(fh => { o.fh = fh; return fh.createWritable(); }).then(w => { o.writable = w; })
        .catch(e => { if (conv) conv.failed = e; });
    }
    outputs.set(id, o);
  }
  const STAGE = 'ckptkit-output-';
  async function stagingDir() {
    try {
      const dir = await navigator.storage.getDirectory();
      const old = [];
      for await (const name of dir.keys()) if (name.startsWith(STAGE)) old.push(name);
      for (const name of old) await dir.removeEntry(name).catch(() => {});
      return dir;
    } catch (e) { return null; }
  }
  function download(blob, name) {
    const a = el('a', {href: URL.createObjectURL(blob), download: name});
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 120000);
  }
  function outWrite(id, off, buf) {
    const o = outputs.get(id);
    if (!o) return;
    if (o.writable || o.staged) {
      conv.chain = conv.chain.then(() => o.writable && o.writable.write({type: 'write', position: off, data: buf}))
        .catch(e => { if (conv) conv.failed = e; });
      if (off === o.size) o.size += buf.byteLength;
      return;
    }
    if (off === o.size) { o.parts.push(new Blob([buf])); o.size += buf.byteLength; }
    else o.patches.push({off: off, bytes: new Uint8Array(buf)});
  }
  function outCommit(id) {
    const o = outputs.get(id);
    if (!o) return;
    outputs.delete(id);
    if (o.staged) {
      const c = conv;
      c.chain = c.chain.then(() => o.writable.close()).then(() => o.fh.getFile())
        .then(f => { download(f, o.name); c.files.push(o.name + ' (' + human(f.size) + ')'); })
        .catch(e => { c.failed = e; });
      return;
    }
    if (o.writable) {
      conv.chain = conv.chain.then(() => o.writable.close());
      conv.files.push(o.name + ' (saved)');
      return;
    }
    let blob = new Blob(o.parts, {type: 'application/octet-stream'});
    for (const p of o.patches)  /* a few bytes rewritten (zip CRC fields): slice around them */
      blob = new Blob([blob.slice(0, p.off), p.bytes, blob.slice(p.off + p.bytes.length)],
                      {type: 'application/octet-stream'});
    download(blob, o.name);
    if (conv) conv.files.push(o.name + ' (' + human(blob.size) + ')');
  }
  function outAbort(id) {
    const o = outputs.get(id);
    outputs.delete(id);
    if (o && o.writable) o.writable.abort().catch(() => {});
  }
  function endConversion() {
    for (const [id] of outputs) outAbort(id);
    if (conv && conv.writable) conv.writable.abort().catch(() => {});
    conv = null;
    $('c-go').disabled = $('c-save').disabled = false;
    $('c-cancel').hidden = true;
    $('c-progress-box').hidden = true;
  }
  async function converted(res) {
    const c = conv;
    if (!c) return;
    if (res.error) { endConversion(); showError(res.error); return; }
    await c.chain;
    const secs = (performance.now() - c.start) / 1000;
    endConversion();
    if (c.failed) { showError('saving failed: ' + c.failed.message); return; }
    $('c-done').textContent = 'Done: ' + group(res.tensors) + ' tensors, ' + human(res.bytes) + ' of tensor data in ' +
      secs.toFixed(1) + ' s' + (res.cast ? ', ' + res.cast + ' cast' : '') +
      (res.overflow ? ', ' + res.overflow + ' values overflowed to Inf' : '') + ': ' + c.files.join(', ');
  }
  function cancel() {
    if (!conv) return;
    endConversion();
    $('c-done').textContent = 'Cancelled: nothing was written.';
    restartWorker();
    reopen();
  }
  /* a fresh worker opens the same files again; requests made meanwhile
   * queue behind these two */
  function reopen() {
    reopening = true;
    post({t: 'scan', files: files});
    post({t: 'load', unsafe: lastUnsafe});
  }

  /* ---- for anyone (and the tests) to check that the worker cannot connect ---- */
  window.ckptkit = {
    cspViolations: cspViolations,
    probeNetwork: url => new Promise(resolve => { probes.push(resolve); post({t: 'probe', url: url}); }),
  };
  document.addEventListener('securitypolicyviolation', e => {
    cspViolations.push({directive: e.violatedDirective, uri: e.blockedURI, where: 'page'});
    debugLine();
  });

  startWorker();
  debugLine();
  stagingDir();  /* removes staged outputs an earlier visit left */
})();
