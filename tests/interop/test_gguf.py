"""test_gguf.py -- ckptkit's GGUF reader and writer against gguf-py 0.19
(llama.cpp's own Python package: GGUFWriter, GGUFReader, gguf.quants).

- ckptkit reads what GGUFWriter writes: every metadata type, arrays (nested
  too), both byte orders, every type gguf.quants.quantize produces, an
  alignment other than 32, split files; names, PyTorch shapes, ggml type
  names, metadata values and tensor values (dequantised values bit-exact).
- gguf-py reads what ckptkit writes: little- and big-endian, custom
  alignment, split files: names, shapes, types, typed metadata, data bytes.
- Round trips: safetensors F16 -> GGUF -> safetensors bit-exact; GGUF
  quantised -> GGUF --dtype keep with byte-identical tensor data and keys.
- The quantisation policy on synthetic SD-like and LLM-like state dicts.
- The real GGUF files in ../shared/fixtures/real/gguf.
"""
import json
import os
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as T  # noqa: E402
from gguf import GGUFEndian, GGUFReader, GGUFValueType, GGUFWriter  # noqa: E402
from gguf.quants import dequantize, quantize  # noqa: E402

from compat import record  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CKPTKIT = os.environ.get("CKPTKIT", str(ROOT / "build" / "ckptkit"))
REAL = ROOT.parent / "shared" / "fixtures" / "real" / "gguf"
TOOL = "gguf (gguf-py)"
VERSION = "0.19.0"

ST_NP = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16,
         "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8}


def ck(*args, expect=0):
    r = subprocess.run([CKPTKIT] + [str(a) for a in args], capture_output=True, text=True)
    assert r.returncode == expect, (args, r.returncode, r.stdout, r.stderr)
    return r


def read_safetensors(path):
    blob = Path(path).read_bytes()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    meta = header.pop("__metadata__", {})
    out = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        a = np.frombuffer(blob[8 + n + b:8 + n + end], dtype=ST_NP[e["dtype"]])
        out[name] = (e["dtype"], a.reshape(e["shape"]))
    return out, meta


def write_safetensors(path, tensors, meta=None):
    names = {"float16": "F16", "float32": "F32", "int32": "I32", "float64": "F64"}
    header, off, blobs = {}, 0, []
    if meta:
        header["__metadata__"] = meta
    for k, a in tensors.items():
        b = np.ascontiguousarray(a).tobytes()
        header[k] = {"dtype": names[str(a.dtype)], "shape": list(a.shape),
                     "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    Path(path).write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def ls_json(path):
    return {t["name"]: t for t in json.loads(ck("ls", path, "--json").stdout)["tensors"]}


def info_json(path):
    return json.loads(ck("info", path, "--json").stdout)


def field_value(f):
    """A GGUFReader field as a Python value (arrays as lists)."""
    if f.types[0] == GGUFValueType.ARRAY:
        if f.types[-1] == GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode() for i in f.data]
        return [f.parts[i][0].item() for i in f.data]
    if f.types[0] == GGUFValueType.STRING:
        return bytes(f.parts[-1]).decode()
    return f.parts[-1][0].item()


# ---- ckptkit reads what GGUFWriter writes --------------------------------------------

QUANT_TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "TQ1_0", "TQ2_0", "MXFP4"]


