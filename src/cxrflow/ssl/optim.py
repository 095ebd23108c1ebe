"""AdamW parameter groups of the student, as DINOv2 builds them.

Per parameter: a learning-rate multiplier from layer-wise decay (`layer_decay ** (depth + 1 -
layer_id)`, and `patch_embed_lr_mult` more for the patch embedding), a weight-decay multiplier
(0 for biases, norms and LayerScale gammas; tokens and position embeddings are decayed, as
upstream does), and a flag for the DINO/iBOT head's last layer, whose learning rate follows
its own schedule (0 during the first epoch). Groups with equal settings are merged.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch
from torch import nn

from cxrflow.models.vit import DinoViT


def _no_weight_decay(name: str) -> bool:
    return name.endswith(".bias") or "norm" in name or "gamma" in name


def param_groups(
    student: nn.ModuleDict, layer_decay: float, patch_embed_lr_mult: float
) -> list[dict[str, Any]]:
    """Merged parameter groups with `lr_multiplier`, `wd_multiplier`, `is_last_layer`."""
    backbone = student["backbone"]
    assert isinstance(backbone, DinoViT)
    top = backbone.n_blocks + 1
    merged: dict[tuple[float, float, bool], list[nn.Parameter]] = defaultdict(list)
    for module_name, module in student.items():
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            lr_mult = 1.0
            if module_name == "backbone":
                lr_mult = layer_decay ** (top - backbone.layer_id_for(name))
                if name.startswith("patch_embed"):
                    lr_mult *= patch_embed_lr_mult
            wd_mult = 0.0 if _no_weight_decay(name) else 1.0
            merged[(lr_mult, wd_mult, "last_layer" in name)].append(param)
    return [
        {"params": params, "lr_multiplier": lr, "wd_multiplier": wd, "is_last_layer": last}
        for (lr, wd, last), params in sorted(merged.items(), key=lambda kv: kv[0])
    ]


def build_optimizer(groups: list[dict[str, Any]], device: torch.device) -> torch.optim.Optimizer:
    """AdamW (betas 0.9/0.999 as DINOv2), fused on CUDA, foreach elsewhere."""
    kwargs: dict[str, Any] = {"betas": (0.9, 0.999)}
    if device.type == "cuda":
        kwargs["fused"] = True
    else:
        kwargs["foreach"] = True
    return torch.optim.AdamW(groups, lr=0.0, weight_decay=0.0, **kwargs)


def apply_schedules(
    optimizer: torch.optim.Optimizer, lr: float, weight_decay: float, last_layer_lr: float
) -> None:
    """Set this iteration's learning rate and weight decay on every group."""
    for group in optimizer.param_groups:
        base = last_layer_lr if group["is_last_layer"] else lr
        group["lr"] = base * group["lr_multiplier"]
        group["weight_decay"] = weight_decay * group["wd_multiplier"]
