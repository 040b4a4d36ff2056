"""Runs a peer scanner's command line once per file, in this one process.

    python peer_cli_batch.py TOOL OUT.json WORK FILE...

TOOL is picklescan or fickling. For each FILE the tool's own console entry
point (picklescan.cli.main, fickling.cli.main: what `picklescan -p FILE` and
`fickling --check-safety FILE` call) runs with that FILE, its stdout and
stderr captured, and its exit status taken as the interpreter would take it
(the return value; 1 with the traceback for an uncaught exception). The
results go to OUT.json as {FILE: {"rc", "stdout", "stderr"}}. One process
instead of one per file: hundreds of interpreter starts cost minutes.

test_scanners.py starts this with the pinned environment's python, so the
scanners never run inside the test process. Neither tool unpickles what it
scans.
"""
import contextlib
import io
import json
import logging
import os
import sys
import traceback


def run_one(main, argv, call_with_argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        old_argv = sys.argv
        sys.argv = argv
        try:
            rc = main(argv) if call_with_argv else main()
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except Exception:  # noqa: BLE001 - the exit status an uncaught exception gives
            traceback.print_exc()
            rc = 1
        finally:
            sys.argv = old_argv
    return {"rc": 0 if rc is None else int(rc), "stdout": out.getvalue(), "stderr": err.getvalue()}


def main():
    tool, out_path, work = sys.argv[1:4]
    files = sys.argv[4:]
    os.chdir(work)
    results = {}
    if tool == "picklescan":
        from picklescan.cli import main as cli
        log = logging.getLogger("picklescan")
        for i, f in enumerate(files):
            results[f] = run_one(cli, ["picklescan", "-p", f], False)
            for h in list(log.handlers):  # its main() adds a handler on every call
                log.removeHandler(h)
    elif tool == "fickling":
        from fickling.cli import main as cli
        for i, f in enumerate(files):
            argv = ["fickling", "--check-safety", "--json-output",
                    os.path.join(work, "fickling-%d.json" % i), f]
            results[f] = run_one(cli, argv, True)
    else:
        sys.exit("unknown tool " + tool)
    with open(out_path, "w") as fh:
        json.dump(results, fh)


if __name__ == "__main__":
    main()
