"""timm DINOv2 checkpoints (`vit_*_patch14_dinov2`, `_reg4_dinov2`): architecture from shapes.

Our `DinoViT` state dict is this layout plus `mask_token`, so it is the common ground of the
importers: the torch.hub importer converts to it first.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from cxrflow.models.checkpoint_files import CheckpointFormatError, hf_weight_files, read_state_dict
from cxrflow.models.config import ViTConfig
from cxrflow.models.vit import swiglu_hidden_features

log = logging.getLogger(__name__)

# Every released DINOv2 (S/6, B/12, L/16, g/24 heads) uses 64-dim heads; head counts are not
# in any tensor shape, so this is the rule when nothing else says.
DINOV2_HEAD_DIM = 64
# Placeholder LayerScale init: only initialisation uses it, loaded weights carry the gammas.
DINOV2_LAYERSCALE_INIT = 1e-5
_BLOCK = re.compile(r"blocks\.(\d+)\.")


def heads_for(embed_dim: int, num_heads: int | None, where: str) -> tuple[int, str]:
    """Head count and where it came from: given, else DINOv2's 64-dim-head rule."""
    if num_heads is not None:
        return num_heads, "given"
    if embed_dim % DINOV2_HEAD_DIM:
        raise CheckpointFormatError(
            f"{where}: embed_dim {embed_dim} is not a multiple of {DINOV2_HEAD_DIM}, so the "
            "DINOv2 head rule (64-dim heads) cannot give num_heads; pass num_heads explicitly"
        )
    return embed_dim // DINOV2_HEAD_DIM, f"embed_dim // {DINOV2_HEAD_DIM} (DINOv2 rule)"


def _swiglu_ratio(embed_dim: int, hidden: int) -> float | None:
    """An mlp_ratio whose DINOv2 SwiGLU width is `hidden` (integers first, then halves)."""
    for ratio in [*range(1, 17), *(k / 2 for k in range(1, 33))]:
        if swiglu_hidden_features(embed_dim, float(ratio)) == hidden:
            return float(ratio)
    return None


def config_from_state_dict(
    sd: Mapping[str, torch.Tensor], *, num_heads: int | None, where: str
) -> tuple[ViTConfig, list[str]]:
    """`ViTConfig` of a state dict in our (timm) layout, from shapes alone; and notes on it."""
    need = ("patch_embed.proj.weight", "cls_token", "pos_embed", "blocks.0.attn.qkv.weight")
    absent = [k for k in need if k not in sd]
    if absent:
        raise CheckpointFormatError(
            f"{where}: not a DINOv2 ViT state dict: no {', '.join(absent)} "
            f"(found e.g. {', '.join(sorted(sd)[:5])})"
        )
    embed_dim, in_chans, ph, pw = sd["patch_embed.proj.weight"].shape
    if ph != pw:
        raise CheckpointFormatError(f"{where}: non-square patches {ph}x{pw} are not supported")
    registers = int(sd["reg_token"].shape[1]) if "reg_token" in sd else 0
    rows = int(sd["pos_embed"].shape[1])
    # timm's register models (no_embed_class) have no CLS row; the others have one
    patches = rows if registers else rows - 1
    grid = math.isqrt(patches)
    if grid * grid != patches or grid == 0:
        raise CheckpointFormatError(
            f"{where}: pos_embed has {rows} rows; expected {'' if registers else '1 + '}a square "
            f"grid of patches{' (registers carry no position)' if registers else ''}"
        )
    depth = 1 + max(int(m.group(1)) for k in sd if (m := _BLOCK.match(k)))
    if "blocks.0.ls1.gamma" not in sd:
        raise CheckpointFormatError(f"{where}: blocks without LayerScale (ls1.gamma): not DINOv2")
    fc1 = int(sd["blocks.0.mlp.fc1.weight"].shape[0])
    fc2_in = int(sd["blocks.0.mlp.fc2.weight"].shape[1])
    if fc1 == fc2_in:
        ffn, mlp_ratio = "mlp", fc1 / embed_dim
    elif fc1 == 2 * fc2_in and (ratio := _swiglu_ratio(embed_dim, fc2_in)) is not None:
        ffn, mlp_ratio = "swiglu", ratio
    else:
        raise CheckpointFormatError(
            f"{where}: MLP widths fc1 {fc1} / fc2 {fc2_in} match neither an MLP nor DINOv2's SwiGLU"
        )
    heads, heads_from = heads_for(int(embed_dim), num_heads, where)
    cfg = ViTConfig(
        img_size=grid * int(ph),
        patch_size=int(ph),
        embed_dim=int(embed_dim),
        depth=depth,
        num_heads=heads,
        mlp_ratio=float(mlp_ratio),
        num_register_tokens=registers,
        layerscale_init=DINOV2_LAYERSCALE_INIT,
        drop_path_rate=0.0,
        qkv_bias="blocks.0.attn.qkv.bias" in sd,
        ffn=ffn,
        in_chans=int(in_chans),
    )
    return cfg, [f"num_heads {heads}: {heads_from}"]


def _timm_heads(architecture: str, model_args: Mapping[str, Any]) -> int | None:
    """Head count of a registered timm architecture (built on the meta device), if timm has it."""
    if "num_heads" in model_args:
        return int(model_args["num_heads"])
    import timm

    if not timm.is_model(architecture):
        return None
    try:
        with torch.device("meta"):
            model = timm.create_model(architecture, pretrained=False, **model_args)
    except Exception as err:  # model_args from another timm version: fall back to the rule
        log.warning("timm cannot build %s(%s): %s", architecture, model_args, err)
        return None
    attn = getattr(model.blocks[0], "attn", None) if hasattr(model, "blocks") else None
    heads = getattr(attn, "num_heads", None)
    return int(heads) if heads else None


def read_timm_directory(
    directory: Path, *, num_heads: int | None
) -> tuple[dict[str, torch.Tensor], int | None, list[str], list[Path]]:
    """State dict, head count, notes and weight files of a timm hub-style directory.

    The directory holds `config.json` ({"architecture": ..., "model_args": {...}}) and
    `model.safetensors` or `pytorch_model.bin`.
    """
    conf = json.loads((directory / "config.json").read_text())
    architecture = str(conf["architecture"])
    files = hf_weight_files(directory)
    if not files:
        raise CheckpointFormatError(
            f"{directory}: timm directory ({architecture}) without model.safetensors "
            "or pytorch_model.bin"
        )
    sd: dict[str, torch.Tensor] = {}
    for file in files:
        sd.update(read_state_dict(file))
    notes = [f"timm architecture {architecture}"]
    if num_heads is None:
        model_args = conf.get("model_args") or {}
        num_heads = _timm_heads(architecture, model_args)
        if num_heads is not None:
            notes.append(f"num_heads {num_heads} from timm's {architecture}")
    return sd, num_heads, notes, files
