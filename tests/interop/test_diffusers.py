"""diffusers: the Stable Diffusion checkpoint patterns, with a tiny UNet.

A tiny UNet2DConditionModel is built from a config with a fixed seed. Its
state dict is saved by torch.save
  - as a plain .pth (what people pass around as "unet.pth"), and
  - as a Stable Diffusion style .ckpt: {"state_dict": {"model.diffusion_model."
    + k: v}}, also with the VAE/text-encoder parts beside it
    (first_stage_model.*, cond_stage_model.*) and training counters, as the
    original SD/SDXL checkpoints have them;
ckptkit converts each to safetensors (--key, --strip-prefix, --include as
needed), and unet.load_state_dict(safetensors.torch.load_file(out)) followed
by a forward pass gives the original output, bit-identical.

The other way: diffusers' own save_pretrained folders (one safetensors file,
and sharded) are read by ckptkit (ls agrees with the model's state dict), and
UNet2DConditionModel.from_pretrained loads a folder whose weights ckptkit
wrote (from the .ckpt) and gives the original output.
"""
import json
import os
import shutil
import subprocess

import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
st_torch = pytest.importorskip("safetensors.torch")

from compat import record  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CKPTKIT = os.environ.get("CKPTKIT", os.path.join(ROOT, "build", "ckptkit"))
PREFIX = "model.diffusion_model."

CONFIG = dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
              block_out_channels=(8, 16), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
              up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=12,
              attention_head_dim=2, norm_num_groups=4)


def ck(*args, expect=0):
    r = subprocess.run([CKPTKIT] + [str(a) for a in args], capture_output=True, text=True)
    assert r.returncode == expect, (args, r.returncode, r.stdout, r.stderr)
    return r


def new_unet(seed):
    torch.manual_seed(seed)
    return diffusers.UNet2DConditionModel(**CONFIG).eval()


def forward(unet):
    g = torch.Generator().manual_seed(99)
    sample = torch.randn(2, 4, 8, 8, generator=g)
    context = torch.randn(2, 3, 12, generator=g)
    with torch.no_grad():
        return unet(sample, torch.tensor([3, 700]), encoder_hidden_states=context).sample


@pytest.fixture(scope="module")
def reference():
    torch.set_num_threads(1)
    unet = new_unet(31337)
    return unet.state_dict(), forward(unet)


def check_safetensors(path, ref_sd, want):
    loaded = st_torch.load_file(str(path))
    assert sorted(loaded) == sorted(ref_sd)
    for k, v in ref_sd.items():
        assert loaded[k].dtype == v.dtype and torch.equal(loaded[k], v), k
    unet = new_unet(1)  # other random weights, all replaced below
    assert not torch.equal(forward(unet), want)
    unet.load_state_dict(loaded, strict=True)
    got = forward(unet)
    assert got.numpy().tobytes() == want.numpy().tobytes()


def test_pth_state_dict_to_safetensors(reference, tmp_path):
    ref_sd, want = reference
    src = tmp_path / "unet.pth"
    torch.save(ref_sd, src)
    out = tmp_path / "unet.safetensors"
    ck("convert", src, out, "-q")
    check_safetensors(out, ref_sd, want)
    record("diffusers", diffusers.__version__, "reads",
           "UNet2DConditionModel state dict saved as .pth, converted to safetensors")
    record("diffusers", diffusers.__version__, "writes",
           "load_state_dict(load_file(...)) of ckptkit's safetensors: identical UNet output")


