"""iBOT patch-level loss on masked patches, weighted per image.

Normaliser (as upstream ``forward_masked``, and FIELD-NOTES' formula):

    L = -(1 / n_images) sum_i (1 / max(M_i, 1)) sum_{p in mask_i} sum_k t_pk log softmax(s_p / T)_k

with ``n_images = masks.shape[0]`` = 2B (every global crop, masked or not). Each masked image
thus contributes the mean cross-entropy of its masked patches (an image with 1 masked patch
counts as much as one with 10), and unmasked images contribute 0 but still count in 2B: with
``mask_probability`` 0.5 the value is about half the mean over masked images. Upstream then
multiplies by ``n_global_crops`` and by ``1 / n_global_crops`` (net x1), which we drop.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cxrflow.ssl.losses.centering import CenteredTeacher, no_autocast, sinkhorn_knopp


def masks_weight_from(masks: torch.Tensor) -> torch.Tensor:
    """1 / max(M_i, 1) of each masked patch's image, in ``masks.nonzero()`` order, shape (M,)."""
    masks = masks.flatten(1).bool()
    per_image = 1.0 / masks.sum(dim=-1).clamp(min=1).float()
    return per_image.unsqueeze(-1).expand_as(masks)[masks]


class iBOTPatchLoss(CenteredTeacher):
    """Masked-patch cross-entropy with teacher centring (centre shape (1, 1, K)) or Sinkhorn."""

    def __init__(
        self, patch_out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9
    ) -> None:
        super().__init__((1, 1, patch_out_dim), center_momentum)
        if student_temp <= 0:
            raise ValueError(f"student_temp must be > 0, got {student_temp}")
        self.student_temp = student_temp

    @torch.no_grad()
    def sinkhorn_knopp_teacher(
        self,
        teacher_logits: torch.Tensor,
        teacher_temp: float,
        n_masked_patches: int | torch.Tensor | None = None,
        n_iterations: int = 3,
    ) -> torch.Tensor:
        """Sinkhorn-Knopp targets (M, K) from masked-patch teacher logits ((M, K) or (1, M, K)).

        ``n_masked_patches`` truncates padded rows (upstream's ``upperbound`` buffer).
        """
        flat = self._flat(teacher_logits)
        if n_masked_patches is not None:
            flat = flat[: int(n_masked_patches)]
        return sinkhorn_knopp(flat, teacher_temp, n_iterations)

    def forward_masked(
        self,
        student_patch_logits_masked: torch.Tensor,
        teacher_probs_masked: torch.Tensor,
        masks: torch.Tensor,
        n_masked_patches: int | torch.Tensor | None = None,
        masks_weight: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Per-image-weighted cross-entropy over masked patches, divided by ``masks.shape[0]``.

        Student/teacher rows are the masked patches in ``masks.flatten().nonzero()`` order
        ((M, K) or (1, M, K); extra padding rows beyond ``n_masked_patches`` are ignored).
        ``masks``: (n_images, N) or (n_images, h, w) bool; ``masks_weight``: (M,) as built by
        ``collate_masks`` (recomputed from ``masks`` when omitted).
        """
        k = self.out_dim
        student = student_patch_logits_masked.reshape(-1, k)
        teacher = teacher_probs_masked.reshape(-1, k)
        if masks_weight is None:
            masks_weight = masks_weight_from(masks)
        n = int(n_masked_patches) if n_masked_patches is not None else masks_weight.shape[0]
        if student.shape[0] < n or teacher.shape[0] < n or masks_weight.shape[0] < n:
            raise ValueError(
                f"n_masked_patches={n} exceeds the rows given (student {student.shape[0]}, "
                f"teacher {teacher.shape[0]}, masks_weight {masks_weight.shape[0]})"
            )
        with no_autocast(student.device):
            log_probs = F.log_softmax(student[:n].float() / self.student_temp, dim=-1)
            cross = torch.sum(teacher[:n].float() * log_probs, dim=-1)
            return -(cross * masks_weight[:n].to(cross)).sum() / masks.shape[0]
