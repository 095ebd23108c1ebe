"""KoLeo regulariser: pushes each L2-normalised feature away from its nearest neighbour."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class KoLeoLoss(nn.Module):
    """-mean_i log(||x_i - x_nn(i)|| + eps) over a batch (B, D), computed in fp32.

    Apply it per global crop (upstream: on the student's backbone CLS of each global crop).
    """

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """The KoLeo loss of ``features`` (B, D), B >= 2, as an fp32 scalar."""
        if features.dim() != 2 or features.shape[0] < 2:
            raise ValueError(f"expected features of shape (B>=2, D), got {tuple(features.shape)}")
        # Autocast would run the matmul in bf16/fp16; log of tiny distances needs fp32.
        with torch.autocast(device_type=features.device.type, enabled=False):
            x = F.normalize(features.float(), p=2, dim=-1, eps=self.eps)
            with torch.no_grad():
                dots = x @ x.t()
                dots.fill_diagonal_(float("-inf"))  # exclude self (upstream fills -1)
                nearest = dots.argmax(dim=1)
            distances = torch.linalg.vector_norm(x - x[nearest], dim=-1)
            return -torch.log(distances + self.eps).mean()