def make_reference(path, endian=GGUFEndian.LITTLE, alignment=None, split_max_tensors=0):
    """A GGUFWriter file with every metadata type, arrays and tensors of every type
    gguf.quants.quantize makes. Returns {name: (type name, values as F32)}."""
    rng = np.random.default_rng(7)
    w = GGUFWriter(str(path), "llama", endianess=endian, split_max_tensors=split_max_tensors)
    w.add_uint8("t.u8", 200)
    w.add_int8("t.i8", -100)
    w.add_uint16("t.u16", 60000)
    w.add_int16("t.i16", -30000)
    w.add_uint32("t.u32", 4000000000)
    w.add_int32("t.i32", -2000000000)
    w.add_float32("t.f32", 0.25)
    w.add_uint64("t.u64", 2**63 + 5)
    w.add_int64("t.i64", -2**62)
    w.add_float64("t.f64", 1.0 / 3)
    w.add_bool("t.bool", True)
    w.add_string("t.str", "line1\nline2\ttab \x1b[31m")
    w.add_array("t.arr_i32", [1, -2, 3])
    w.add_array("t.arr_str", ["a", "bb", "ccc"])
    w.add_key_value("t.arr_f32", [0.5, 1.5], GGUFValueType.ARRAY, sub_type=GGUFValueType.FLOAT32)
    w.add_array("t.nested", [[1, 2], [3]])
    w.add_string("tokenizer.chat_template", "{% for m in messages %}{{ m.content }}{% endfor %}")
    if alignment:
        w.add_custom_alignment(alignment)
    expect = {}
    x = rng.standard_normal((4, 256)).astype(np.float32)
    for name in QUANT_TYPES:
        q = quantize(x, T[name])
        w.add_tensor(f"q.{name}", q, raw_shape=q.shape, raw_dtype=T[name])
        expect[f"q.{name}"] = (name, dequantize(q, T[name]).astype(np.float32))
    h = x.astype(np.float16)
    w.add_tensor("f.f16", h)
    expect["f.f16"] = ("F16", h.astype(np.float32))
    w.add_tensor("f.f32", x[:2, :100].copy())
    expect["f.f32"] = ("F32", x[:2, :100])
    b = quantize(x[:1], T.BF16)
    # as uint16 elements (raw_shape in elements), so that a big-endian writer swaps them
    w.add_tensor("f.bf16", b.view(np.uint16), raw_shape=(1, 256), raw_dtype=T.BF16)
    expect["f.bf16"] = ("BF16", dequantize(b, T.BF16).astype(np.float32).reshape(1, 256))
    i = rng.integers(-1000, 1000, (3, 5)).astype(np.int32)
    w.add_tensor("i.i32", i)
    expect["i.i32"] = ("I32", i)
    w.add_tensor("f.3d", x.reshape(2, 2, 256).copy())
    expect["f.3d"] = ("F32", x.reshape(2, 2, 256))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return expect


def check_reads(path, expect, tmp_path, order):
    ts = ls_json(path)
    for name, (tname, vals) in expect.items():
        assert ts[name]["dtype"] == tname, name
        assert ts[name]["shape"] == list(vals.shape), name
    meta = info_json(path)["metadata"]
    assert meta["t.u8"] == "200" and meta["t.i8"] == "-100" and meta["t.u16"] == "60000"
    assert meta["t.i16"] == "-30000" and meta["t.u32"] == "4000000000"
    assert meta["t.i32"] == "-2000000000" and meta["t.f32"] == "0.25"
    assert meta["t.u64"] == str(2**63 + 5) and meta["t.i64"] == str(-2**62)
    assert float(meta["t.f64"]) == 1.0 / 3 and meta["t.bool"] == "true"
    assert meta["t.str"] == "line1\nline2\ttab \x1b[31m"
    assert meta["t.arr_i32"] == "[INT32 x 3]" and meta["t.arr_str"] == "[STRING x 3]"
    arrays = info_json(path)["values"]["gguf"]["arrays"]
    assert arrays["t.arr_i32"]["values"] == [1, -2, 3]
    assert arrays["t.arr_str"]["values"] == ["a", "bb", "ccc"]
    assert arrays["t.arr_f32"] == {"type": "FLOAT32", "count": 2, "values": [0.5, 1.5]}
    assert arrays["t.nested"]["type"] == "ARRAY" and arrays["t.nested"]["values"] == [[1, 2], [3]]
    assert info_json(path)["values"]["gguf"]["byte_order"] == order
    # values: everything to F32 through convert, compared bit for bit
    out = tmp_path / f"out-{order}.safetensors"
    ck("convert", path, out, "--force")
    got, _ = read_safetensors(out)
    for name, (tname, vals) in expect.items():
        dt, a = got[name]
        if tname == "I32":
            assert dt == "I32" and np.array_equal(a, vals)
            continue
        assert dt == ("F16" if tname == "F16" else "BF16" if tname == "BF16" else "F32"), name
        a = a.view(np.float16).astype(np.float32) if dt == "F16" else a
        if dt == "BF16":
            a = (a.astype(np.uint32) << 16).view(np.float32)
        assert np.array_equal(a.reshape(vals.shape).view(np.uint32),
                              vals.astype(np.float32).view(np.uint32)), name