def test_sd_style_ckpt_to_safetensors(reference, tmp_path):
    ref_sd, want = reference
    plain = tmp_path / "sd.ckpt"
    torch.save({"state_dict": {PREFIX + k: v for k, v in ref_sd.items()}}, plain)

    # The state dict's own key, then --strip-prefix for the UNet's names.
    out = tmp_path / "unet.safetensors"
    ck("convert", plain, out, "--key", "state_dict", "--strip-prefix", PREFIX, "-q")
    check_safetensors(out, ref_sd, want)
    # Found without --key too: "state_dict" is where Lightning-style files keep it.
    out2 = tmp_path / "unet2.safetensors"
    ck("convert", plain, out2, "--strip-prefix", PREFIX, "-q")
    check_safetensors(out2, ref_sd, want)

    # A whole SD checkpoint: the UNet beside the VAE and text encoder and counters.
    g = torch.Generator().manual_seed(5)
    full = {PREFIX + k: v for k, v in ref_sd.items()}
    full["first_stage_model.encoder.conv_in.weight"] = torch.randn(8, 3, 3, 3, generator=g)
    full["first_stage_model.decoder.conv_out.bias"] = torch.randn(3, generator=g)
    full["cond_stage_model.transformer.text_model.embeddings.position_ids"] = \
        torch.arange(77).unsqueeze(0)
    full["model_ema.decay"] = torch.tensor(0.9999)
    whole = tmp_path / "sd-full.ckpt"
    torch.save({"state_dict": full, "epoch": 6, "global_step": 470000}, whole)
    info = json.loads(ck("info", whole, "--json").stdout)
    assert info["tensors"] == len(full)
    assert info["metadata"]["global_step"] == "470000"
    out3 = tmp_path / "unet3.safetensors"
    ck("convert", whole, out3, "--include", PREFIX + "*", "--strip-prefix", PREFIX, "-q")
    check_safetensors(out3, ref_sd, want)

    # And a folder diffusers itself loads, weights written by ckptkit.
    folder = tmp_path / "unet-folder"
    folder.mkdir()
    diffusers.UNet2DConditionModel(**CONFIG).save_config(str(folder))
    ck("convert", whole, folder / "diffusion_pytorch_model.safetensors",
       "--include", PREFIX + "*", "--strip-prefix", PREFIX, "-q")
    unet = diffusers.UNet2DConditionModel.from_pretrained(str(folder)).eval()
    for k, v in unet.state_dict().items():
        assert torch.equal(v, ref_sd[k]), k
    with torch.no_grad():
        for p in unet.parameters():  # fresh, aligned copies of the mapped values
            p.data = p.data.clone()
    assert forward(unet).numpy().tobytes() == want.numpy().tobytes()

    record("diffusers", diffusers.__version__, "reads",
           "Stable Diffusion style .ckpt (model.diffusion_model.* beside VAE/text encoder) "
           "to a UNet safetensors with --key/--include/--strip-prefix")
    record("diffusers", diffusers.__version__, "writes",
           "UNet2DConditionModel.from_pretrained of a folder whose safetensors ckptkit wrote")


@pytest.mark.parametrize("shard", [None, "40KB"])
def test_save_pretrained_folder_read(reference, tmp_path, shard):
    ref_sd, want = reference
    unet = new_unet(31337)
    folder = tmp_path / "hf"
    kw = {"max_shard_size": shard} if shard else {}
    unet.save_pretrained(str(folder), safe_serialization=True, **kw)
    if shard:
        index = folder / "diffusion_pytorch_model.safetensors.index.json"
        assert len(set(json.loads(index.read_text())["weight_map"].values())) >= 2
        src = folder  # a sharded checkpoint is read from its folder
    else:
        src = folder / "diffusion_pytorch_model.safetensors"
        assert src.exists()
    listed = json.loads(ck("ls", src, "--json").stdout)["tensors"]
    assert sorted(t["name"] for t in listed) == sorted(ref_sd)
    for t in listed:
        assert t["shape"] == list(ref_sd[t["name"]].shape), t
        assert t["dtype"] == "F32"
    info = json.loads(ck("info", src, "--json").stdout)
    assert info["tensors"] == len(ref_sd)
    assert info["parameters"] == sum(v.numel() for v in ref_sd.values())

    out = tmp_path / "unet.pth"
    ck("convert", src, out, "-q")
    loaded = torch.load(out, weights_only=True)
    back = new_unet(2)
    back.load_state_dict(loaded, strict=True)
    assert forward(back).numpy().tobytes() == want.numpy().tobytes()
    # And ckptkit's own safetensors of the same folder load back as well.
    out_st = tmp_path / "unet.safetensors"
    ck("convert", src, out_st, "-q")
    check_safetensors(out_st, ref_sd, want)
    shutil.rmtree(folder)

    record("diffusers", diffusers.__version__, "reads",
           "save_pretrained safetensors folder%s: ls/info, convert to .pth and safetensors"
           % (" (sharded)" if shard else ""))
