"""The browser page (build/web/ckptkit.html) against the ckptkit command: the
same summaries, tables, verdicts, statistics and byte-identical conversions,
with no network, from http:// and from file://."""
import glob
import json
import os
import shutil
import struct

import pytest

from conftest import PAGE, REAL, REQUESTS, ROOT, access_log, cli, cli_json, sha256

LIGHTNING = os.path.join(REAL, 'lightning-ckpt', 'darts_unittest-model-lstm_last-epoch=2.ckpt')
SAFETENSORS = os.path.join(REAL, 'safetensors', 'hf_samples_overall.safetensors')
MALICIOUS = os.path.join(REAL, 'pytorch-zip', 'picklescan_malicious1.zip')
DOCS = os.path.join(ROOT, 'docs')
GiB = 1 << 30


def need(path):
    if not os.path.exists(path):
        pytest.skip('fixture %s is absent' % path)
    return path


def expected_summary(path):
    info = cli_json('info', '--json', path)
    return {k: info[k] for k in ('format', 'tensors', 'parameters', 'bytes', 'dtypes',
                                 'metadata', 'values')}


def expected_table(path):
    return [{k: t[k] for k in ('name', 'dtype', 'shape', 'nbytes')}
            for t in cli_json('ls', '--json', path)['tensors']]


# ---- the file itself ---------------------------------------------------------

def wasm_imports(path):
    """(module, name) of every import of a WebAssembly binary."""
    data = open(path, 'rb').read()
    assert data[:4] == b'\0asm'

    def leb(i):
        r = s = 0
        while True:
            b = data[i]
            i += 1
            r |= (b & 0x7f) << s
            s += 7
            if b < 0x80:
                return r, i

    def name(i):
        n, i = leb(i)
        return data[i:i + n].decode(), i + n

    i, out = 8, []
    while i < len(data):
        sid = data[i]
        size, j = leb(i + 1)
        if sid == 2:
            count, k = leb(j)
            for _ in range(count):
                mod, k = name(k)
                fld, k = name(k)
                kind = data[k]
                k += 1
                if kind == 0:
                    _, k = leb(k)
                elif kind == 1:
                    k += 1
                    flags, k = leb(k)
                    _, k = leb(k)
                    if flags & 1:
                        _, k = leb(k)
                elif kind == 2:
                    flags, k = leb(k)
                    _, k = leb(k)
                    if flags & 1:
                        _, k = leb(k)
                else:
                    k += 2
                out.append((mod, fld))
        i = j + size
    return out


def test_wasm_reads_with_lseek_and_read_only():
    imports = wasm_imports(os.path.join(os.path.dirname(PAGE), 'ckw.wasm'))
    names = {n for _, n in imports}
    assert 'fd_read' in names and 'fd_seek' in names, names
    for bad in ('fd_pread', 'fd_pwrite', '__syscall_mmap2', '__syscall_munmap', 'mmap'):
        assert bad not in names, 'the web build must not use %s (wrong past 2 GiB)' % bad


def test_one_self_contained_file():
    html = open(PAGE, encoding='utf-8').read()
    csp = html.split('http-equiv="Content-Security-Policy" content="')[1].split('"')[0]
    for rule in ("default-src 'none'", "connect-src 'none'", "worker-src blob:", "base-uri 'none'",
                 "form-action 'none'", "'wasm-unsafe-eval'"):
        assert rule in csp
    assert "'unsafe-eval'" not in csp.replace("'wasm-unsafe-eval'", '')
    assert '<link rel="icon" href="data:,">' in html
    for attr in (' src=', '@import', 'url(http', '<iframe'):
        assert attr not in html.split('<script type="text/plain" id="worker-src">')[0], attr


# ---- opening files -------------------------------------------------------------

def test_empty_page_screenshot(open_page):
    pg = open_page()
    assert pg.p.is_hidden('#summary') and pg.p.is_hidden('#verdict')
    assert pg.p.is_hidden('#c-cancel') and pg.p.is_hidden('#c-progress-box')
    formats = pg.p.eval_on_selector_all('#c-format option', 'o => o.map(x => x.value)')
    # whatever this build of the library writes, in the library's order
    assert formats and 'safetensors' in formats and 'pth' in formats
    pg.p.screenshot(path=os.path.join(DOCS, 'web-empty.png'))


