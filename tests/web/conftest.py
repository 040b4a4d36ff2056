"""Fixtures for the browser page's tests: the page served by a local static
server (whose access log is read back), Debian's Chromium driven by
Playwright (never a downloaded browser), and every request the browser makes
recorded for the no-network test, which runs last."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
PAGE = os.path.join(ROOT, 'build', 'web', 'ckptkit.html')
CLI = os.path.join(ROOT, 'build', 'ckptkit')
CHROMIUM = os.environ.get('CKPTKIT_CHROMIUM', '/usr/bin/chromium')
ARGS = ['--no-sandbox', '--headless', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync']
REAL = os.environ.get('CKPTKIT_REAL_FIXTURES',
                      os.path.join(ROOT, '..', 'shared', 'fixtures', 'real'))

playwright_api = pytest.importorskip('playwright.sync_api')

if not os.path.exists(CHROMIUM):
    pytest.skip('no Chromium at %s (scripts/install-deps.sh installs it)' % CHROMIUM,
                allow_module_level=True)


def cli(*args, check=True):
    r = subprocess.run([CLI, *args], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise AssertionError('ckptkit %s: %s' % (' '.join(args), r.stderr))
    return r


def cli_json(*args):
    return json.loads(cli(*args).stdout)


@pytest.fixture(scope='session')
def server():
    """python3 -m http.server over a folder holding only the page; its access
    log (stderr) is kept for the no-network test."""
    root = tempfile.mkdtemp(prefix='ckweb-www-')
    shutil.copy(PAGE, os.path.join(root, 'ckptkit.html'))
    log = open(os.path.join(root, '..', os.path.basename(root) + '.log'), 'w+')
    proc = subprocess.Popen([sys.executable, '-u', '-m', 'http.server', '--bind', '127.0.0.1', '0'],
                            cwd=root, stdout=subprocess.PIPE, stderr=log, text=True)
    line = proc.stdout.readline()
    port = int(re.search(r'port (\d+)', line).group(1))
    info = {'url': 'http://127.0.0.1:%d/ckptkit.html' % port, 'port': port, 'log': log.name}
    yield info
    proc.terminate()
    proc.wait()
    shutil.rmtree(root, ignore_errors=True)


def access_log(server):
    with open(server['log']) as f:
        return [l for l in f.read().splitlines() if '"GET' in l or '"POST' in l or '"HEAD' in l]


REQUESTS = []   # every request any page of the session made: (url, resource type)


@pytest.fixture(scope='session')
def pw():
    with playwright_api.sync_playwright() as p:
        yield p


@pytest.fixture(scope='session')
def browser(pw):
    b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    yield b
    b.close()


@pytest.fixture
def context(browser):
    ctx = browser.new_context(viewport={'width': 1280, 'height': 800}, accept_downloads=True)
    ctx.on('request', lambda r: REQUESTS.append((r.url, r.resource_type)))
    yield ctx
    ctx.close()


class Page:
    """The page, driven the way a person would: choose files, read what shows."""

    def __init__(self, page, url):
        self.p = page
        page.on('pageerror', lambda e: self.errors.append(str(e)))
        self.errors = []
        page.goto(url)
        page.wait_for_selector('#c-format option', state='attached', timeout=30000)

    def open(self, *paths, expect='summary', timeout=60000):
        self.p.set_input_files('#file', list(paths))
        if expect == 'summary':
            self.p.wait_for_selector('#summary:not([hidden]), #error:not([hidden])', timeout=timeout)
            assert self.error() is None, self.error()
        elif expect == 'verdict':
            self.p.wait_for_selector('#verdict:not([hidden])', timeout=timeout)
        elif expect == 'error':
            self.p.wait_for_selector('#error:not([hidden])', timeout=timeout)

    def value(self, sel):
        return json.loads(self.p.get_attribute(sel, 'data-value'))

    def summary(self):
        keys = ['format', 'tensors', 'parameters', 'bytes', 'dtypes', 'metadata']
        s = {k: self.value('#s-' + k) for k in keys}
        s['values'] = self.value('#values')
        return s

    def table(self):
        return self.p.eval_on_selector_all(
            '#table tbody tr', 'rs => rs.map(r => ({name: r.dataset.name, dtype: r.dataset.dtype, '
            'shape: JSON.parse(r.dataset.shape), nbytes: Number(r.dataset.nbytes)}))')

    def error(self):
        e = self.p.query_selector('#error')
        return None if e.get_attribute('hidden') is not None else e.inner_text()

    def stats(self, name):
        row = '#table tbody tr[data-name="%s"]' % name
        self.p.click(row + ' button')
        self.p.wait_for_selector(row + '[data-stats]', timeout=120000)
        return json.loads(self.p.get_attribute(row, 'data-stats'))

    def convert(self, out_name, fmt, dtype='', timeout=120000, **opts):
        self.p.select_option('#c-format', fmt)
        self.p.fill('#c-name', out_name)
        self.p.select_option('#c-dtype', dtype)
        for k, v in opts.items():
            self.p.fill('#c-' + k, v)
        with self.p.expect_download(timeout=timeout) as d:
            self.p.click('#c-go')
            self.confirm_big()
        return d.value

    def confirm_big(self):
        try:
            self.p.wait_for_selector('#c-warn:not([hidden]), #c-progress-box:not([hidden]), #c-done:not(:empty)',
                                     timeout=10000)
        except Exception:
            return
        if self.p.is_visible('#c-warn'):
            self.p.click('#c-warn-go')


@pytest.fixture
def open_page(context, server):
    def make(url=None):
        return Page(context.new_page(), url or server['url'])
    return make


def sha256(path):
    import hashlib
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for b in iter(lambda: f.read(1 << 22), b''):
            h.update(b)
    return h.hexdigest()
