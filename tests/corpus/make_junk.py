#!/usr/bin/env python3
"""Writes the hostile "junk" corpus: files people feed a checkpoint tool by mistake or
malice, one attack per file (outputs are committed; rerun to regenerate).

bad/junk/<stem>.<ext>      the input
bad/junk/<stem>.expected   the one-line error ckptkit must report when the file is opened with
                           format detection, naming it as tests open it
                           (tests/corpus/bad/junk/<stem>.<ext>)

The attacks:
  lfs_pointer.safetensors   a Git LFS pointer checked out instead of the weights
  html_error_page.pt        an HTML error page saved by a download that failed
  html_bom_error_page.pt    the same page behind a UTF-8 byte-order mark and blank lines
  xml_access_denied.bin     an object store's XML "AccessDenied" answer
  empty.safetensors         a zero-byte file
  random.bin                4096 random bytes (fixed seed: the same bytes on every run)
  gzip.pt                   a checkpoint compressed with gzip and not unpacked
  <fixture>.truncNN.<ext>   a real checkpoint cut after NN/16 of its length, NN = 01..15

The truncated checkpoints come from the shared real fixtures (../shared/fixtures/real,
MANIFEST.tsv gives their origin and licence): safetensors/hf_samples_overall.safetensors
(huggingface/safetensors samples, Apache-2.0), pytorch-zip/burn_buffers.pt,
pytorch-legacy/burn_legacy_shared_storage.pt and pytorch-tar/burn_tar_float32.tar
(tracel-ai/burn, MIT OR Apache-2.0), lightning-ckpt/darts_lr_find_7603e48a.ckpt
(unit8co/darts, Apache-2.0). "Length" is the file size, except for the tar, whose last
512-byte blocks are end-of-archive padding that a cut may remove without harm: there it is
where the last member's bytes end, so every cut loses member bytes.

Expected lines are not written by hand: with --expected CKPTKIT this script runs
`CKPTKIT info FILE` once per input (from the repository root, so the file is named by its
relative path) and stores its error line. Each such line must then be read by a person
before it is committed: a message that is unclear or wrong goes to HELD_BACK below, with
the reason, and its input is left out until the message is fixed. Without --expected only
the inputs are written.

Usage: make_junk.py [--expected CKPTKIT] [REPO_ROOT]   (default root: two folders up)
"""
import gzip
import os
import random
import struct
import subprocess
import sys
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
REL = "tests/corpus/bad/junk"

# Inputs whose current message is unclear or wrong (reported to the lead): not written
# until the message is fixed. name -> why.
HELD_BACK = {
    "burn_tar_float32.trunc02.tar":
        "327 bytes with 'ustar' at byte 257 but less than one 512-byte block: 'not a "
        "checkpoint format', not a truncated tar header",
    "burn_tar_float32.trunc03.tar": "as trunc02 (a first header block cut short)",
    "burn_tar_float32.trunc04.tar":
        "the first member whole, the rest cut: the tar opens without a 'pickle' member, the "
        "torch probe scores 0 and the message is 'not a checkpoint format' instead of a "
        "truncation",
    "burn_tar_float32.trunc05.tar": "as trunc04",
    "burn_tar_float32.trunc06.tar": "as trunc04",
    "burn_tar_float32.trunc11.tar":
        "cut inside the padding after member 'pickle': the tar reader stops quietly at the end "
        "of the data, and the message says \"storage '0' is used by the object but not in "
        "member 'storages'\" although there is no member 'storages' and no word of truncation",
    "burn_tar_float32.trunc12.tar": "as trunc11",
}

TRUNCATED = [
    ("safetensors/hf_samples_overall.safetensors", "hf_samples_overall", "safetensors"),
    ("pytorch-zip/burn_buffers.pt", "burn_buffers", "pt"),
    ("pytorch-legacy/burn_legacy_shared_storage.pt", "burn_legacy_shared_storage", "pt"),
    ("pytorch-tar/burn_tar_float32.tar", "burn_tar_float32", "tar"),
    ("lightning-ckpt/darts_lr_find_7603e48a.ckpt", "darts_lr_find", "ckpt"),
]