def test_lightning_checkpoint_matches_cli(open_page):
    pg = open_page()
    pg.open(need(LIGHTNING))
    assert pg.p.get_attribute('#verdict', 'data-verdict') == 'clean'
    assert pg.summary() == expected_summary(LIGHTNING)
    assert pg.table() == expected_table(LIGHTNING)
    assert pg.error() is None
    assert pg.p.is_hidden('#c-cancel') and pg.p.is_visible('#c-go')
    pg.p.click('#values-box summary')
    pg.p.screenshot(path=os.path.join(DOCS, 'web-lightning.png'), full_page=True)


def test_safetensors_matches_cli_filter_sort_stats(open_page):
    pg = open_page()
    pg.open(need(SAFETENSORS))
    assert pg.summary() == expected_summary(SAFETENSORS)
    table = expected_table(SAFETENSORS)
    assert pg.table() == table
    # filter as you type
    pg.p.fill('#filter', table[0]['name'][:3])
    shown = [t['name'] for t in pg.table()]
    assert shown == [t['name'] for t in table if table[0]['name'][:3].lower() in t['name'].lower()]
    pg.p.fill('#filter', '')
    # sort by size, then descending
    pg.p.click('th button[data-sort=nbytes]')
    sizes = [t['nbytes'] for t in pg.table()]
    assert sizes == sorted(sizes)
    pg.p.click('th button[data-sort=nbytes]')
    assert [t['nbytes'] for t in pg.table()] == sorted(sizes, reverse=True)
    pg.p.click('th button[data-sort=name]')
    assert [t['name'] for t in pg.table()] == sorted(t['name'] for t in table)
    # statistics, from the keyboard
    np = pytest.importorskip('numpy')
    st = pytest.importorskip('safetensors.numpy')
    arrays = st.load_file(SAFETENSORS)
    name = next(n for n, a in arrays.items() if a.dtype.kind == 'f' and a.size > 1)
    row = '#table tbody tr[data-name="%s"]' % name
    pg.p.focus(row + ' button')
    pg.p.keyboard.press('Enter')
    pg.p.wait_for_selector(row + '[data-stats]')
    got = json.loads(pg.p.get_attribute(row, 'data-stats'))
    a = arrays[name].astype(np.float64).ravel()
    fin = a[np.isfinite(a)]
    assert got['numel'] == a.size and got['nan'] == int(np.isnan(a).sum())
    assert got['min'] == fin.min() and got['max'] == fin.max()
    assert got['mean'] == pytest.approx(fin.mean(), rel=1e-12, abs=1e-300)


def test_phone_width_has_no_sideways_scroll(context, server):
    from conftest import Page
    p = context.new_page()
    p.set_viewport_size({'width': 390, 'height': 844})
    pg = Page(p, server['url'])
    pg.open(need(LIGHTNING))
    width = p.evaluate('document.documentElement.scrollWidth')
    assert width <= 390, width


# ---- scanning ---------------------------------------------------------------------

def test_malicious_file_verdict_first_no_conversion_without_override(open_page):
    pg = open_page()
    path = need(MALICIOUS)
    r = cli('scan', path, check=False)
    assert r.returncode == 1
    dangerous = [l.split()[1] for l in r.stdout.splitlines() if l.startswith('dangerous')]
    assert dangerous
    pg.open(path, expect='verdict')
    pg.p.wait_for_selector('#override-box:not([hidden])')
    assert pg.p.get_attribute('#verdict', 'data-verdict') == 'unsafe'
    assert pg.p.inner_text('#verdict-word').lower() == 'unsafe'
    listed = pg.p.eval_on_selector_all('#globals li[data-verdict=dangerous]', 'l => l.map(x => x.innerText)')
    for g in dangerous:
        assert any(g in l for l in listed), (g, listed)
    # nothing else is offered until the override
    assert pg.p.is_hidden('#convert') and pg.p.is_hidden('#summary') and pg.p.is_hidden('#tensors')
    pg.p.screenshot(path=os.path.join(DOCS, 'web-malicious.png'))
    pg.p.click('#override')
    pg.p.wait_for_selector('#summary:not([hidden]), #error:not([hidden])')
    assert not pg.errors


