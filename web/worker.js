/* worker.js -- the page's worker: runs the WebAssembly library (ckweb.c) on
 * files mounted read-only through WORKERFS (read lazily, slice by slice, never
 * whole), and passes results, progress and output bytes to the page. The
 * emscripten glue and the wasm bytes are prepended when the page is built. */
(function () {
'use strict';

let mounted = false;
let inputPath = '';

function call(name, types, args) {
  const res = Module.ccall(name, 'string', types, args);
  return JSON.parse(res);
}

function heap() { return HEAP8.length; }

/* ---- outputs: every byte goes to the page, nothing is kept here ---- */
let nextOut = 1;
self.ckwOutOpen = function (path) {
  const id = nextOut++;
  postMessage({t: 'out-open', id: id, path: path});
  return id;
}
self.ckwOutWrite = function (id, off, bytes) {
  postMessage({t: 'out-write', id: id, off: off, buf: bytes.buffer}, [bytes.buffer]);
  return 0;
}
self.ckwOutCommit = function (id) { postMessage({t: 'out-commit', id: id}); return 0; }
self.ckwOutAbort = function (id) { postMessage({t: 'out-abort', id: id}); }
let lastProgress = 0;
self.ckwProgress = function (done, total) {
  const now = Date.now();
  if (now - lastProgress < 100 && done < total) return;
  lastProgress = now;
  postMessage({t: 'progress', done: done, total: total});
}

function mount(files) {
  if (mounted) { FS.unmount('/in'); mounted = false; }
  try { FS.mkdir('/in'); } catch (e) { /* exists */ }
  FS.mount(WORKERFS, {files: files}, '/in');
  mounted = true;
  if (files.length === 1) return '/in/' + files[0].name;
  const idx = files.filter(f => f.name.endsWith('.index.json'));
  /* a raw tensor file with its manifest beside it: NAME and NAME.json */
  const man = files.length === 2 && files.find(f => files.some(g => g.name === f.name + '.json'));
  if (!idx.length && man) return '/in/' + man.name;
  if (idx.length !== 1)
    throw new Error(files.length + ' files chosen: several files are read as the shards of ' +
                    'one checkpoint, so include exactly one *.index.json that lists them');
  return '/in/' + idx[0].name;
}

function handle(m) {
  switch (m.t) {
  case 'scan': {
    Module.ccall('ckw_close', null, [], []);
    try { inputPath = mount(m.files); } catch (e) {
      postMessage({t: 'scan', res: {verdict: 'unparseable', error: e.message, items: []}});
      return;
    }
    postMessage({t: 'scan', res: call('ckw_scan', ['string'], [inputPath]), heap: heap()});
    return;
  }
  case 'load':
    postMessage({t: 'load', res: call('ckw_open', ['string', 'number'], [inputPath, m.unsafe ? 1 : 0]),
                 heap: heap()});
    return;
  case 'stats':
    postMessage({t: 'stats', i: m.i, res: call('ckw_stats', ['number'], [m.i]), heap: heap()});
    return;
  case 'convert': {
    lastProgress = 0;
    const res = call('ckw_convert',
                     ['string', 'string', 'string', 'number', 'number', 'string', 'string', 'string'],
                     ['/out/' + m.out, m.format, m.dtype, m.ema, m.prune ? 1 : 0, m.strip,
                      m.include, m.exclude]);
    postMessage({t: 'converted', res: res, heap: heap()});
    return;
  }
  case 'probe':
    /* the page's tests: a connection attempt from the worker must be refused */
    try {
      fetch(m.url).then(() => postMessage({t: 'probe', res: 'fetched'}),
                        e => postMessage({t: 'probe', res: 'blocked: ' + e.message}));
    } catch (e) { postMessage({t: 'probe', res: 'blocked: ' + e.message}); }
    return;
  }
}

let queue = [];
let ready = false;
Module.onRuntimeInitialized = function () {
  ready = true;
  postMessage({t: 'ready', formats: call('ckw_formats', [], []), heap: heap()});
  queue.forEach(dispatch);
  queue = [];
};
function dispatch(m) {
  try { handle(m); } catch (e) {
    postMessage({t: 'fail', error: String(e && e.message ? e.message : e), req: m.t});
  }
}
self.onmessage = function (e) { if (ready) dispatch(e.data); else queue.push(e.data); };
self.addEventListener('securitypolicyviolation', function (e) {
  postMessage({t: 'csp', v: {directive: e.violatedDirective, uri: e.blockedURI, where: 'worker'}});
});
})();
