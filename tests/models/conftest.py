"""Tiny DINOv2 models for the backbone tests (CPU, a few ms each)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from transformers import (
    Dinov2Config,
    Dinov2Model,
    Dinov2WithRegistersConfig,
    Dinov2WithRegistersModel,
    PreTrainedModel,
)

from cxrflow.models import ViTConfig

# Shared CPUs: keep intra-op threads low.
torch.set_num_threads(2)

NATIVE = 56  # 4x4 patches of 14 px
HF_DIMS = {
    "hidden_size": 48,
    "num_hidden_layers": 2,
    "num_attention_heads": 3,
    "image_size": NATIVE,
    "patch_size": 14,
    "layerscale_value": 0.5,  # large enough that the blocks matter in the comparisons
}


def tiny_cfg(**overrides: object) -> ViTConfig:
    """A 2-block, 48-wide ViT/14 at 56 px."""
    dims = {"img_size": NATIVE, "embed_dim": 48, "depth": 2, "num_heads": 3, **overrides}
    return ViTConfig(**dims)


def random_hf_model(registers: int = 0, swiglu: bool = False, seed: int = 0) -> PreTrainedModel:
    """Random HF DINOv2 with non-trivial tokens (HF inits the mask/register tokens to zero)."""
    torch.manual_seed(seed)
    dims = {**HF_DIMS, "use_swiglu_ffn": swiglu}
    if registers:
        model = Dinov2WithRegistersModel(
            Dinov2WithRegistersConfig(num_register_tokens=registers, **dims)
        )
    else:
        model = Dinov2Model(Dinov2Config(**dims))
    with torch.no_grad():
        model.embeddings.cls_token.normal_()
        model.embeddings.mask_token.normal_()
        if registers:
            model.embeddings.register_tokens.normal_()
    return model.eval()


@pytest.fixture
def hf_dir(tmp_path: Path) -> Callable[..., tuple[PreTrainedModel, Path]]:
    """Factory: save a random HF model under tmp_path; returns (model, directory)."""

    def make(registers: int = 0, swiglu: bool = False) -> tuple[PreTrainedModel, Path]:
        model = random_hf_model(registers, swiglu)
        out = tmp_path / f"hf_r{registers}_{'swiglu' if swiglu else 'mlp'}"
        model.save_pretrained(out)
        return model, out

    return make