def test_hostile_inputs_give_one_error_line_each(open_page):
    pg = open_page()
    seen = 0
    for fam in sorted(glob.glob(os.path.join(ROOT, 'tests', 'corpus', 'bad', '*'))):
        for exp in sorted(glob.glob(os.path.join(fam, '*.expected')))[:3]:
            stem = exp[:-len('.expected')]
            inputs = [f for f in glob.glob(stem + '.*') if not f.endswith('.expected')
                      and os.path.isfile(f)]
            main = [f for f in inputs if not f.endswith('.json') or f.endswith('.index.json')]
            if not main:
                continue
            files = sorted(inputs, key=len)[:2]
            if files[0].endswith('.index.json'):  # the shards it names, when they exist
                try:
                    shards = set(json.load(open(files[0])).get('weight_map', {}).values())
                except (ValueError, AttributeError):
                    shards = set()
                files += [os.path.join(fam, s) for s in sorted(shards)
                          if isinstance(s, str) and os.path.isfile(os.path.join(fam, s))]
            if cli('info', files[0], check=False).returncode == 0 and \
                    cli('scan', files[0], check=False).returncode != 2:
                continue  # opens fine: its rule is checked when converting
            pg.open(*files, expect='error', timeout=30000)
            err = pg.error()
            assert err and '\n' not in err.strip(), (stem, err)
            assert err.startswith('/in/'), err
            # the page scans first, as 'ckptkit scan' does, and reports the
            # scan's error; a file that scans clean reports the open's error
            r = cli('scan', files[0], check=False)
            want = (r.stderr.strip().split('ckptkit: ', 1)[1] if r.returncode == 2
                    else open(exp).read().strip())
            # the command names the file by its path, the page by its mount point
            assert err.split(': ', 1)[1] == want.split(': ', 1)[1], (err, want)
            assert pg.p.is_hidden('#convert')
            seen += 1
    assert seen >= 12
    # a rule met only when converting: a tiny file whose output would be huge
    bomb = os.path.join(ROOT, 'tests', 'corpus', 'bad', 'expand', 'broadcast.pt')
    if os.path.exists(bomb):
        pg.open(bomb, expect='verdict')
        pg.p.wait_for_selector('#summary:not([hidden]), #override-box:not([hidden])')
        if pg.p.is_visible('#override'):
            pg.p.click('#override')
            pg.p.wait_for_selector('#summary:not([hidden])')
        pg.p.select_option('#c-format', 'safetensors')
        pg.p.fill('#c-name', 'bomb.safetensors')
        pg.p.click('#c-go')
        pg.p.wait_for_selector('#c-warn:not([hidden])')  # 37 GiB declared: warned first
        pg.p.click('#c-warn-go')
        pg.p.wait_for_selector('#error:not([hidden])')
        want = open(bomb[:-3] + '.expected').read().strip().split(': ', 1)[1]
        assert pg.error() == '/out/bomb.safetensors: ' + want
        assert pg.p.is_hidden('#c-progress-box')
    # still responsive
    pg.open(need(LIGHTNING))
    assert pg.error() is None and not pg.errors


# ---- converting --------------------------------------------------------------------

def convert_both(pg, tmp_path, src, out_name, fmt, cli_args, **kw):
    d = pg.convert(out_name, fmt, **kw)
    got = tmp_path / ('page-' + out_name)
    d.save_as(got)
    want_dir = tmp_path / 'cli'
    want_dir.mkdir(exist_ok=True)
    cli('convert', src, str(want_dir / out_name), *cli_args)
    assert d.suggested_filename == out_name
    assert sha256(got) == sha256(want_dir / out_name)
    return got


