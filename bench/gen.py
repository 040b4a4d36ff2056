#!/usr/bin/python3
"""Benchmark inputs: checkpoints shaped like a Stable Diffusion 1.x model.

    gen.py sd     --size BYTES --out model.pt        torch zip (torch.save)
    gen.py sd     --size BYTES --out model.pt --legacy    pre-1.6 torch format
    gen.py sd     --size BYTES --out model.safetensors     written by hand
    gen.py tiny   --count 100000 --out tiny.pt       many tiny tensors
    gen.py shapes --size BYTES                       print the plan, write nothing

The SD-like mix has the layer structure of an SD 1.x checkpoint -- UNet with
resnet and transformer blocks, a CLIP text encoder, a VAE, and the diffusion
schedule buffers -- about 1,100 float32 tensors from a 4-byte scalar to tens of
MB. Every width is scaled by one factor, found by bisection, so that the total
comes out near --size; the tensor count and names stay the same at any size,
which is what the memory-scaling check needs. Values are seeded normal noise
(x 0.02), so a float16 cast sees realistic magnitudes and no infinities.

Run with Debian's /usr/bin/python3 (torch 1.13, numpy).
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pytorch_way  # noqa: E402  (the pure-Python safetensors writer)


def _unet(p, c, ctx):
    """Names and shapes of an SD-style UNet of base width C; P appends."""
    emb = 4 * c
    p("model.diffusion_model.time_embed.0.weight", [emb, c])
    p("model.diffusion_model.time_embed.0.bias", [emb])
    p("model.diffusion_model.time_embed.2.weight", [emb, emb])
    p("model.diffusion_model.time_embed.2.bias", [emb])

    def res(pre, cin, cout):
        p(pre + ".in_layers.0.weight", [cin])
        p(pre + ".in_layers.0.bias", [cin])
        p(pre + ".in_layers.2.weight", [cout, cin, 3, 3])
        p(pre + ".in_layers.2.bias", [cout])
        p(pre + ".emb_layers.1.weight", [cout, emb])
        p(pre + ".emb_layers.1.bias", [cout])
        p(pre + ".out_layers.0.weight", [cout])
        p(pre + ".out_layers.0.bias", [cout])
        p(pre + ".out_layers.3.weight", [cout, cout, 3, 3])
        p(pre + ".out_layers.3.bias", [cout])
        if cin != cout:
            p(pre + ".skip_connection.weight", [cout, cin, 1, 1])
            p(pre + ".skip_connection.bias", [cout])

    def attn(pre, ch):
        p(pre + ".norm.weight", [ch])
        p(pre + ".norm.bias", [ch])
        p(pre + ".proj_in.weight", [ch, ch, 1, 1])
        p(pre + ".proj_in.bias", [ch])
        b = pre + ".transformer_blocks.0"
        for a, kdim in (("attn1", ch), ("attn2", ctx)):
            p(b + "." + a + ".to_q.weight", [ch, ch])
            p(b + "." + a + ".to_k.weight", [ch, kdim])
            p(b + "." + a + ".to_v.weight", [ch, kdim])
            p(b + "." + a + ".to_out.0.weight", [ch, ch])
            p(b + "." + a + ".to_out.0.bias", [ch])
        p(b + ".ff.net.0.proj.weight", [8 * ch, ch])
        p(b + ".ff.net.0.proj.bias", [8 * ch])
        p(b + ".ff.net.2.weight", [ch, 4 * ch])
        p(b + ".ff.net.2.bias", [ch])
        for n in ("norm1", "norm2", "norm3"):
            p(b + "." + n + ".weight", [ch])
            p(b + "." + n + ".bias", [ch])
        p(pre + ".proj_out.weight", [ch, ch, 1, 1])
        p(pre + ".proj_out.bias", [ch])

    mults = (1, 2, 4, 4)
    d = "model.diffusion_model."
    p(d + "input_blocks.0.0.weight", [c, 4, 3, 3])
    p(d + "input_blocks.0.0.bias", [c])
    skips = [c]
    ch = c
    blk = 1
    for level, m in enumerate(mults):
        for _ in range(2):
            res(d + "input_blocks.%d.0" % blk, ch, m * c)
            ch = m * c
            if level < 3:
                attn(d + "input_blocks.%d.1" % blk, ch)
            skips.append(ch)
            blk += 1
        if level < 3:
            p(d + "input_blocks.%d.0.op.weight" % blk, [ch, ch, 3, 3])
            p(d + "input_blocks.%d.0.op.bias" % blk, [ch])
            skips.append(ch)
            blk += 1
    res(d + "middle_block.0", ch, ch)
    attn(d + "middle_block.1", ch)
    res(d + "middle_block.2", ch, ch)
    blk = 0
    for level, m in reversed(list(enumerate(mults))):
        for i in range(3):
            res(d + "output_blocks.%d.0" % blk, ch + skips.pop(), m * c)
            ch = m * c
            k = 1
            if level < 3:
                attn(d + "output_blocks.%d.1" % blk, ch)
                k = 2
            if level > 0 and i == 2:
                p(d + "output_blocks.%d.%d.conv.weight" % (blk, k), [ch, ch, 3, 3])
                p(d + "output_blocks.%d.%d.conv.bias" % (blk, k), [ch])
            blk += 1
    p(d + "out.0.weight", [c])
    p(d + "out.0.bias", [c])
    p(d + "out.2.weight", [4, c, 3, 3])
    p(d + "out.2.bias", [4])


def _clip(p, w):
    t = "cond_stage_model.transformer.text_model."
    p(t + "embeddings.position_ids", [1, 77])
    p(t + "embeddings.token_embedding.weight", [49408, w])
    p(t + "embeddings.position_embedding.weight", [77, w])
    for i in range(12):
        layer = t + "encoder.layers.%d." % i
        for proj in ("k_proj", "v_proj", "q_proj", "out_proj"):
            p(layer + "self_attn.%s.weight" % proj, [w, w])
            p(layer + "self_attn.%s.bias" % proj, [w])
        p(layer + "layer_norm1.weight", [w])
        p(layer + "layer_norm1.bias", [w])
        p(layer + "mlp.fc1.weight", [4 * w, w])
        p(layer + "mlp.fc1.bias", [4 * w])
        p(layer + "mlp.fc2.weight", [w, 4 * w])
        p(layer + "mlp.fc2.bias", [w])
        p(layer + "layer_norm2.weight", [w])
        p(layer + "layer_norm2.bias", [w])
    p(t + "final_layer_norm.weight", [w])
    p(t + "final_layer_norm.bias", [w])


def _vae(p, v):
    chans = (v, 2 * v, 4 * v, 4 * v)

    def res(pre, cin, cout):
        p(pre + ".norm1.weight", [cin])
        p(pre + ".norm1.bias", [cin])
        p(pre + ".conv1.weight", [cout, cin, 3, 3])
        p(pre + ".conv1.bias", [cout])
        p(pre + ".norm2.weight", [cout])
        p(pre + ".norm2.bias", [cout])
        p(pre + ".conv2.weight", [cout, cout, 3, 3])
        p(pre + ".conv2.bias", [cout])
        if cin != cout:
            p(pre + ".nin_shortcut.weight", [cout, cin, 1, 1])
            p(pre + ".nin_shortcut.bias", [cout])

    def attn(pre, ch):
        p(pre + ".norm.weight", [ch])
        p(pre + ".norm.bias", [ch])
        for n in ("q", "k", "v", "proj_out"):
            p(pre + ".%s.weight" % n, [ch, ch, 1, 1])
            p(pre + ".%s.bias" % n, [ch])

    e = "first_stage_model.encoder."
    p(e + "conv_in.weight", [v, 3, 3, 3])
    p(e + "conv_in.bias", [v])
    ch = v
    for i, co in enumerate(chans):
        for j in range(2):
            res(e + "down.%d.block.%d" % (i, j), ch, co)
            ch = co
        if i < 3:
            p(e + "down.%d.downsample.conv.weight" % i, [ch, ch, 3, 3])
            p(e + "down.%d.downsample.conv.bias" % i, [ch])
    res(e + "mid.block_1", ch, ch)
    attn(e + "mid.attn_1", ch)
    res(e + "mid.block_2", ch, ch)
    p(e + "norm_out.weight", [ch])
    p(e + "norm_out.bias", [ch])
    p(e + "conv_out.weight", [8, ch, 3, 3])
    p(e + "conv_out.bias", [8])

    dd = "first_stage_model.decoder."
    ch = chans[-1]
    p(dd + "conv_in.weight", [ch, 4, 3, 3])
    p(dd + "conv_in.bias", [ch])
    res(dd + "mid.block_1", ch, ch)
    attn(dd + "mid.attn_1", ch)
    res(dd + "mid.block_2", ch, ch)
    for i in reversed(range(4)):
        for j in range(3):
            res(dd + "up.%d.block.%d" % (i, j), ch, chans[i])
            ch = chans[i]
        if i > 0:
            p(dd + "up.%d.upsample.conv.weight" % i, [ch, ch, 3, 3])
            p(dd + "up.%d.upsample.conv.bias" % i, [ch])
    p(dd + "norm_out.weight", [ch])
    p(dd + "norm_out.bias", [ch])
    p(dd + "conv_out.weight", [3, ch, 3, 3])
    p(dd + "conv_out.bias", [3])
    p("first_stage_model.quant_conv.weight", [8, 8, 1, 1])
    p("first_stage_model.quant_conv.bias", [8])
    p("first_stage_model.post_quant_conv.weight", [4, 4, 1, 1])
    p("first_stage_model.post_quant_conv.bias", [4])


def sd_plan(scale):
    """[(name, shape)] of the SD-like model with every width times SCALE."""
    out = []

    def p(name, shape):
        out.append((name, shape))

    def w(base):
        return max(8, int(round(base * scale / 8.0)) * 8)

    for n in ("betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
              "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod",
              "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
              "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1",
              "posterior_mean_coef2", "logvar"):
        p(n, [1000])
    p("model_ema.decay", [])
    p("model_ema.num_updates", [])
    _unet(p, w(320), w(768))
    _clip(p, w(768))
    _vae(p, w(128))
    return out


def plan_bytes(plan):
    total = 0
    for _, shape in plan:
        n = 1
        for d in shape:
            n *= d
        total += 4 * n
    return total


def sd_plan_for_size(size):
    """The plan whose total is closest to SIZE bytes."""
    lo, hi = 0.01, 8.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if plan_bytes(sd_plan(mid)) < size:
            lo = mid
        else:
            hi = mid
    a, b = sd_plan(lo), sd_plan(hi)
    return a if abs(plan_bytes(a) - size) <= abs(plan_bytes(b) - size) else b


def make_tensors(plan, seed=1234):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in plan:
        t = torch.randn(shape, generator=g, dtype=torch.float32)
        t.mul_(0.02)
        out[name] = t
    return out


def parse_size(s):
    s = s.strip()
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    low = s.lower().rstrip("b").rstrip("i")
    if low and low[-1] in units:
        return int(float(low[:-1]) * units[low[-1]])
    return int(low)


def write_safetensors_streaming(tensors, path):
    """Header first, then each tensor's bytes: the same layout as
    pytorch_way.write_safetensors without holding a second copy."""
    header, order = pytorch_way.safetensors_header(tensors, {"format": "pt"})
    with open(path, "wb") as f:
        f.write(header)
        for name in order:
            f.write(tensors[name].numpy().tobytes())


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=("sd", "tiny", "shapes"))
    ap.add_argument("--size", default="1GiB")
    ap.add_argument("--out")
    ap.add_argument("--legacy", action="store_true",
                    help="torch.save(..., _use_new_zipfile_serialization=False)")
    ap.add_argument("--count", type=int, default=100000)
    ap.add_argument("--seed", type=int, default=1234)
    a = ap.parse_args()

    if a.kind == "shapes":
        plan = sd_plan_for_size(parse_size(a.size))
        sizes = sorted(4 * int(np.prod(s)) if s else 4 for _, s in plan)
        print(json.dumps({"tensors": len(plan), "bytes": plan_bytes(plan),
                          "smallest": sizes[0], "median": sizes[len(sizes) // 2],
                          "largest": sizes[-1]}))
        return 0
    if not a.out:
        ap.error("--out is required")
    if a.kind == "tiny":
        g = torch.Generator().manual_seed(a.seed)
        shapes = ([4], [2, 3], [], [8], [1, 1, 2], [5])
        tensors = {}
        for i in range(a.count):
            tensors["blocks.%d.layer.%d.param_%d" % (i // 1000, (i // 10) % 100, i % 10)] = \
                torch.randn(shapes[i % len(shapes)], generator=g)
        torch.save(tensors, a.out)
    else:
        plan = sd_plan_for_size(parse_size(a.size))
        tensors = make_tensors(plan, a.seed)
        if a.out.endswith(".safetensors"):
            write_safetensors_streaming(tensors, a.out)
        elif a.legacy:
            torch.save(tensors, a.out, _use_new_zipfile_serialization=False)
        else:
            torch.save(tensors, a.out)
    print(json.dumps({"path": a.out, "tensors": len(tensors),
                      "bytes": sum(t.numel() * t.element_size() for t in tensors.values()),
                      "file_bytes": os.path.getsize(a.out)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
