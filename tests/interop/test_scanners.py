"""ckptkit scan beside the peer scanners: picklescan, modelscan and fickling.

Every file of tests/corpus/bad/ (the inputs; not the .expected answers or the
script that made them) and every file that ../shared/fixtures/real/MANIFEST.tsv
marks MALICIOUS is scanned by
  - picklescan   `picklescan -p FILE` for each file (over a folder it stops at
                 the first archive it cannot open);
  - modelscan    `modelscan -p FOLDER -r json`, one run over a folder holding
                 copies of all the files;
  - fickling     `fickling --check-safety FILE` for each file (it takes one);
  - ckptkit      `ckptkit scan --json FILE...`, one run.
The per-file command lines run through their console entry points, one file
after another inside one process per tool (peer_cli_batch.py): the same code
path and exit status as the command, without hundreds of interpreter starts.
Every scanner runs in a subprocess: no file is opened by pickle or torch in
this process.

The verdicts go to docs/SCANNERS.md (written by this test, sorted, with the
scanners' versions; no paths of this machine). The test asserts that ckptkit
calls unsafe every file that any peer calls dangerous, and lists the files
where ckptkit finds a dangerous global that a peer does not.

What counts as "dangerous" is each tool's own strongest verdict:
  picklescan  a "dangerous import ... FOUND" line (its exit status is 2 when
              an error follows, so the lines are read, not the status);
  modelscan   an issue of severity MEDIUM, HIGH or CRITICAL on the file (or
              one of its members); LOW issues are listed as "low";
  fickling    exit 1 with LIKELY_OVERTLY_MALICIOUS or OVERTLY_MALICIOUS in its
              JSON results, naming what it found (an import, a call); its
              LIKELY_UNSAFE is "suspicious" (it gives that to every import
              outside the standard library: each torch._utils._rebuild_tensor_v2
              of an ordinary legacy checkpoint) or, when it rests only on
              invalid or malformed opcodes, "malformed";
  ckptkit     exit 1 / status "unsafe": a dangerous global was found.
"""
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CKPTKIT = os.environ.get("CKPTKIT", os.path.join(ROOT, "build", "ckptkit"))
CORPUS = os.path.join(ROOT, "tests", "corpus", "bad")
FIXTURES = os.path.join(ROOT, "..", "shared", "fixtures", "real")
TABLE = os.path.join(ROOT, "docs", "SCANNERS.md")
BIN = os.path.dirname(sys.executable)  # build/venv/bin in the current lane

TOOLS = ("picklescan", "modelscan", "fickling")
BATCH_TIMEOUT = 240
HERE = os.path.dirname(os.path.abspath(__file__))


def tool_path(name):
    p = os.path.join(BIN, name)
    return p if os.access(p, os.X_OK) else None


if not all(tool_path(t) for t in TOOLS):
    pytest.skip("picklescan, modelscan and fickling are not installed beside %s"
                % sys.executable, allow_module_level=True)


def peer_version(name):
    from importlib.metadata import version
    return version(name)


def inputs():
    """[(label, path)]: label is the path as the repository sees it."""
    out = []
    for d, _, names in os.walk(CORPUS):
        for n in names:
            if n.endswith(".expected") or n.endswith(".py"):
                continue
            p = os.path.join(d, n)
            out.append(("tests/corpus/bad/" + os.path.relpath(p, CORPUS), p))
    with open(os.path.join(FIXTURES, "MANIFEST.tsv")) as f:
        rows = [line.rstrip("\n").split("\t") for line in f][1:]
    malicious = [r[0] for r in rows if len(r) > 6 and "MALICIOUS" in r[6]]
    assert len(malicious) >= 10, "the manifest's MALICIOUS rows were not found"
    for rel in malicious:
        out.append(("../shared/fixtures/real/" + rel, os.path.join(FIXTURES, rel)))
    return sorted(out)


def flat_name(label):
    """A name unique in one folder that keeps the extension the scanners go by."""
    head = "real__" if label.startswith("../shared/") else "bad__"
    rel = label.split("/real/", 1)[1] if head == "real__" else label[len("tests/corpus/bad/"):]
    return head + rel.replace("/", "__")