def test_convert_ckpt_to_safetensors_identical_to_cli(open_page, tmp_path):
    pg = open_page()
    pg.open(need(LIGHTNING))
    convert_both(pg, tmp_path, LIGHTNING, 'lstm.safetensors', 'safetensors', ['--dtype', 'f32'],
                 dtype='F32')
    assert 'Done' in pg.p.inner_text('#c-done')


def test_convert_safetensors_to_pth_identical_to_cli(open_page, tmp_path):
    pg = open_page()
    pg.open(need(SAFETENSORS))
    convert_both(pg, tmp_path, SAFETENSORS, 'overall.pth', 'pth', [])


def test_convert_options_strip_include_prune(open_page, tmp_path):
    pg = open_page()
    pg.open(need(LIGHTNING))
    a = convert_both(pg, tmp_path, LIGHTNING, 'rnn.ckpt', 'ckpt',
                     ['--include', 'rnn.*', '--strip-prefix', 'rnn.'],
                     include='rnn.*', strip='rnn.')
    pg.p.check('#c-prune')
    pg.p.select_option('#c-ema', '-1')
    b = convert_both(pg, tmp_path, LIGHTNING, 'rnn-pruned.ckpt', 'ckpt',
                     ['--include', 'rnn.*', '--strip-prefix', 'rnn.', '--prune', '--no-ema'],
                     include='rnn.*', strip='rnn.')
    assert sha256(a) != sha256(b)


def test_every_offered_format_matches_cli(open_page, tmp_path):
    """Each format the page offers (the library's list) against the command:
    the same files, byte for byte (raw writes two), or the same error line."""
    src = need(os.path.join(REAL, 'safetensors', 'burn_mnist.safetensors'))
    pg = open_page()
    pg.open(src)
    got = []
    pg.p.on('download', lambda d: got.append(d))
    formats = pg.p.eval_on_selector_all('#c-format option', 'o => o.map(x => x.value)')
    assert len(formats) >= 4
    for fmt in formats:
        got.clear()
        pg.p.select_option('#c-format', fmt)
        name = 'mnist-' + fmt + '-' + pg.p.input_value('#c-name')  # the page's name for it
        pg.p.fill('#c-name', name)
        pg.p.click('#c-go')
        pg.p.wait_for_selector('#c-done:has-text("Done"), #error:not([hidden])')
        want_dir = tmp_path / fmt
        want_dir.mkdir()
        r = cli('convert', src, str(want_dir / name), '--to', fmt, check=False)
        if r.returncode != 0:
            err = pg.error()
            assert err and err.split(': ', 1)[1] == r.stderr.strip().split(': ', 2)[2], (fmt, err, r.stderr)
            continue
        assert pg.error() is None, (fmt, pg.error())
        pg.p.wait_for_timeout(300)
        want = sorted(os.listdir(want_dir))
        assert sorted(d.suggested_filename for d in got) == want, fmt
        for d in got:
            assert sha256(d.path()) == sha256(want_dir / d.suggested_filename), (fmt, d.suggested_filename)