LFS_POINTER = (
    b"version https://git-lfs.github.com/spec/v1\n"
    b"oid sha256:6ee5d1c6a5f5e2e9d1a8b0cdb2b40e4f1f5e2b8d2f8f7c5a1c9e3b7d4a2f6e8c\n"
    b"size 1509296\n"
)

HTML_PAGE = (
    b"<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\">"
    b"<title>404 Not Found</title></head>\n<body>\n<h1>Not Found</h1>\n"
    b"<p>The requested URL /models/resolve/main/pytorch_model.pt was not found on this "
    b"server, or you need to log in to download it.</p>\n</body>\n</html>\n"
)

XML_DENIED = (
    b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code>"
    b"<Message>Access Denied</Message><RequestId>4442587FB7D0A2F9</RequestId></Error>"
)


def content_length(path: str, data: bytes) -> int:
    """Bytes a cut must fall inside: the file, or for a tar the end of its last member."""
    if not path.endswith(".tar"):
        return len(data)
    with tarfile.open(path) as t:
        return max(m.offset_data + m.size for m in t.getmembers())


def tiny_torch_zip() -> bytes:
    """A small real checkpoint to compress: burn_buffers.pt from the fixtures."""
    with open(os.path.join(FIXTURES, "pytorch-zip/burn_buffers.pt"), "rb") as f:
        return f.read()


def inputs() -> dict:
    files = {
        "lfs_pointer.safetensors": LFS_POINTER,
        "html_error_page.pt": HTML_PAGE,
        "html_bom_error_page.pt": b"\xef\xbb\xbf\n\n" + HTML_PAGE,
        "xml_access_denied.bin": XML_DENIED,
        "empty.safetensors": b"",
        "random.bin": random.Random(20240611).randbytes(4096),
        "gzip.pt": gzip.compress(tiny_torch_zip(), compresslevel=9, mtime=0),
    }
    for rel, stem, ext in TRUNCATED:
        path = os.path.join(FIXTURES, rel)
        with open(path, "rb") as f:
            data = f.read()
        n = content_length(path, data)
        for k in range(1, 16):
            files["%s.trunc%02d.%s" % (stem, k, ext)] = data[: n * k // 16]
    return files


def stem_of(name: str) -> str:
    return name[: name.rindex(".")]


def expected_line(ckptkit: str, name: str) -> str:
    rel = "%s/%s" % (REL, name)
    r = subprocess.run([ckptkit, "info", rel], cwd=ROOT, capture_output=True, text=True,
                       timeout=30)
    lines = r.stderr.splitlines()
    if r.returncode != 1 or len(lines) != 1 or not lines[0].startswith("ckptkit: "):
        sys.exit("make_junk: %s: expected exit 1 and one 'ckptkit: ' line, got exit %d: %r"
                 % (rel, r.returncode, r.stderr))
    return lines[0][len("ckptkit: "):]


def main() -> None:
    files = inputs()
    stems = [stem_of(n) for n in files]
    assert len(set(stems)) == len(stems), "two inputs share an .expected file"
    os.makedirs(BAD, exist_ok=True)
    for name in HELD_BACK:
        for p in (os.path.join(BAD, name), os.path.join(BAD, stem_of(name) + ".expected")):
            if os.path.exists(p):
                os.remove(p)
    for name, data in sorted(files.items()):
        if name in HELD_BACK:
            continue
        with open(os.path.join(BAD, name), "wb") as f:
            f.write(data)
    if CKPTKIT:
        for name in sorted(files):
            if name in HELD_BACK:
                continue
            with open(os.path.join(BAD, stem_of(name) + ".expected"), "w") as f:
                f.write(expected_line(CKPTKIT, name) + "\n")
    print("make_junk: %d inputs written, %d held back" % (len(files) - len(HELD_BACK),
                                                           len(HELD_BACK)))


args = sys.argv[1:]
CKPTKIT = None
if args[:1] == ["--expected"]:
    if len(args) < 2:
        sys.exit(__doc__)
    CKPTKIT = os.path.abspath(args[1])
    args = args[2:]
ROOT = os.path.abspath(args[0] if args else os.path.join(HERE, "..", ".."))
BAD = os.path.join(ROOT, REL)
FIXTURES = os.path.join(ROOT, "..", "shared", "fixtures", "real")

if __name__ == "__main__":
    main()