@pytest.mark.parametrize("endian", ["little", "big"])
def test_reads_gguf_writer(tmp_path, endian):
    e = GGUFEndian.LITTLE if endian == "little" else GGUFEndian.BIG
    p = tmp_path / "ref.gguf"
    expect = make_reference(p, e)
    check_reads(p, expect, tmp_path, endian)
    record(TOOL, VERSION, "reads", f"GGUFWriter files ({endian}-endian): every metadata type, "
           "arrays (nested too), " + ", ".join(QUANT_TYPES) + ", F16, BF16, F32, I32")


def test_reads_alignment_and_splits(tmp_path):
    p = tmp_path / "al.gguf"
    expect = make_reference(p, alignment=64)
    assert info_json(p)["values"]["gguf"]["alignment"] == 64
    check_reads(p, expect, tmp_path, "little")
    sp = tmp_path / "sp.gguf"
    expect = make_reference(sp, split_max_tensors=4)
    parts = sorted(tmp_path.glob("sp-*-of-*.gguf"))
    assert len(parts) == 4
    for part in (parts[0], parts[2]):  # any part opens the whole model
        ts = ls_json(part)
        assert list(ts) == list(expect)
        assert info_json(part)["values"]["gguf"]["files"] == 4
    check_reads(parts[0], expect, tmp_path, "little")
    parts[3].unlink()
    r = ck("ls", parts[0], expect=1)
    assert "sp-00004-of-00004.gguf" in r.stderr
    record(TOOL, VERSION, "reads", "GGUFWriter files with general.alignment 64 and split files "
           "(split_max_tensors), read as one model")


def test_dequant_types_without_quantizer(tmp_path):
    """Types gguf-py decodes but cannot encode: files built from random blocks."""
    rng = np.random.default_rng(3)
    names = ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS", "NVFP4"]
    p = tmp_path / "k.gguf"
    w = GGUFWriter(str(p), "llama")
    expect = {}
    for name in names:
        blk, bb = gguf.GGML_QUANT_SIZES[T[name]]
        raw = rng.integers(0, 256, (2, 2 * bb), dtype=np.uint8)
        for row in raw.reshape(-1, bb):  # finite fp16 scales
            for off in {"Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2],
                        "Q6_K": [208], "IQ4_NL": [0], "IQ4_XS": [0], "NVFP4": []}[name]:
                row[off:off + 2] = np.array([rng.standard_normal()], np.float16).view(np.uint8)
        w.add_tensor(name, raw, raw_shape=raw.shape, raw_dtype=T[name])  # byte shape
        expect[name] = dequantize(raw, T[name]).astype(np.float32)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    out = tmp_path / "k.safetensors"
    ck("convert", p, out)
    got, _ = read_safetensors(out)
    for name in names:
        assert np.array_equal(got[name][1].view(np.uint32), expect[name].view(np.uint32)), name
    # F16 output is the F32 values rounded once
    out16 = tmp_path / "k16.safetensors"
    ck("convert", p, out16, "--dtype", "f16")
    got16, _ = read_safetensors(out16)
    for name in names:
        assert np.array_equal(got16[name][1].view(np.float16),
                              expect[name].astype(np.float16)), name
    record(TOOL, VERSION, "reads", "dequantised " + ", ".join(names) +
           " bit-exact with gguf.quants.dequantize")