def test_grid_quantised_gguf_converts_like_cli(open_page, tmp_path):
    """GGUF grid types (IQ1_S ... IQ3_S) decoded in the page: the same F32
    safetensors bytes as the command (whose values tests/interop checks against
    gguf-py)."""
    gguf = pytest.importorskip('gguf')
    import numpy as np
    rng = np.random.default_rng(9)
    src = str(tmp_path / 'iq.gguf')
    w = gguf.GGUFWriter(src, 'llama')
    for name in ('IQ2_XXS', 'IQ2_XS', 'IQ2_S', 'IQ3_XXS', 'IQ3_S', 'IQ1_S', 'IQ1_M'):
        qt = gguf.GGMLQuantizationType[name]
        bb = gguf.GGML_QUANT_SIZES[qt][1]
        raw = rng.integers(0, 256, (8, bb), dtype=np.uint8)
        d = (rng.standard_normal(8) * 0.05).astype(np.float16).view(np.uint16)
        if name == 'IQ1_M':  # the fp16 scale: top nibbles of the four scale words
            sc = raw[:, 48:56].copy().view('<u2')
            for k in range(4):
                sc[:, k] = (sc[:, k] & 0x0FFF) | (((d >> (4 * k)) & 0xF) << 12)
            raw[:, 48:56] = sc.view(np.uint8)
        else:
            raw[:, 0:2] = d.view(np.uint8).reshape(8, 2)
        w.add_tensor(name.lower() + '.weight', raw.reshape(2, 4 * bb), raw_shape=(2, 4 * bb),
                     raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    pg = open_page()
    pg.open(src)
    convert_both(pg, tmp_path, src, 'iq.safetensors', 'safetensors', ['--dtype', 'f32'],
                 dtype='F32')
    assert 'Done' in pg.p.inner_text('#c-done')


def test_sharded_checkpoint_from_several_files(open_page, tmp_path):
    d = tmp_path / 'shards'
    d.mkdir()
    src = need(os.path.join(REAL, 'safetensors', 'darts_tiny_chronos2.safetensors'))
    cli('convert', src, str(d / 'model.safetensors'), '--shard-size', '4KB')
    files = sorted(str(f) for f in d.iterdir())
    index = [f for f in files if f.endswith('.index.json')]
    assert len(files) > 2 and len(index) == 1
    pg = open_page()
    pg.open(*files)
    want = expected_summary(index[0])
    assert want['format'].startswith('sharded:')
    assert pg.summary() == want
    assert pg.table() == expected_table(index[0])
    # the shards without their index: one clear line
    pg.open(*[f for f in files if f not in index], expect='error')
    assert 'index.json' in pg.error()


def test_a_larger_file_after_a_small_one(open_page, tmp_path):
    # the second file is read whole into the heap (under 1 GiB): that must
    # not count against the memory bound the first, small file set
    path = str(tmp_path / 'mid.safetensors')
    sparse_safetensors(path, [('w', 'F32', [20 << 20], 80 << 20)], {'w': b'\0\0\x80\x3f' * 8})
    pg = open_page()
    pg.open(need(LIGHTNING))
    pg.open(path)
    assert pg.error() is None
    assert pg.table() == expected_table(path)


# ---- big files ----------------------------------------------------------------------

def sparse_safetensors(path, tensors, fill):
    """A safetensors file whose tensors are laid out in order; FILL maps a
    tensor name to the bytes written at its start (the rest is a hole)."""
    header, off = {}, 0
    for name, dtype, shape, size in tensors:
        header[name] = {'dtype': dtype, 'shape': shape, 'data_offsets': [off, off + size]}
        off += size
    h = json.dumps(header, separators=(',', ':')).encode()
    h += b' ' * (-len(h) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)) + h)
        base = 8 + len(h)
        for name, data in fill.items():
            f.seek(base + header[name]['data_offsets'][0])
            f.write(data)
        f.truncate(base + off)
    return base


@pytest.fixture(scope='module')
def big5(tmp_path_factory):
    np = pytest.importorskip('numpy')
    path = str(tmp_path_factory.mktemp('big') / 'sparse5g.safetensors')
    rng = np.random.default_rng(7)
    far = rng.standard_normal(1 << 20).astype(np.float32)
    far[5] = np.nan
    far[9] = np.inf
    hole = 5 * GiB - (1 << 22) - 4096
    tensors = [('head', 'F32', [1024], 4096), ('hole', 'U8', [hole], hole),
               ('far.weight', 'F32', [1024, 1024], 1 << 22)]
    base = sparse_safetensors(path, tensors, {'far.weight': far.tobytes()})
    assert base + 4096 + hole > 4 * GiB
    yield path, far
    os.unlink(path)


