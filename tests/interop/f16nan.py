"""NaN -> F16, the one cast rule on which the two PyTorch lanes disagree.

torch 2.x converts a NaN to F16 the IEEE (F16C) way: sign kept, quiet bit set,
the top 10 bits of the payload of the value's F32 form kept (F32 0x7FA00000 ->
0x7F00). torch 1.13 wrote 0x7E00 with the sign for every NaN. ckptkit follows
torch 2.x (docs/FORMATS.md). A test comparing ckptkit's F16 output with
torch's calls expected_f16(): with a torch that keeps payloads it returns
torch's bits unchanged; with one that does not, it puts ckptkit's documented
codes in the NaN lanes (computed here from the source bits, not from ckptkit),
so every other lane is still compared with torch bit for bit.
"""
import numpy as np
import torch


def torch_keeps_f16_nan_payload():
    """True when this torch keeps NaN payloads in F32 -> F16 (torch 2.x)."""
    x = torch.tensor([0x7FA00000], dtype=torch.int32).view(torch.float32)
    return int(x.to(torch.float16).view(torch.int16)[0]) & 0xFFFF == 0x7F00


def f32_form(src, bits):
    """F32 bits of NaN source elements as ckptkit's (and torch's) pivot has them."""
    if src == "F32":
        return bits.astype(np.uint32)
    if src == "F64":  # hardware F64 -> F32: sign, quiet bit, top 23 payload bits
        b = bits.astype(np.uint64)
        sign = ((b >> np.uint64(63)) << np.uint64(31)).astype(np.uint32)
        pay = ((b >> np.uint64(29)) & np.uint64(0x7FFFFF)).astype(np.uint32)
        return sign | np.uint32(0x7FC00000) | pay
    if src == "BF16":
        return bits.astype(np.uint32) << np.uint32(16)
    raise ValueError(src)


def expected_f16(src, src_bits, torch_f16_bits):
    """torch's F16 result (uint16 array), with ckptkit's NaN codes where this
    torch writes the fixed 0x7E00 instead."""
    want = np.array(torch_f16_bits, dtype=np.uint16)
    if torch_keeps_f16_nan_payload():
        return want
    nan = (want & np.uint16(0x7FFF)) > np.uint16(0x7C00)
    if nan.any():
        u = f32_form(src, np.asarray(src_bits)[nan])
        want[nan] = (((u >> 16) & 0x8000) | 0x7E00 | ((u >> 13) & 0x3FF)).astype(np.uint16)
    return want