def test_undecodable_type_is_refused(tmp_path):
    """Q8_K (ggml's intermediate type, which gguf-py cannot decode either)."""
    p = tmp_path / "q8k.gguf"
    w = GGUFWriter(str(p), "llama")
    w.add_tensor("blk.0.w", np.zeros((1, 292), np.uint8), raw_shape=(1, 292), raw_dtype=T.Q8_K)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    assert ls_json(p)["blk.0.w"]["dtype"] == "Q8_K"
    r = ck("convert", p, tmp_path / "o.safetensors", expect=1)
    assert "tensor 'blk.0.w': ckptkit cannot dequantise Q8_K" in r.stderr
    ck("convert", p, tmp_path / "o.gguf")  # kept as is in GGUF
    assert ls_json(tmp_path / "o.gguf")["blk.0.w"]["dtype"] == "Q8_K"


# ---- gguf-py reads what ckptkit writes --------------------------------------------------

def sample_state(rng):
    return {
        "model.embed.weight": rng.standard_normal((64, 32)).astype(np.float16),
        "model.layers.0.attn.weight": rng.standard_normal((32, 64)).astype(np.float32),
        "model.layers.0.attn.bias": rng.standard_normal(32).astype(np.float32),
        "model.layers.0.norm.weight": rng.standard_normal(64).astype(np.float32),
        "model.conv.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "model.count": np.arange(6, dtype=np.int32).reshape(2, 3),
    }


@pytest.mark.parametrize("endian", ["little", "big"])
def test_gguf_py_reads_ours(tmp_path, endian):
    rng = np.random.default_rng(11)
    st = sample_state(rng)
    src = tmp_path / "in.safetensors"
    write_safetensors(src, st, {"general.architecture": "llama", "note": "hello"})
    out = tmp_path / "out.gguf"
    args = ["convert", src, out, "--metadata", "general.name=tiny"]
    if endian == "big":
        args.append("--big-endian")
    ck(*args)
    r = GGUFReader(str(out))
    assert r.endianess == (GGUFEndian.BIG if endian == "big" else GGUFEndian.LITTLE)
    assert field_value(r.fields["general.architecture"]) == "llama"
    assert field_value(r.fields["general.name"]) == "tiny"
    assert field_value(r.fields["note"]) == "hello"
    got = {t.name: t for t in r.tensors}
    assert list(got) == list(st)
    for name, a in st.items():
        t = got[name]
        assert list(reversed([int(v) for v in t.shape])) == list(a.shape), name
        assert t.tensor_type.name == {"float16": "F16", "float32": "F32", "int32": "I32"}[
            str(a.dtype)]
        data = np.asarray(t.data).reshape(a.shape)
        assert np.array_equal(data.astype(a.dtype).view(np.uint8), a.view(np.uint8)), name
    record(TOOL, VERSION, "writes", f"GGUF v3 ({endian}-endian) from safetensors: names, shapes, "
           "types, string metadata, data bytes")