def test_sparse_5gib_lists_and_stats_past_4gib(open_page, big5):
    np = pytest.importorskip('numpy')
    path, far = big5
    pg = open_page()
    pg.open(path)
    assert pg.table() == expected_table(path)
    assert pg.summary() == expected_summary(path)
    got = pg.stats('far.weight')
    a = far.astype(np.float64)
    fin = a[np.isfinite(a)]
    assert got['nan'] == 1 and got['posinf'] == 1 and got['neginf'] == 0
    assert got['min'] == fin.min() and got['max'] == fin.max()
    assert got['mean'] == pytest.approx(fin.mean(), rel=1e-9)
    # a conversion of the whole file: progress with a rate, then cancel
    pg.p.select_option('#c-format', 'safetensors')
    pg.p.fill('#c-name', 'sparse5g-copy.safetensors')
    pg.p.click('#c-go')
    # over 2 GB: the page warns first (a private window would cancel the download)
    pg.p.wait_for_selector('#c-warn:not([hidden])')
    assert '2 GB' in pg.p.inner_text('#c-warn-text')
    pg.p.click('#c-warn-go')
    pg.p.wait_for_selector('#c-rate:has-text("/s")', timeout=60000)
    pg.p.screenshot(path=os.path.join(DOCS, 'web-converting.png'))
    pg.p.click('#c-cancel')
    pg.p.wait_for_selector('#c-done:has-text("Cancelled")')
    assert pg.p.is_hidden('#c-progress-box')
    # the page reopens the file in a fresh worker and goes on working
    assert pg.stats('head')['numel'] == 1024
    debug = pg.p.inner_text('#debug')
    mib = float(debug.split('wasm heap: ')[1].split(' MiB')[0])
    assert mib < 256, debug


def sparse_gguf(path, tensors, fill, note_len):
    """A GGUF v3 file (F32 = type 0, I8 = type 24, one dimension each) with a
    string key of NOTE_LEN bytes, so its header passes the first window; FILL
    maps a tensor name to the bytes written at its start (the rest a hole)."""
    def s(b):
        return struct.pack('<Q', len(b)) + b
    head = b'GGUF' + struct.pack('<IQQ', 3, len(tensors), 2)
    head += s(b'general.name') + struct.pack('<I', 8) + s(b'sparse')
    head += s(b'note') + struct.pack('<I', 8) + s(b'n' * note_len)
    offs, off = {}, 0
    for name, gtype, n, size in tensors:
        off += -off % 32
        offs[name] = off
        head += s(name.encode()) + struct.pack('<IQIQ', 1, n, gtype, off)
        off += size
    head += b'\0' * (-len(head) % 32)
    with open(path, 'wb') as f:
        f.write(head)
        for name, data in fill.items():
            f.seek(len(head) + offs[name])
            f.write(data)
        f.truncate(len(head) + off)
    return len(head) + offs[tensors[-1][0]]


def test_sparse_gguf_over_4gib_lists_like_cli(open_page, tmp_path):
    np = pytest.importorskip('numpy')
    path = str(tmp_path / 'sparse5g.gguf')
    far = np.arange(1024, dtype=np.float32) - 100.5
    hole = 5 * GiB
    far_off = sparse_gguf(path, [('head', 0, 256, 1024), ('hole', 24, hole, hole),
                                 ('far.weight', 0, 1024, 4096)],
                          {'far.weight': far.tobytes()}, 3 << 20)
    assert far_off > 4 * GiB
    pg = open_page()
    pg.open(path)
    assert pg.error() is None
    assert pg.table() == expected_table(path)
    assert pg.summary() == expected_summary(path)
    got = pg.stats('far.weight')
    assert got['min'] == far.min() and got['max'] == far.max()
    os.unlink(path)


