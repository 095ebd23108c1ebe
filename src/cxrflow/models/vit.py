"""DINOv2-style ViT backbone on timm's VisionTransformer, with DINOv2's mask token and API."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import DropPath, GluMlp, Mlp
from timm.models.vision_transformer import VisionTransformer
from torch import nn
from torch.utils.checkpoint import checkpoint

from cxrflow.models.attention import DinoAttention
from cxrflow.models.config import ViTConfig

# Parameters that are embeddings/tokens rather than weights: layer 0, no weight decay.
TOKEN_PARAMS = ("cls_token", "reg_token", "pos_embed", "mask_token")
_STEM_PREFIXES = ("patch_embed.", "norm_pre.", *TOKEN_PARAMS)
_BLOCK_RE = re.compile(r"^blocks\.(\d+)\.")


def swiglu_hidden_features(embed_dim: int, mlp_ratio: float) -> int:
    """DINOv2's SwiGLU width: 2/3 of the MLP width, rounded up to a multiple of 8."""
    hidden = int(embed_dim * mlp_ratio)
    return (int(hidden * 2 / 3) + 7) // 8 * 8


def _swiglu_ffn(in_features: int, hidden_features: int, **kwargs: Any) -> nn.Module:
    """timm's packed SwiGLU (fc1 = [gate; up]) sized like DINOv2's `SwiGLUFFNFused`."""
    kwargs.pop("act_layer", None)  # the block passes GELU; SwiGLU is SiLU-gated by definition
    width = swiglu_hidden_features(in_features, hidden_features / in_features)
    return GluMlp(
        in_features, hidden_features=2 * width, act_layer=nn.SiLU, gate_last=False, **kwargs
    )


def _drop_path(rate: float) -> nn.Module:
    return DropPath(rate) if rate > 0 else nn.Identity()