def test_gguf_py_reads_quantised_alignment_and_splits(tmp_path):
    rng = np.random.default_rng(12)
    st = sample_state(rng)
    src = tmp_path / "in.safetensors"
    write_safetensors(src, st)
    out = tmp_path / "q.gguf"
    ck("convert", src, out, "--dtype", "q8_0", "--metadata", "general.alignment=64")
    r = GGUFReader(str(out))
    assert r.alignment == 64
    assert field_value(r.fields["general.alignment"]) == 64
    assert r.fields["general.alignment"].types == [GGUFValueType.UINT32]
    assert field_value(r.fields["general.quantization_version"]) == 2
    got = {t.name: t for t in r.tensors}
    for t in r.tensors:
        assert t.data_offset % 64 == 0
    w = st["model.layers.0.attn.weight"]
    t = got["model.layers.0.attn.weight"]
    assert t.tensor_type == T.Q8_0
    assert np.array_equal(np.asarray(t.data).reshape(-1),
                          quantize(w, T.Q8_0).reshape(-1))
    assert got["model.layers.0.attn.bias"].tensor_type == T.F32
    # split output: every part opens with gguf-py and holds split.* keys
    sp = tmp_path / "s.gguf"
    ck("convert", src, sp, "--shard-size", "5000")
    parts = sorted(tmp_path.glob("s-*-of-*.gguf"))
    assert len(parts) > 1 and not (tmp_path / "s.gguf").exists()
    names = []
    for k, part in enumerate(parts):
        r = GGUFReader(str(part))
        assert field_value(r.fields["split.no"]) == k
        assert field_value(r.fields["split.count"]) == len(parts)
        assert field_value(r.fields["split.tensors.count"]) == len(st)
        names += [t.name for t in r.tensors]
    assert names == list(st)
    assert list(ls_json(parts[0])) == list(st)  # and ckptkit reads them back as one
    record(TOOL, VERSION, "writes", "quantised GGUF (Q8_0 bit-exact with gguf.quants.quantize), "
           "general.alignment 64, split files with split.* keys")


# ---- round trips ------------------------------------------------------------------------

def test_roundtrip_safetensors_f16(tmp_path):
    rng = np.random.default_rng(5)
    st = {"a.weight": rng.standard_normal((33, 17)).astype(np.float16),
          "b": np.array([np.inf, -0.0, 65504, 6e-8], np.float16),
          "c.weight": rng.standard_normal((2, 3, 4, 5)).astype(np.float16)}
    src, mid, back = tmp_path / "a.safetensors", tmp_path / "m.gguf", tmp_path / "b.safetensors"
    write_safetensors(src, st, {"k": "v"})
    ck("convert", src, mid, "--dtype", "f16")
    ck("convert", mid, back)
    got, meta = read_safetensors(back)
    assert meta.get("k") == "v"
    for k, a in st.items():
        assert got[k][0] == "F16" and np.array_equal(got[k][1].view(np.uint16),
                                                     a.view(np.uint16)), k
    ck("verify", src, back)


def test_roundtrip_quantised_keep(tmp_path):
    p = tmp_path / "ref.gguf"
    make_reference(p)
    out = tmp_path / "keep.gguf"
    ck("convert", p, out, "--dtype", "keep")
    a, b = GGUFReader(str(p)), GGUFReader(str(out))
    ta = {t.name: t for t in a.tensors}
    for t in b.tensors:
        assert t.tensor_type == ta[t.name].tensor_type
        assert bytes(np.asarray(t.data).view(np.uint8)) == bytes(
            np.asarray(ta[t.name].data).view(np.uint8)), t.name
    for k, f in a.fields.items():
        if k.startswith("GGUF."):
            continue
        assert b.fields[k].types == f.types, k
        assert field_value(b.fields[k]) == field_value(f), k
    # a little-endian copy of a big-endian file: same values
    be = tmp_path / "be.gguf"
    make_reference(be, GGUFEndian.BIG)
    le = tmp_path / "le.gguf"
    ck("convert", be, le)
    assert GGUFReader(str(le)).endianess == GGUFEndian.LITTLE
    ck("verify", p, le)
    record(TOOL, VERSION, "writes", "GGUF -> GGUF --dtype keep: quantised data byte-identical, "
           "every key with its type (big-endian input rewritten little-endian)")


# ---- quantisation policy -------------------------------------------------------------