def test_ckpt_over_1gib_lists_and_converts_like_cli(open_page, tmp_path):
    """A Lightning-style .ckpt (torch zip) over 1 GiB, made by the command from
    a sparse safetensors file: its directory is read from the tail, data.pkl
    from the head, and a tensor stored past the 1 GiB mark comes through the
    chunked reads, its CRC checked, into a conversion equal to the command's."""
    np = pytest.importorskip('numpy')
    st = str(tmp_path / 'big.safetensors')
    path = str(tmp_path / 'big.ckpt')
    far = (np.arange(1 << 16, dtype=np.float32) * 0.5 - 7).reshape(256, 256)
    hole = GiB + (32 << 20)
    sparse_safetensors(st, [('a.head', 'F32', [256], 1024), ('b.hole', 'U8', [hole], hole),
                            ('c.far', 'F32', [256, 256], 1 << 18)], {'c.far': far.tobytes()})
    cli('convert', st, path)
    os.unlink(st)
    assert os.path.getsize(path) > GiB + (32 << 20)
    pg = open_page()
    pg.open(path)
    assert pg.error() is None
    assert pg.table() == expected_table(path)
    assert pg.summary() == expected_summary(path)
    got = pg.stats('c.far')
    assert got['min'] == far.min() and got['max'] == far.max()
    convert_both(pg, tmp_path, path, 'far.safetensors', 'safetensors', ['--include', 'c.*'],
                 include='c.*')
    os.unlink(path)


@pytest.mark.skipif(os.environ.get('CKPTKIT_WEB_BIG') == '0',
                    reason='CKPTKIT_WEB_BIG=0: the 3 GiB conversion (about 2 minutes) is skipped')
def test_convert_3gib_in_persistent_profile_matches_cli(pw, server, tmp_path):
    from conftest import ARGS, CHROMIUM, Page
    np = pytest.importorskip('numpy')
    src = str(tmp_path / 'three.safetensors')
    rng = np.random.default_rng(3)
    body = 3 * GiB
    sparse_safetensors(src, [('a', 'F32', [256], 1024), ('big', 'U8', [body], body),
                             ('z', 'F16', [4096], 8192)],
                       {'a': rng.standard_normal(256).astype(np.float32).tobytes(),
                        'z': rng.standard_normal(4096).astype(np.float16).tobytes()})
    ctx = pw.chromium.launch_persistent_context(str(tmp_path / 'profile'), executable_path=CHROMIUM,
                                                args=ARGS, accept_downloads=True,
                                                viewport={'width': 1280, 'height': 800})
    try:
        ctx.on('request', lambda r: REQUESTS.append((r.url, r.resource_type)))
        pg = Page(ctx.new_page(), server['url'])
        pg.open(src)
        d = pg.convert('three.pth', 'pth', timeout=900000)
        assert d.failure() is None
        got = sha256(d.path())
        os.unlink(d.path())
        done = pg.p.inner_text('#c-done')
        assert 'Done' in done
        print('\n3 GiB in the page:', done)
    finally:
        ctx.close()
        shutil.rmtree(tmp_path / 'profile', ignore_errors=True)  # 3 GiB staged in it
    cli('convert', src, str(tmp_path / 'three.pth'))
    try:
        assert got == sha256(tmp_path / 'three.pth')
    finally:
        os.unlink(tmp_path / 'three.pth')
        os.unlink(src)


# ---- file:// and the network ---------------------------------------------------------

def test_file_url_same_as_http(open_page, server, tmp_path):
    results = []
    for url in (server['url'], 'file://' + PAGE):
        pg = open_page(url)
        pg.open(need(LIGHTNING))
        d = pg.convert('lstm-%d.safetensors' % len(results), 'safetensors')
        out = tmp_path / d.suggested_filename
        d.save_as(out)
        results.append((pg.summary(), pg.table(), sha256(out)))
        assert not pg.errors
    assert results[0] == results[1]


def test_zz_no_network_at_all(open_page, server):
    pg = open_page()
    res = pg.p.evaluate('u => ckptkit.probeNetwork(u)', 'http://127.0.0.1:%d/probe' % server['port'])
    assert res.startswith('blocked'), res
    pg.p.wait_for_timeout(300)
    violations = pg.p.evaluate('ckptkit.cspViolations')
    assert any(v['directive'].startswith('connect-src') for v in violations), violations
    # over the whole run: the browser asked only for the page (http or file)
    urls = {u for u, _ in REQUESTS}
    allowed = {server['url'], 'file://' + PAGE}
    assert urls and urls <= allowed | {u for u in urls if u.startswith(('blob:', 'data:'))}, urls
    log = access_log(server)
    assert log and all('"GET /ckptkit.html ' in l for l in log), log