def one_line(text, limit=90):
    text = "".join(c if c.isprintable() or c in " \t\n" else "\\x%02x" % ord(c)
                   if ord(c) < 256 else "\\u%04x" % ord(c) for c in text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


# ---- the four scanners ------------------------------------------------------------

def last_line(text):
    lines = [l for l in text.splitlines() if l.strip()]
    return lines[-1] if lines else ""


def batch(tool, files, work):
    """{file: (rc, stdout, stderr)}: the tool's command line once per file, all in one
    process of the pinned environment (peer_cli_batch.py)."""
    out = os.path.join(work, tool + ".json")
    r = subprocess.run([sys.executable, os.path.join(HERE, "peer_cli_batch.py"), tool, out,
                        work] + files, capture_output=True, text=True, cwd=work,
                       timeout=BATCH_TIMEOUT, errors="replace",
                       env=dict(os.environ, PYTHONWARNINGS="ignore"))
    assert r.returncode == 0, (tool, r.returncode, r.stderr[-3000:])
    with open(out) as f:
        res = json.load(f)
    return {k: (v["rc"], v["stdout"], v["stderr"]) for k, v in res.items()}


def picklescan(res):
    rc, stdout, stderr = res
    r = subprocess.CompletedProcess([], rc, stdout, stderr)
    found = re.findall(r"dangerous import '([^']*)' FOUND", r.stdout)
    if found:
        return ("dangerous", ", ".join(sorted(set(g.replace(" ", ".") for g in found))))
    if r.returncode == 2:
        m = re.search(r"could not parse .* as pickle: (.*)", r.stdout + r.stderr)
        return ("error", one_line(m.group(1) if m else last_line(r.stdout + r.stderr)))
    if r.returncode != 0:
        return ("error", "exit %d: %s" % (r.returncode, one_line(last_line(r.stderr))))
    scanned = re.search(r"Scanned files: (\d+)", r.stdout)
    if scanned and scanned.group(1) == "0":
        return ("skipped", "")
    susp = re.search(r"Suspicious globals: (\d+)", r.stdout)
    if susp and susp.group(1) != "0":
        return ("suspicious", "%s suspicious globals" % susp.group(1))
    return ("clean", "")


# fickling's analyses that rest only on the bytes not being a well-formed pickle.
FICKLING_MALFORMED = ("invalid opcode", "malformed opcode")


def fickling(res, out_json):
    rc, stdout, stderr = res
    r = subprocess.CompletedProcess([], rc, stdout, stderr)
    if r.returncode == 0:
        return ("clean", "")
    if r.returncode == 2:
        m = re.search(r"Error: (.*)", r.stderr)
        return ("error", one_line(m.group(1) if m else last_line(r.stderr)))
    if r.returncode != 1 or not os.path.exists(out_json):
        # exit 1 is also what an uncaught Python exception gives: no results written
        return ("error", one_line(last_line(r.stderr)) or "exit %d" % r.returncode)
    with open(out_json) as f:
        text = f.read()
    # One JSON object per stacked pickle, written one after another.
    results, dec, pos = [], json.JSONDecoder(), 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            break
        obj, pos = dec.raw_decode(text, pos)
        results.append(obj)
    order = ["LIKELY_SAFE", "POSSIBLY_UNSAFE", "SUSPICIOUS", "LIKELY_UNSAFE",
             "LIKELY_OVERTLY_MALICIOUS", "OVERTLY_MALICIOUS"]
    worst = max((str(o.get("severity")) for o in results), key=lambda v: order.index(v)
                if v in order else -1, default="")
    # What it found besides malformed bytes: the analyses' names, and the imports
    # it calls unsafe (its variable numbers and made-up module names vary by run).
    analyses, imports = set(), set()
    for o in results:
        for k, v in (o.get("detailed_results", {}).get("AnalysisResult") or {}).items():
            analyses.add(k)
            if k == "UnsafeImports":
                for m in re.finditer(r"from (\S+) import (\S+)", str(v)):
                    imports.add(re.sub(r"_\d+$", "_N", m.group(1)) + "." + m.group(2))
    findings = sorted(imports) or sorted(analyses)
    malformed = any(m in str(o.get("analysis", "")) for o in results for m in FICKLING_MALFORMED)
    if worst in order[4:] and findings:
        return ("dangerous", worst + ": " + ", ".join(findings))
    if worst in order[3:] and malformed and not findings:
        return ("malformed", worst + " for invalid or malformed opcodes only")
    return ("suspicious", worst + (": " + ", ".join(findings) if findings else ""))


def modelscan(folder, work):
    report = os.path.join(work, "modelscan.json")
    r = subprocess.run([tool_path("modelscan"), "-p", folder, "-r", "json", "-o", report,
                        "--show-skipped"], capture_output=True, text=True, cwd=work,
                       timeout=180, errors="replace")
    assert os.path.exists(report), (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    with open(report) as f:
        rep = json.load(f)

    def file_of(source):
        return os.path.basename(str(source).split(":", 1)[0])

    verdict = {}
    for name in rep["summary"].get("scanned", {}).get("scanned_files", []):
        verdict.setdefault(file_of(name), ("clean", ""))
    for s in rep["summary"].get("skipped", {}).get("skipped_files", []):
        src = s.get("source", s) if isinstance(s, dict) else s
        verdict.setdefault(file_of(src), ("skipped", ""))
    for e in rep.get("errors", []):
        verdict[file_of(e.get("source", ""))] = ("error", one_line(e.get("description", "")))
    rank = {"LOW": 1, "MEDIUM": 2, "HIGH": 3, "CRITICAL": 4}
    issues = {}
    for i in rep.get("issues", []):
        issues.setdefault(file_of(i["source"]), []).append(i)
    for name, found in issues.items():
        top = max(found, key=lambda i: rank.get(i.get("severity"), 0))["severity"]
        ops = sorted(set("%s.%s" % (i.get("module"), i.get("operator")) for i in found))
        kind = "dangerous" if rank.get(top, 0) >= 2 else "low"
        verdict[name] = (kind, top + ": " + ", ".join(ops))
    return verdict


def ckptkit_scan(paths, work):
    r = subprocess.run([CKPTKIT, "scan", "--json"] + paths, capture_output=True, text=True,
                       cwd=work, errors="replace")
    assert r.returncode in (0, 1, 2), (r.returncode, r.stderr[-2000:])
    rep = json.loads(r.stdout)
    verdict = {}
    for f in rep["files"]:
        name = os.path.basename(f["file"])
        danger = sorted(set(g["module"] + "." + g["name"] if "module" in g else str(g)
                            for g in f.get("globals", []) if g.get("verdict") == "dangerous"))
        if f["status"] == "unsafe":
            note = ", ".join(danger)
            if f.get("error"):
                note += " (and: " + one_line(f["error"].split(": ", 1)[-1], 60) + ")"
            verdict[name] = ("unsafe", note)
        elif f["status"] == "error":
            verdict[name] = ("error", one_line(f.get("error", "").split(": ", 1)[-1]))
        else:
            verdict[name] = (f["status"], "")
    return verdict


# ---- the table ---------------------------------------------------------------------

def cell(v):
    kind, note = v
    note = note.replace("|", "\\|")
    return "**%s**" % kind + (" " + note if note and kind in ("dangerous", "unsafe") else "") \
        if kind in ("dangerous", "unsafe") else (kind + (": " + note if note else ""))


def write_table(rows, versions, misses, peer_only):
    lines = [
        "# ckptkit scan and the peer scanners",
        "",
        "Generated by `tests/interop/test_scanners.py` (`make interop`); do not edit by hand.",
        "Every input of `tests/corpus/bad/` and every file marked MALICIOUS in",
        "`../shared/fixtures/real/MANIFEST.tsv`, scanned by each tool in a process of its own",
        "(the per-file commands run through their entry points, file after file, in one process",
        "per tool):",
        "",
        "| tool | version | how it was run |",
        "|---|---|---|",
        "| picklescan | %s | `picklescan -p FILE` for each file |" % versions["picklescan"],
        "| modelscan | %s | `modelscan -p FOLDER -r json`, one run over copies of all files |"
        % versions["modelscan"],
        "| fickling | %s | `fickling --check-safety FILE` for each file |" % versions["fickling"],
        "| ckptkit | %s | `ckptkit scan --json FILE...` |" % versions["ckptkit"],
        "",
        "Verdicts, per tool and file:",
        "",
        "- **dangerous** (**unsafe** for ckptkit): the tool's strongest verdict. picklescan: a",
        "  dangerous import; modelscan: an issue of MEDIUM severity or more; fickling:",
        "  LIKELY_OVERTLY_MALICIOUS or OVERTLY_MALICIOUS naming an import or a call; ckptkit: a",
        "  dangerous global (exit 1).",
        "- `suspicious` / `low`: a weaker warning. fickling's LIKELY_UNSAFE is one: it gives it to",
        "  every import outside the standard library, torch's own tensor rebuilds included.",
        "- `malformed`: fickling's verdict given only for invalid or malformed opcodes (no import or",
        "  call found).",
        "- `error`: the tool could not read or fully parse the file, or crashed on it.",
        "- `skipped`: the tool did not look at the file (not a format it scans).",
        "- `clean`: scanned, nothing found.",
        "",
        "## Summary",
        "",
    ]
    total = len(rows)
    for t in TOOLS + ("ckptkit",):
        n = sum(1 for r in rows if r[t][0] in ("dangerous", "unsafe"))
        lines.append("- %s: %d of %d files called %s" % (t, n, total,
                                                          "unsafe" if t == "ckptkit" else "dangerous"))
    lines.append("- files some peer calls dangerous that ckptkit does not call unsafe: %d"
                 % len(misses))
    lines += ["", "## Where ckptkit finds a dangerous global a peer does not", "",
              "| file | missed by |", "|---|---|"]
    for label, missed in peer_only:
        lines.append("| `%s` | %s |" % (label, ", ".join(missed)))
    if not peer_only:
        lines.append("| (none) | |")
    lines += ["", "## Every file", "",
              "| file | picklescan | modelscan | fickling | ckptkit |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append("| `%s` | %s |" % (r["label"], " | ".join(cell(r[t]) for t in
                                                                TOOLS + ("ckptkit",))))
    text = "\n".join(lines) + "\n"
    with open(TABLE + ".tmp", "w") as f:
        f.write(text)
    os.replace(TABLE + ".tmp", TABLE)


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory):
    """Runs the four scanners over every file; writes docs/SCANNERS.md; returns the rows."""
    files = inputs()
    assert len(files) > 300
    tmp = tmp_path_factory.mktemp("scanners")
    folder = tmp / "files"
    folder.mkdir()
    names = {}
    for label, path in files:
        name = flat_name(label)
        assert name not in names, name
        names[name] = label
        shutil.copyfile(path, folder / name)  # bytes only; nothing is parsed here
    work = tmp / "work"
    work.mkdir()
    flat = sorted(names)

    paths = [str(folder / n) for n in flat]
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        ms = pool.submit(modelscan, str(folder), str(work))
        ps = pool.submit(batch, "picklescan", paths, str(work))
        fk = pool.submit(batch, "fickling", paths, str(work))
        ms, ps, fk = ms.result(), ps.result(), fk.result()
    ps = {n: picklescan(ps[p]) for n, p in zip(flat, paths)}
    fk = {n: fickling(fk[p], os.path.join(str(work), "fickling-%d.json" % i))
          for i, (n, p) in enumerate(zip(flat, paths))}
    ckv = ckptkit_scan(paths, str(work))

    rows = []
    for n in flat:
        rows.append({"label": names[n], "picklescan": ps[n],
                     "modelscan": ms.get(n, ("skipped", "")), "fickling": fk[n],
                     "ckptkit": ckv[n]})
    rows.sort(key=lambda r: (r["label"].startswith("../"), r["label"]))
    # The table must not change from run to run or machine to machine.
    for r in rows:
        for t in TOOLS + ("ckptkit",):
            kind, note = r[t]
            note = note.replace(str(folder) + os.sep, "").replace(str(tmp), "TMP")
            r[t] = (kind, re.sub(r"0x[0-9a-f]{8,}", "0x...", note))

    misses, peer_only = [], []
    for r in rows:
        flagged_by = [t for t in TOOLS if r[t][0] == "dangerous"]
        ck_unsafe = r["ckptkit"][0] == "unsafe"
        if flagged_by and not ck_unsafe:
            misses.append((r["label"], flagged_by, r["ckptkit"]))
        if ck_unsafe:
            missed = [t for t in TOOLS if r[t][0] != "dangerous"]
            if missed:
                peer_only.append((r["label"], missed))

    ver = subprocess.run([CKPTKIT, "--version"], capture_output=True, text=True)
    versions = {t: peer_version(t) for t in TOOLS}
    versions["ckptkit"] = (ver.stdout.strip().split() or ["?"])[-1] if ver.returncode == 0 else "?"
    write_table(rows, versions, misses, peer_only)
    return rows, misses, peer_only