def test_policy_tables(tmp_path):
    rng = np.random.default_rng(9)
    sd = {
        "model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3),
        "model.diffusion_model.input_blocks.0.0.bias": (320,),
        "model.diffusion_model.input_blocks.1.1.proj_in.weight": (320, 320, 1, 1),
        "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight": (320, 320),
        "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.norm1.weight": (320,),
        "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.ff.net.0.proj.weight":
            (2560, 320),
        "model.diffusion_model.time_embed.0.weight": (1280, 320),
        "first_stage_model.decoder.conv_in.weight": (512, 4, 3, 3),
        "cond_stage_model.transformer.text_model.embeddings.position_ids": (1, 77),
        "model.diffusion_model.out.2.weight": (4, 320, 3, 3),
    }
    llm = {
        "token_embd.weight": (1000, 64),
        "blk.0.attn_q.weight": (64, 64),
        "blk.0.attn_norm.weight": (64,),
        "blk.0.ffn_down.weight": (64, 200),
        "blk.0.ffn_up.weight": (200, 64),
        "output_norm.weight": (64,),
        "output.weight": (1000, 64),
    }

    def run(shapes, *opts):
        st = {}
        for k, s in shapes.items():
            if k.endswith("position_ids"):
                st[k] = np.arange(np.prod(s), dtype=np.int32).reshape(s)
            else:
                st[k] = rng.standard_normal(s).astype(np.float32)
        src = tmp_path / "p.safetensors"
        write_safetensors(src, st)
        out = tmp_path / "p.gguf"
        r = ck("convert", src, out, "--force", *opts)
        return {k: v["dtype"] for k, v in ls_json(out).items()}, r.stderr

    got, err = run(sd, "--dtype", "q4_0", "--allow-long-names")
    p = "model.diffusion_model."
    assert got == {
        p + "input_blocks.0.0.weight": "F16",  # last dim 3: Q4_0 does not fit, F16
        p + "input_blocks.0.0.bias": "F32",
        p + "input_blocks.1.1.proj_in.weight": "F16",
        p + "input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight": "Q4_0",
        p + "input_blocks.1.1.transformer_blocks.0.norm1.weight": "F32",
        p + "input_blocks.1.1.transformer_blocks.0.ff.net.0.proj.weight": "Q4_0",
        p + "time_embed.0.weight": "Q4_0",
        "first_stage_model.decoder.conv_in.weight": "F16",
        "cond_stage_model.transformer.text_model.embeddings.position_ids": "I32",
        p + "out.2.weight": "F16",
    }
    assert "types: F16 x 4, I32 x 1, F32 x 2, Q4_0 x 3" in err or \
        "types: I32 x 1, F16 x 4, F32 x 2, Q4_0 x 3" in err, err

    got, err = run(llm, "--dtype", "q8_0", "--tensor-type", "token_embd=q4_1",
                   "--tensor-type", "ffn_down=q5_0", "--tensor-type", "attn_.*=f16",
                   "--dtype-exclude", "output.weight")
    assert got == {
        "token_embd.weight": "Q4_1",
        "blk.0.attn_q.weight": "F16",
        "blk.0.attn_norm.weight": "F16",  # a rule overrides the policy
        "blk.0.ffn_down.weight": "F16",  # 200 is no multiple of 32: Q5_0 falls back to F16
        "blk.0.ffn_up.weight": "Q8_0",
        "output_norm.weight": "F32",
        "output.weight": "F32",
    }
    # K-quants: a last dimension of 64 does not fit 256-element blocks, and the fallback
    # chain is llama-quantize's: Q4_K -> Q5_0, Q6_K -> Q8_0, Q2_K -> Q4_0
    got, _ = run(llm, "--dtype", "q4_k", "--tensor-type", "ffn_up=q6_k", "--tensor-type",
                 "output.weight=q2_k", "--tensor-type", "ffn_down=q5_k")
    assert got == {
        "token_embd.weight": "Q5_0",
        "blk.0.attn_q.weight": "Q5_0",
        "blk.0.attn_norm.weight": "F32",
        "blk.0.ffn_down.weight": "F16",  # 200: Q5_K -> Q5_1 does not fit either
        "blk.0.ffn_up.weight": "Q8_0",
        "output_norm.weight": "F32",
        "output.weight": "Q4_0",
    }
    wide = {"a.weight": (8, 512), "b.weight": (4, 256)}
    got, _ = run(wide, "--dtype", "q6_k")
    assert got == {"a.weight": "Q6_K", "b.weight": "Q6_K"}
    # the first matching rule wins
    got, _ = run(llm, "--tensor-type", "blk=q5_1", "--tensor-type", "attn_q=q8_0")
    assert got["blk.0.attn_q.weight"] == "Q5_1" and got["token_embd.weight"] == "F32"
    # NaN: refused naming the tensor and the element
    st = {"w": np.ones((2, 32), np.float32)}
    st["w"][1, 5] = np.nan
    write_safetensors(tmp_path / "n.safetensors", st)
    r = ck("convert", tmp_path / "n.safetensors", tmp_path / "n.gguf", "--dtype", "q8_0",
           expect=1)
    assert "tensor 'w': element 37 is NaN" in r.stderr
    assert not (tmp_path / "n.gguf").exists()
    r = ck("convert", tmp_path / "n.safetensors", tmp_path / "n.safetensors2", "--to",
           "safetensors", "--dtype", "q8_0", expect=1)
    assert "GGUF only" in r.stderr


