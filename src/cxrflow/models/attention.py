"""Self-attention for the ViT blocks: fused SDPA, or xformers on CUDA when it is installed."""

from __future__ import annotations

import functools
import importlib.util
import os

import torch
import torch.nn.functional as F
from timm.layers import Attention


@functools.cache
def xformers_available() -> bool:
    """True when `xformers.ops` can be imported (checked once per process)."""
    if importlib.util.find_spec("xformers") is None:
        return False
    try:
        import xformers.ops  # noqa: F401
    except Exception:  # a broken build (wrong CUDA/torch) must fall back, not crash
        return False
    return True


ATTENTION_ENV = "CXRFLOW_ATTENTION"


def attention_backend(device: torch.device | str) -> str:
    """`"xformers"` for CUDA tensors when xformers imports, else `"sdpa"`.

    `CXRFLOW_ATTENTION=sdpa` forces SDPA everywhere (benchmarks compare the two kernels).
    """
    device = torch.device(device)
    if os.environ.get(ATTENTION_ENV, "auto") == "sdpa":
        return "sdpa"
    if device.type == "cuda" and xformers_available():
        return "xformers"
    return "sdpa"


class DinoAttention(Attention):
    """timm's `Attention` (same `qkv`/`proj` parameters) with a backend switch."""

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
    ) -> torch.Tensor:
        """Multi-head self-attention over (B, N, C) tokens."""
        if (
            attn_mask is not None
            or is_causal
            or self.gate is not None
            or attention_backend(x.device) != "xformers"
        ):
            return self._forward_sdpa(x, attn_mask, is_causal)
        return self._forward_xformers(x)

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k, v as (B, N, heads, head_dim)."""
        b, n, _ = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.unbind(2)
        return self.q_norm(q), self.k_norm(k), v

    def _project(self, out: torch.Tensor) -> torch.Tensor:
        """(B, N, heads, head_dim) -> output projection."""
        b, n = out.shape[:2]
        out = self.norm(out.reshape(b, n, self.attn_dim))
        return self.proj_drop(self.proj(out))

    def _forward_sdpa(
        self, x: torch.Tensor, attn_mask: torch.Tensor | None, is_causal: bool
    ) -> torch.Tensor:
        """Fused `scaled_dot_product_attention` (any device)."""
        q, k, v = (t.transpose(1, 2) for t in self._qkv(x))
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=attn_mask,
            dropout_p=self.attn_drop.p if self.training else 0.0,
            is_causal=is_causal,
        )
        return self._project(out.transpose(1, 2))

    def _forward_xformers(self, x: torch.Tensor) -> torch.Tensor:
        """xformers' memory-efficient kernel; takes (B, N, heads, head_dim) directly."""
        from xformers.ops import memory_efficient_attention

        q, k, v = self._qkv(x)
        out = memory_efficient_attention(q, k, v, p=self.attn_drop.p if self.training else 0.0)
        return self._project(out)
