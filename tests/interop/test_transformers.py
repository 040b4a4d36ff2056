"""Hugging Face transformers: sharded .bin folders to sharded safetensors and back.

A tiny BertModel and a tiny GPT2LMHeadModel (input and output embeddings
tied) are built from configs with fixed seeds and saved as several
pytorch_model-0000i-of-0000N.bin shards plus pytorch_model.bin.index.json.
ckptkit converts each folder to sharded safetensors, and those back to
sharded .bin; from_pretrained of every output must load with no missing,
unexpected or mismatched keys and give the original model's outputs,
bit-identical, on a fixed input. The safetensors shards that transformers'
own save_pretrained writes (tied weights stored once) go through ckptkit to
.bin and load the same way.

save_pretrained(safe_serialization=False, max_shard_size=...) wrote the .bin
shards up to transformers 4.x; from 5.0 save_pretrained writes safetensors
only, so when it leaves no .bin shard the shards are written by
huggingface_hub.save_torch_state_dict(safe_serialization=False), the same
naming and index the 4.x writer used, and what from_pretrained still reads.

Offline: nothing is fetched from any hub.
"""
import json
import os
import shutil
import subprocess

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
hf_hub = pytest.importorskip("huggingface_hub")

from compat import record  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CKPTKIT = os.environ.get("CKPTKIT", os.path.join(ROOT, "build", "ckptkit"))
SHARD = "20KB"  # the models are ~130 KiB: several shards each


def ck(*args, expect=0):
    r = subprocess.run([CKPTKIT] + [str(a) for a in args], capture_output=True, text=True)
    assert r.returncode == expect, (args, r.returncode, r.stdout, r.stderr)
    return r


def tiny_bert():
    cfg = transformers.BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=4, intermediate_size=37,
                                  max_position_embeddings=64, type_vocab_size=2)
    return transformers.BertModel(cfg)


def tiny_gpt2():
    cfg = transformers.GPT2Config(vocab_size=99, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                  bos_token_id=0, eos_token_id=0, tie_word_embeddings=True)
    return transformers.GPT2LMHeadModel(cfg)


MODELS = {"bert": tiny_bert, "gpt2": tiny_gpt2}


def outputs(model):
    ids = torch.tensor([[3, 14, 15, 92, 65, 35, 89, 79, 32, 38, 46, 26, 43]])
    model.eval()
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids))
    if isinstance(model, transformers.GPT2LMHeadModel):
        return [out.logits]
    return [out.last_hidden_state, out.pooler_output]


def save_bin_shards(model, folder):
    model.save_pretrained(str(folder), safe_serialization=False, max_shard_size=SHARD)
    if not list(folder.glob("pytorch_model*.bin")):
        for f in folder.glob("model*.safetensors*"):
            f.unlink()
        hf_hub.save_torch_state_dict(model.state_dict(), str(folder),
                                     safe_serialization=False, max_shard_size=SHARD)
    index = json.loads((folder / "pytorch_model.bin.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) >= 3 and all(s.endswith(".bin") for s in shards), shards
    assert sorted(index["weight_map"]) == sorted(model.state_dict())
    return index


def weight_files(folder):
    return sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".safetensors")
                  or p.name.endswith(".index.json"))


def with_config(src, dst):
    for name in ("config.json", "generation_config.json"):
        if (src / name).exists():
            shutil.copy(src / name, dst / name)


def load_and_compare(cls, folder, want, ref_sd, tied):
    model, info = cls.from_pretrained(str(folder), output_loading_info=True)
    assert not info["missing_keys"], (folder, info)
    assert not info["unexpected_keys"], (folder, info)
    assert not info["mismatched_keys"], (folder, info)
    assert not info["error_msgs"], (folder, info)
    if tied:
        assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()
    for k, v in model.state_dict().items():
        assert v.dtype == ref_sd[k].dtype and torch.equal(v, ref_sd[k]), (folder, k)
    # Weights read from safetensors stay where they lie in the mapped file (the
    # same offsets transformers' own shards give), and torch's CPU kernels can
    # round differently on unaligned data (1 ulp seen in BERT's pooler, with
    # transformers' own files too). The values are checked bit-exact above;
    # outputs are compared on freshly allocated copies of them.
    with torch.no_grad():
        for p in model.parameters():
            p.data = p.data.clone()
    got = outputs(model)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        assert torch.equal(g, w), (folder, (g - w).abs().max())
    return model


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_bin_shards_to_safetensors_shards_and_back(kind, tmp_path):
    torch.set_num_threads(1)
    torch.manual_seed(20240)
    model = MODELS[kind]()
    want = outputs(model)
    tied = kind == "gpt2"
    if tied:
        assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()

    src = tmp_path / "bin"
    save_bin_shards(model, src)

    st = tmp_path / "safetensors"
    st.mkdir()
    ck("convert", src, st / "model.safetensors", "--shard-size", SHARD, "-q")
    index = json.loads((st / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) >= 3 and all(s.endswith(".safetensors") for s in shards), shards
    assert weight_files(st) == sorted(shards + ["model.safetensors.index.json"])
    assert sorted(index["weight_map"]) == sorted(model.state_dict())
    with_config(src, st)
    load_and_compare(type(model), st, want, model.state_dict(), tied)

    back = tmp_path / "back"
    back.mkdir()
    ck("convert", st / "model.safetensors.index.json", back / "pytorch_model.bin",
       "--shard-size", SHARD, "-q")
    index = json.loads((back / "pytorch_model.bin.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) >= 3 and all(s.endswith(".bin") for s in shards), shards
    assert weight_files(back) == sorted(shards + ["pytorch_model.bin.index.json"])
    with_config(src, back)
    load_and_compare(type(model), back, want, model.state_dict(), tied)

    record("transformers", transformers.__version__, "reads",
           "sharded pytorch_model.bin folder (%s) converted to sharded safetensors"
           % type(model).__name__)
    record("transformers", transformers.__version__, "writes",
           "from_pretrained of ckptkit's sharded safetensors and sharded .bin (%s): "
           "no missing/unexpected keys, identical outputs" % type(model).__name__)


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_save_pretrained_safetensors_to_bin(kind, tmp_path):
    torch.set_num_threads(1)
    torch.manual_seed(4242)
    model = MODELS[kind]()
    want = outputs(model)
    src = tmp_path / "hf"
    model.save_pretrained(str(src), max_shard_size=SHARD)
    index = json.loads((src / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) >= 3

    out = tmp_path / "bin"
    out.mkdir()
    ck("convert", src, out / "pytorch_model.bin", "--shard-size", SHARD, "-q")
    out_index = json.loads((out / "pytorch_model.bin.index.json").read_text())
    assert sorted(out_index["weight_map"]) == sorted(index["weight_map"])
    with_config(src, out)
    load_and_compare(type(model), out, want, model.state_dict(), kind == "gpt2")

    record("transformers", transformers.__version__, "reads",
           "save_pretrained sharded safetensors (%s) converted to sharded .bin"
           % type(model).__name__)
