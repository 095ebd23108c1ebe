"""Self-attention maps of the CLS token in the last block, for a look at what the encoder sees."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from cxrflow.models.vit import DinoViT


@torch.no_grad()
def cls_attention(model: DinoViT, images: torch.Tensor) -> torch.Tensor:
    """(B, heads, h, w) attention of the CLS query over the patches in the last block.

    The fused attention kernels return no weights, so the last block's attention is
    recomputed explicitly from its own qkv projection.
    """
    x = model.prepare_tokens(images)
    for block in model.blocks[:-1]:
        x = block(x)
    last = model.blocks[-1]
    attn = last.attn
    b, n, c = x.shape
    qkv = attn.qkv(last.norm1(x)).reshape(b, n, 3, attn.num_heads, c // attn.num_heads)
    q, k, _ = qkv.permute(2, 0, 3, 1, 4).unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    weights = F.softmax((q[:, :, :1] @ k.transpose(-2, -1)) * attn.scale, dim=-1)[:, :, 0]
    start = 1 + model.num_register_tokens
    h, w = model.patch_grid(tuple(images.shape[-2:]))
    return weights[:, :, start:].reshape(b, -1, h, w)


def save_attention_figure(model: DinoViT, images: torch.Tensor, path: Path) -> Path:
    """A PNG with each image beside its head-averaged CLS attention map."""
    maps = cls_attention(model, images).mean(dim=1)
    maps = F.interpolate(maps[:, None], size=images.shape[-2:], mode="bilinear")[:, 0]
    n = images.shape[0]
    fig, axes = plt.subplots(2, n, figsize=(2.2 * n, 4.4), squeeze=False)
    for i in range(n):
        img = images[i, 0].float()
        axes[0, i].imshow(img, cmap="gray")
        axes[1, i].imshow(img, cmap="gray")
        axes[1, i].imshow(maps[i], cmap="inferno", alpha=0.6)
        for ax in axes[:, i]:
            ax.axis("off")
    axes[0, 0].set_title("image", loc="left")
    axes[1, 0].set_title("CLS attention", loc="left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
