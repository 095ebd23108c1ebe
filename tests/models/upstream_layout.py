"""Checkpoints in facebookresearch/dinov2's torch.hub layout, and its forward pass by hand.

The key list follows upstream's modules (dinov2/models/vision_transformer.py,
dinov2/layers/{block,attention,mlp,swiglu_ffn,layer_scale,patch_embed}.py):
`DinoVisionTransformer` holds `cls_token` (1, 1, D), `pos_embed` (1, 1 + grid^2, D),
`register_tokens` (1, R, D) when R > 0, `mask_token` (1, D), `patch_embed.proj` (Conv2d),
`blocks` and `norm`; a `Block` holds `norm1`, `attn.qkv`, `attn.proj`, `ls1.gamma`, `norm2`,
`mlp.fc1`/`mlp.fc2` (`Mlp`) or `mlp.w12`/`mlp.w3` (`SwiGLUFFNFused`, hidden
`(int(int(D * ratio) * 2 / 3) + 7) // 8 * 8`), `ls2.gamma`. With `block_chunks > 0` each
chunk is a `BlockChunk` padded with `nn.Identity()`s, so block i of chunk c is `blocks.c.i`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import torch
import torch.nn.functional as F

Shapes = dict[str, tuple[int, ...]]


def dinov2_hub_shapes(
    *,
    embed_dim: int,
    depth: int,
    grid: int = 37,
    patch: int = 14,
    registers: int = 0,
    ffn: str = "mlp",
    mlp_ratio: float = 4.0,
    in_chans: int = 3,
    block_chunks: int = 0,
) -> Shapes:
    """Key -> shape of upstream's `DinoVisionTransformer.state_dict()` (hub: grid 37 = 518 px)."""
    d = embed_dim
    shapes: Shapes = {"cls_token": (1, 1, d), "pos_embed": (1, 1 + grid * grid, d)}
    if registers:
        shapes["register_tokens"] = (1, registers, d)
    shapes["mask_token"] = (1, d)
    shapes["patch_embed.proj.weight"] = (d, in_chans, patch, patch)
    shapes["patch_embed.proj.bias"] = (d,)
    hidden = int(d * mlp_ratio)
    chunk = depth // block_chunks if block_chunks else depth
    for i in range(depth):
        b = f"blocks.{i // chunk}.{i}." if block_chunks else f"blocks.{i}."
        block: Shapes = {
            "norm1.weight": (d,),
            "norm1.bias": (d,),
            "attn.qkv.weight": (3 * d, d),
            "attn.qkv.bias": (3 * d,),
            "attn.proj.weight": (d, d),
            "attn.proj.bias": (d,),
            "ls1.gamma": (d,),
            "norm2.weight": (d,),
            "norm2.bias": (d,),
        }
        if ffn == "swiglu":
            swiglu = (int(hidden * 2 / 3) + 7) // 8 * 8
            block |= {
                "mlp.w12.weight": (2 * swiglu, d),
                "mlp.w12.bias": (2 * swiglu,),
                "mlp.w3.weight": (d, swiglu),
                "mlp.w3.bias": (d,),
            }
        else:
            block |= {
                "mlp.fc1.weight": (hidden, d),
                "mlp.fc1.bias": (hidden,),
                "mlp.fc2.weight": (d, hidden),
                "mlp.fc2.bias": (d,),
            }
        block["ls2.gamma"] = (d,)
        shapes |= {b + k: v for k, v in block.items()}
    shapes["norm.weight"] = (d,)
    shapes["norm.bias"] = (d,)
    return shapes


def random_weights(shapes: Shapes, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors of `shapes`, scaled so that every block visibly changes the output."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in shapes.items():
        t = torch.randn(shape, generator=gen)
        if key.endswith(("norm1.weight", "norm2.weight", "norm.weight")):
            t = 1 + 0.1 * t
        elif key.endswith(".gamma"):
            t = 0.5 + 0.1 * t
        elif key.endswith(".weight") and len(shape) >= 2:
            t = t * 0.02 * 5
        elif key.endswith(".bias"):
            t = 0.02 * t
        out[key] = t
    return out


def meta_weights(shapes: Shapes) -> dict[str, torch.Tensor]:
    """Empty (meta-device) tensors of `shapes`: real-size layouts at no memory cost."""
    return {k: torch.empty(v, device="meta") for k, v in shapes.items()}


_BLOCK = re.compile(r"blocks\.(?:\d+\.)?(\d+)\.norm1\.weight")


def upstream_forward(
    sd: Mapping[str, torch.Tensor],
    x: torch.Tensor,
    *,
    num_heads: int,
    masks: torch.Tensor | None = None,
) -> torch.Tensor:
    """Normalised [CLS, registers, patches] tokens, computed as upstream does at the native size.

    Written from upstream's eval-mode forward (no xformers): patch conv, mask tokens replace
    masked patches, CLS prepended, positions added, registers inserted after CLS, blocks
    `x + ls1(attn(norm1(x)))`, `x + ls2(mlp(norm2(x)))`, final LayerNorm (eps 1e-6).
    """
    w = sd["patch_embed.proj.weight"]
    d, p = w.shape[0], w.shape[-1]
    t = F.conv2d(x, w, sd["patch_embed.proj.bias"], stride=p).flatten(2).transpose(1, 2)
    b = t.shape[0]
    assert t.shape[1] + 1 == sd["pos_embed"].shape[1], "run at the native size"
    if masks is not None:
        t = torch.where(masks.unsqueeze(-1), sd["mask_token"].to(t.dtype).unsqueeze(0), t)
    t = torch.cat([sd["cls_token"].expand(b, -1, -1), t], dim=1) + sd["pos_embed"]
    if "register_tokens" in sd:
        regs = sd["register_tokens"].expand(b, -1, -1)
        t = torch.cat([t[:, :1], regs, t[:, 1:]], dim=1)
    prefixes = {}
    for key in sd:
        m = _BLOCK.fullmatch(key)
        if m:
            prefixes[int(m.group(1))] = key.removesuffix("norm1.weight")
    n = t.shape[1]
    scale = 1 / math.sqrt(d // num_heads)
    for i in sorted(prefixes):
        pre = prefixes[i]

        def g(name: str, pre: str = pre) -> torch.Tensor:
            return sd[pre + name]

        h = F.layer_norm(t, (d,), g("norm1.weight"), g("norm1.bias"), eps=1e-6)
        qkv = F.linear(h, g("attn.qkv.weight"), sd.get(pre + "attn.qkv.bias"))
        qkv = qkv.reshape(b, n, 3, num_heads, d // num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * scale, qkv[1], qkv[2]
        a = ((q @ k.transpose(-2, -1)).softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, d)
        t = t + g("ls1.gamma") * F.linear(a, g("attn.proj.weight"), g("attn.proj.bias"))
        h = F.layer_norm(t, (d,), g("norm2.weight"), g("norm2.bias"), eps=1e-6)
        if pre + "mlp.w12.weight" in sd:
            x1, x2 = F.linear(h, g("mlp.w12.weight"), g("mlp.w12.bias")).chunk(2, dim=-1)
            m = F.linear(F.silu(x1) * x2, g("mlp.w3.weight"), g("mlp.w3.bias"))
        else:
            hidden = F.gelu(F.linear(h, g("mlp.fc1.weight"), g("mlp.fc1.bias")))
            m = F.linear(hidden, g("mlp.fc2.weight"), g("mlp.fc2.bias"))
        t = t + g("ls2.gamma") * m
    return F.layer_norm(t, (d,), sd["norm.weight"], sd["norm.bias"], eps=1e-6)