def test_long_names(tmp_path):
    name = "x" * 64
    write_safetensors(tmp_path / "l.safetensors", {name: np.ones(4, np.float32)})
    r = ck("convert", tmp_path / "l.safetensors", tmp_path / "l.gguf", expect=1)
    assert f"tensor '{name}': name of 64 bytes is longer than ggml's limit of 63" in r.stderr
    ck("convert", tmp_path / "l.safetensors", tmp_path / "l.gguf", "--allow-long-names")
    assert [t.name for t in GGUFReader(str(tmp_path / "l.gguf")).tensors] == [name]


# ---- real files ---------------------------------------------------------------------------

@pytest.mark.skipif(not REAL.exists(), reason="real fixtures not present")
def test_real_files(tmp_path):
    p = REAL / "ollama_llama-2-tiny-random.gguf"
    ts = ls_json(p)
    r = GGUFReader(str(p))
    for t in r.tensors:
        assert ts[t.name]["dtype"] == t.tensor_type.name
        assert ts[t.name]["shape"] == [int(v) for v in reversed(t.shape)]
    meta = info_json(p)
    assert meta["metadata"]["tokenizer.ggml.tokens"] == "[STRING x 32000]"
    assert meta["values"]["gguf"]["arrays"]["tokenizer.ggml.tokens"]["values"][:3] == \
        ["<unk>", "<s>", "</s>"]
    # GGUF -> GGUF with nothing changed: the same bytes
    ck("convert", p, tmp_path / "same.gguf")
    assert (tmp_path / "same.gguf").read_bytes() == p.read_bytes()
    ck("convert", p, tmp_path / "o.safetensors")
    got, _ = read_safetensors(tmp_path / "o.safetensors")
    for t in r.tensors:
        a = np.asarray(t.data)
        assert np.array_equal(got[t.name][1].reshape(a.shape).view(np.uint8), a.view(np.uint8))
    le = ls_json(REAL / "zackshen_test-le-v3.gguf")
    assert info_json(REAL / "zackshen_test-le-v3.gguf")["values"]["gguf"]["alignment"] == 64
    assert len(le) == 3
    # the big-endian twin holds general.architecture twice: ggml and gguf-py refuse it too
    r = ck("ls", REAL / "zackshen_test-be-v3.gguf", expect=1)
    assert "key 'general.architecture' at byte 69 appears twice" in r.stderr
    # the vocab file went through a text re-encoding (bytes >= 0x80 became U+FFFD)
    r = ck("ls", REAL / "ggml-vocab-llama-spm.gguf", expect=1)
    assert "is more than the" in r.stderr
    record(TOOL, VERSION, "reads", "real llama.cpp GGUF (Ollama's tiny Llama 2): tensors, "
           "tokenizer arrays; GGUF -> GGUF byte-identical")
