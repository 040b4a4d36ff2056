#!/usr/bin/env python3
"""Builds the one-file page: web/index.html with the style, the page script and
the worker (emscripten glue + the wasm bytes in base64 + web/worker.js)
inlined, and a Content-Security-Policy whose script-src allows exactly the
page script (by its SHA-256) and WebAssembly compilation; no connection, no
external resource of any kind.

usage: build_page.py WEB_DIR GLUE_JS WASM OUT_HTML
"""
import base64
import hashlib
import os
import sys


def main():
    web, glue, wasm, out = sys.argv[1:5]
    read = lambda p: open(p, encoding='utf-8').read()
    page = read(f'{web}/index.html')
    b64 = base64.b64encode(open(wasm, 'rb').read()).decode('ascii')
    prefix = ('var Module = {wasmBinary: (function (s) { const b = atob(s); '
              'const u = new Uint8Array(b.length); '
              'for (let i = 0; i < b.length; i++) u[i] = b.charCodeAt(i); return u; })("'
              + b64 + '")};\n')
    worker = prefix + read(glue) + '\n' + read(f'{web}/worker.js')
    if '</script' in worker.lower():
        sys.exit('build_page: the worker source contains </script')
    app = read(f'{web}/app.js')
    digest = base64.b64encode(hashlib.sha256(app.encode('utf-8')).digest()).decode('ascii')
    csp = ("default-src 'none'; script-src 'sha256-" + digest + "' 'wasm-unsafe-eval'; "
           "worker-src blob:; connect-src 'none'; img-src data:; style-src 'unsafe-inline'; "
           "base-uri 'none'; form-action 'none'")
    parts = {
        '@CSP@': csp,
        '@STYLE@': read(f'{web}/style.css'),
        '@WORKER@': worker,
        '@APP@': app,
    }
    for k, v in parts.items():
        if page.count(k) != 1:
            sys.exit(f'build_page: {k} must appear once in index.html')
    # substitute in one pass so no inlined text is searched again
    out_text, rest = '', page
    while rest:
        pos = [(rest.find(k), k) for k in parts if rest.find(k) >= 0]
        if not pos:
            out_text += rest
            break
        i, k = min(pos)
        out_text += rest[:i] + parts[k]
        rest = rest[i + len(k):]
    with open(out + '.tmp', 'w', encoding='utf-8') as f:
        f.write(out_text)
    os.replace(out + '.tmp', out)


if __name__ == '__main__':
    main()