def test_every_file_has_a_verdict_from_every_scanner(verdicts):
    rows, _, peer_only = verdicts
    kinds = {"dangerous", "unsafe", "suspicious", "low", "malformed", "error", "skipped", "clean"}
    for r in rows:
        for t in TOOLS + ("ckptkit",):
            assert r[t][0] in kinds, (r["label"], t, r[t])
    # Each peer did run and does recognise an attack: the table is not empty talk.
    for t in TOOLS:
        assert any(r[t][0] == "dangerous" for r in rows), t
    with open(TABLE) as f:
        table = f.read()
    for r in rows:
        assert "| `%s` |" % r["label"] in table, r["label"]
    assert str(os.path.dirname(ROOT)) not in table  # no paths of this machine
    for label, _ in peer_only:
        assert label in table


def test_ckptkit_calls_unsafe_whatever_a_peer_calls_dangerous(verdicts):
    _, misses, _ = verdicts
    assert not misses, "called dangerous by a peer but not unsafe by ckptkit:\n" + \
        "\n".join("%s: by %s; ckptkit %s" % m for m in misses)


def test_ckptkit_calls_every_malicious_fixture_unsafe(verdicts):
    rows, _, _ = verdicts
    wrong = [(r["label"], r["ckptkit"]) for r in rows
             if r["label"].startswith("../shared/") and r["ckptkit"][0] != "unsafe"]
    assert not wrong, wrong
