"""facebookresearch/dinov2 torch.hub checkpoints (`dinov2_vit{s,b,l,g}14[_reg4]_pretrain.pth`).

Upstream's `DinoVisionTransformer` (dinov2/models/vision_transformer.py) stores `cls_token`
(1, 1, D), `pos_embed` (1, 1 + grid^2, D) with a CLS row even with registers,
`register_tokens` (1, R, D), `mask_token` (1, D), `patch_embed.proj`, `norm`, and blocks
`blocks.{i}.{norm1, attn.qkv, attn.proj, ls1.gamma, norm2, mlp.fc1, mlp.fc2, ls2.gamma}`; ViT-g
uses SwiGLU (`mlp.w12` = [gate; up], `mlp.w3`). With `block_chunks > 0` the blocks sit in
chunks, `blocks.{chunk}.{i}.` with `i` the global index (each chunk is padded with identities).
Registers are inserted after the CLS token, after positions are added, so they carry none.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import torch

from cxrflow.models.checkpoint_files import CheckpointFormatError

_CHUNKED = re.compile(r"blocks\.(\d+)\.(\d+)\.(.+)")
_SWIGLU = (("mlp.w12.", "mlp.fc1."), ("mlp.w3.", "mlp.fc2."))


def looks_like_hub(keys: set[str]) -> bool:
    """Keys only upstream's layout has: register tokens, SwiGLU `w12`, or chunked blocks."""
    return (
        "register_tokens" in keys
        or any(".mlp.w12." in k for k in keys)
        or any(_CHUNKED.fullmatch(k) for k in keys)
    )


def hub_to_timm(sd: Mapping[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    """Our (timm-layout) state dict from upstream's; positions folded as timm's register models."""
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        m = _CHUNKED.fullmatch(key)
        if m:
            key = f"blocks.{m.group(2)}.{m.group(3)}"
        for old, new in _SWIGLU:
            key = key.replace(old, new)
        if key in out:
            raise CheckpointFormatError(f"{where}: two tensors for {key} (chunked and not?)")
        out[key] = value
    if "pos_embed" not in out or "cls_token" not in out:
        return out  # not a DINOv2 state dict: the architecture check names what is missing
    rows = int(out["pos_embed"].shape[1])
    grid = math.isqrt(rows - 1)
    if grid * grid != rows - 1:
        raise CheckpointFormatError(
            f"{where}: pos_embed has {rows} rows; upstream DINOv2 has 1 (CLS) + a square grid"
        )
    if "register_tokens" in out:
        pos = out.pop("pos_embed")
        out["reg_token"] = out.pop("register_tokens")
        # upstream adds position 0 to CLS only, then inserts the registers without positions
        out["cls_token"] = out["cls_token"] + pos[:, :1]
        out["pos_embed"] = pos[:, 1:]
    return out