class DinoViT(VisionTransformer):
    """ViT with DINOv2's mask token, `forward_features` dict and intermediate-layer API.

    The state dict is that of timm's `vit_*_patch14_dinov2` (or `_reg4_dinov2` with registers)
    plus `mask_token`. As in timm's register models, the CLS position embedding is folded into
    `cls_token` when registers are used (`no_embed_class`), so registers get no position.
    Drop path is uniform over blocks and position embeddings are resampled as transformers'
    `Dinov2Model` / `Dinov2WithRegistersModel` do (see `_resampled_pos_embed`).
    """

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__(
            img_size=cfg.img_size,
            patch_size=cfg.patch_size,
            in_chans=cfg.in_chans,
            num_classes=0,
            global_pool="token",
            embed_dim=cfg.embed_dim,
            depth=cfg.depth,
            num_heads=cfg.num_heads,
            mlp_ratio=cfg.mlp_ratio,
            qkv_bias=cfg.qkv_bias,
            init_values=cfg.layerscale_init,
            class_token=True,
            reg_tokens=cfg.num_register_tokens,
            no_embed_class=cfg.num_register_tokens > 0,
            dynamic_img_size=True,
            drop_path_rate=cfg.drop_path_rate,
            mlp_layer=Mlp if cfg.ffn == "mlp" else _swiglu_ffn,
            attn_layer=DinoAttention,
        )
        self.cfg = cfg
        # DINOv2 (drop_path_uniform) and HF drop every block at the same rate; timm's linear
        # ramp from 0 would regularise the first blocks less than the run was configured for.
        for block in self.blocks:
            block.drop_path1 = _drop_path(cfg.drop_path_rate)
            block.drop_path2 = _drop_path(cfg.drop_path_rate)
        # DINOv2 initialises the mask token to zeros; shape (1, D) as upstream and HF.
        self.mask_token = nn.Parameter(torch.zeros(1, cfg.embed_dim))

    @property
    def patch_size(self) -> int:
        """Side of a square patch in pixels."""
        return self.cfg.patch_size

    @property
    def num_register_tokens(self) -> int:
        """Register tokens between CLS and the patch tokens."""
        return self.cfg.num_register_tokens

    @property
    def n_blocks(self) -> int:
        """Transformer blocks."""
        return len(self.blocks)

    def patch_grid(self, img_size: int | Sequence[int]) -> tuple[int, int]:
        """(rows, cols) of patches for an image of `img_size` (int or (H, W))."""
        h, w = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        p = self.cfg.patch_size
        if h <= 0 or w <= 0 or h % p or w % p:
            raise ValueError(
                f"image size {h}x{w} is not a positive multiple of the patch size {p} "
                f"(e.g. {max(1, h // p) * p}x{max(1, w // p) * p})"
            )
        return h // p, w // p

    def _check_input(self, x: torch.Tensor) -> tuple[int, int]:
        """Validate (B, C, H, W) pixels; returns the patch grid."""
        if x.ndim != 4 or x.shape[1] != self.cfg.in_chans:
            raise ValueError(
                f"expected pixels of shape (B, {self.cfg.in_chans}, H, W), got {tuple(x.shape)}"
            )
        return self.patch_grid((x.shape[-2], x.shape[-1]))

    def prepare_tokens(self, x: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
        """Pixels -> [CLS, registers, patches] tokens with position embeddings added."""
        h, w = self._check_input(x)
        x = self.patch_embed(x)  # (B, h, w, D): dynamic size defers flattening
        if masks is not None:
            if masks.dtype != torch.bool or masks.numel() != x.shape[0] * h * w:
                raise ValueError(
                    f"masks must be a bool tensor with {h * w} entries per image "
                    f"(grid {h}x{w}), got dtype {masks.dtype} and shape {tuple(masks.shape)}"
                )
            # Masked patches are replaced before position embeddings are added (as DINOv2/HF).
            keep_out = masks.reshape(x.shape[0], h, w, 1)
            x = torch.where(keep_out, self.mask_token.to(x.dtype).view(1, 1, 1, -1), x)
        x = self._pos_embed(x)
        x = self.patch_drop(x)
        return self.norm_pre(x)

    def _resampled_pos_embed(self, h: int, w: int) -> torch.Tensor:
        """Position embeddings for an h x w patch grid, resampled exactly as transformers does."""
        # The exported encoder runs through transformers, so its resampling is the reference:
        # bicubic in fp32 to the target grid, without antialiasing in `Dinov2Model`, with it in
        # `Dinov2WithRegistersModel` (timm antialiases always). Upstream DINOv2's hub models use
        # `interpolate_offset=0.1` (scale factor (n + 0.1) / M) instead, a deliberate departure:
        # measured from 37x37 on a 2D sin-cos table (RMS 0.71), it differs from this by up to
        # 0.26 at 14x14 and 0.24 at 16x16; timm's antialiased resampling by 0.35 and 0.25.
        gh, gw = self.patch_embed.grid_size
        # transformers skips the resampling at the native grid, except while tracing
        if (h, w) == (gh, gw) and not torch.jit.is_tracing():
            return self.pos_embed
        n_prefix = 0 if self.no_embed_class else self.num_prefix_tokens
        prefix, patches = self.pos_embed[:, :n_prefix], self.pos_embed[:, n_prefix:]
        grid = patches.reshape(1, gh, gw, -1).permute(0, 3, 1, 2)
        resampled = F.interpolate(
            grid.float(),
            size=(h, w),
            mode="bicubic",
            align_corners=False,
            antialias=self.cfg.num_register_tokens > 0,
        ).to(patches.dtype)
        return torch.cat([prefix, resampled.permute(0, 2, 3, 1).reshape(1, h * w, -1)], dim=1)

    def _pos_embed(self, x: torch.Tensor) -> torch.Tensor:
        """Patch grid (B, h, w, D) -> [CLS, registers, patches] with position embeddings."""
        b, h, w, d = x.shape
        pos = self._resampled_pos_embed(h, w)
        x = x.reshape(b, h * w, d)
        prefix = [self.cls_token.expand(b, -1, -1)]
        if self.reg_token is not None:
            prefix.append(self.reg_token.expand(b, -1, -1))
        if self.no_embed_class:
            # register layout: positions for patches only (CLS's is folded into cls_token)
            x = torch.cat([*prefix, x + pos], dim=1)
        else:
            x = torch.cat([*prefix, x], dim=1) + pos
        return self.pos_drop(x)

    def _run_block(self, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """One block, checkpointed when enabled and gradients are being recorded."""
        if self.grad_checkpointing and torch.is_grad_enabled() and not torch.jit.is_scripting():
            return checkpoint(block, x, use_reentrant=False)
        return block(x)

    def forward_features(
        self, x: torch.Tensor, masks: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor | None]:
        """DINOv2's feature dict: normalised CLS / register / patch tokens and pre-norm tokens."""
        x = self.prepare_tokens(x, masks)
        for block in self.blocks:
            x = self._run_block(block, x)
        x_norm = self.norm(x)
        r = self.num_prefix_tokens
        return {
            "x_norm_clstoken": x_norm[:, 0],
            "x_norm_regtokens": x_norm[:, 1:r],
            "x_norm_patchtokens": x_norm[:, r:],
            "x_prenorm": x,
            "masks": masks,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised CLS embedding (B, D)."""
        return self.forward_features(x)["x_norm_clstoken"]

    def _block_indices(self, n: int | Sequence[int]) -> list[int]:
        """Last `n` blocks, or the given block indices (negative counts from the end)."""
        depth = self.n_blocks
        if isinstance(n, int):
            if not 1 <= n <= depth:
                raise ValueError(f"n must be in [1, {depth}], got {n}")
            return list(range(depth - n, depth))
        indices = [int(i) for i in n]
        bad = [i for i in indices if not -depth <= i < depth]
        if bad or not indices:
            raise ValueError(f"block indices must be in [{-depth}, {depth}), got {list(n)}")
        return [i % depth for i in indices]

    def get_intermediate_layers(
        self,
        x: torch.Tensor,
        n: int | Sequence[int] = 1,
        reshape: bool = False,
        norm: bool = True,
    ) -> tuple[torch.Tensor, ...]:
        """Patch tokens of the chosen blocks: (B, N, D), or (B, D, h, w) with `reshape`."""
        indices = self._block_indices(n)
        h, w = self._check_input(x)
        x = self.prepare_tokens(x)
        outputs: dict[int, torch.Tensor] = {}
        for i, block in enumerate(self.blocks[: max(indices) + 1]):
            x = self._run_block(block, x)
            if i in indices:
                outputs[i] = x
        r = self.num_prefix_tokens
        taken = []
        for i in indices:
            out = self.norm(outputs[i]) if norm else outputs[i]
            out = out[:, r:]
            if reshape:
                out = out.reshape(out.shape[0], h, w, -1).permute(0, 3, 1, 2).contiguous()
            taken.append(out)
        return tuple(taken)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Layer groups for timm's `param_groups_layer_decay`, numbered like `layer_id_for`."""
        # timm tags the final norm 99999 (MATCH_PREV_GROUP), merging it into the last block;
        # DINOv2 gives it its own top layer (depth + 1), so any other suffix that sorts last.
        return {
            "stem": r"^cls_token|^reg_token|^pos_embed|^mask_token|^patch_embed|^norm_pre",
            "blocks": [(r"^blocks\.(\d+)", None), (r"^norm\.", (1_000_000,))],
        }

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """Token parameter names, for timm's optimiser factory."""
        return set(TOKEN_PARAMS)

    def layer_id_for(self, param_name: str) -> int:
        """Layer index for layer-wise LR decay: stem 0, block i -> i + 1, final norm depth + 1."""
        if param_name.startswith(_STEM_PREFIXES):
            return 0
        match = _BLOCK_RE.match(param_name)
        if match:
            return int(match.group(1)) + 1
        if param_name.startswith("norm."):
            return self.n_blocks + 1
        raise KeyError(f"no layer id for parameter {param_name!r}")

    def no_weight_decay_names(self) -> frozenset[str]:
        """Parameters exempt from weight decay: biases, norms, LayerScale gammas, tokens."""
        return frozenset(
            name
            for name, param in self.named_parameters()
            if param.ndim <= 1 or name.endswith(".bias") or name in TOKEN_PARAMS
        )
