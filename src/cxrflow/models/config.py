"""Architecture configuration of the DINOv2-family ViT backbone."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

FFN_KINDS = ("mlp", "swiglu")


@dataclass(frozen=True)
class ViTConfig:
    """Validated, immutable description of a DINOv2-style ViT (sizes in pixels and channels)."""

    img_size: int
    embed_dim: int
    depth: int
    num_heads: int
    patch_size: int = 14
    mlp_ratio: float = 4.0
    num_register_tokens: int = 0
    layerscale_init: float = 1e-5
    drop_path_rate: float = 0.0
    qkv_bias: bool = True
    ffn: Literal["mlp", "swiglu"] = "mlp"
    in_chans: int = 3

    def __post_init__(self) -> None:
        for name in ("img_size", "patch_size", "embed_dim", "depth", "num_heads", "in_chans"):
            value = getattr(self, name)
            # bool is an int subclass; True as a size is always a mistake
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"ViTConfig.{name} must be a positive int, got {value!r}")
        if self.img_size % self.patch_size:
            raise ValueError(
                f"ViTConfig.img_size ({self.img_size}) must be a multiple of "
                f"patch_size ({self.patch_size}); nearest valid sizes: "
                f"{self.img_size // self.patch_size * self.patch_size} or "
                f"{(self.img_size // self.patch_size + 1) * self.patch_size}"
            )
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"ViTConfig.embed_dim ({self.embed_dim}) must be divisible by "
                f"num_heads ({self.num_heads})"
            )
        if not (isinstance(self.mlp_ratio, int | float) and math.isfinite(self.mlp_ratio)):
            raise ValueError(f"ViTConfig.mlp_ratio must be a finite number, got {self.mlp_ratio!r}")
        if self.mlp_ratio <= 0:
            raise ValueError(f"ViTConfig.mlp_ratio must be > 0, got {self.mlp_ratio!r}")
        nrt = self.num_register_tokens
        if isinstance(nrt, bool) or not isinstance(nrt, int) or nrt < 0:
            raise ValueError(f"ViTConfig.num_register_tokens must be an int >= 0, got {nrt!r}")
        if not (isinstance(self.layerscale_init, int | float) and self.layerscale_init > 0):
            raise ValueError(
                f"ViTConfig.layerscale_init must be > 0 (DINOv2 always uses LayerScale), "
                f"got {self.layerscale_init!r}"
            )
        if not (0.0 <= self.drop_path_rate < 1.0):
            raise ValueError(
                f"ViTConfig.drop_path_rate must be in [0, 1), got {self.drop_path_rate!r}"
            )
        if not isinstance(self.qkv_bias, bool):
            raise ValueError(f"ViTConfig.qkv_bias must be a bool, got {self.qkv_bias!r}")
        if self.ffn not in FFN_KINDS:
            raise ValueError(f"ViTConfig.ffn must be one of {FFN_KINDS}, got {self.ffn!r}")

    @property
    def grid_size(self) -> int:
        """Patches per side at the native image size."""
        return self.img_size // self.patch_size

    @property
    def num_patches(self) -> int:
        """Patch tokens at the native image size."""
        return self.grid_size**2

    def replace(self, **changes: Any) -> ViTConfig:
        """Copy with fields changed (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, e.g. for logging as run parameters."""
        return asdict(self)

    @classmethod
    def named(cls, name: str, **overrides: Any) -> ViTConfig:
        """One of the named sizes (`vit_tiny`, `vit_small`, `vit_base`, `vit_large`)."""
        try:
            dims = NAMED_SIZES[name]
        except KeyError:
            raise ValueError(f"unknown ViT size {name!r}; known: {sorted(NAMED_SIZES)}") from None
        return cls(**{"img_size": 518, **dims, **overrides})


# (embed_dim, depth, num_heads); vit_tiny is a CPU test size, not a DINOv2 release.
NAMED_SIZES: dict[str, dict[str, int]] = {
    "vit_tiny": {"embed_dim": 192, "depth": 6, "num_heads": 3},
    "vit_small": {"embed_dim": 384, "depth": 12, "num_heads": 6},
    "vit_base": {"embed_dim": 768, "depth": 12, "num_heads": 12},  # RAD-DINO's ViT-B/14
    "vit_large": {"embed_dim": 1024, "depth": 24, "num_heads": 16},
}


def vit_tiny(**overrides: Any) -> ViTConfig:
    """Tiny ViT/14 (192 wide, 6 blocks, 3 heads) for CPU tests and smoke runs."""
    return ViTConfig.named("vit_tiny", **overrides)


def vit_small(**overrides: Any) -> ViTConfig:
    """ViT-S/14 (384 wide, 12 blocks, 6 heads)."""
    return ViTConfig.named("vit_small", **overrides)


def vit_base(**overrides: Any) -> ViTConfig:
    """ViT-B/14 (768 wide, 12 blocks, 12 heads), the RAD-DINO backbone."""
    return ViTConfig.named("vit_base", **overrides)


def vit_large(**overrides: Any) -> ViTConfig:
    """ViT-L/14 (1024 wide, 24 blocks, 16 heads)."""
    return ViTConfig.named("vit_large", **overrides)
