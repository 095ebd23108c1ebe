"""DINO image-level loss: student crops vs the teacher's centred global-crop targets."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from cxrflow.ssl.losses.centering import CenteredTeacher, no_autocast, sinkhorn_knopp


class DINOLoss(CenteredTeacher):
    """Cross-entropy between teacher CLS targets and every student crop of another view.

    Centre shape (1, K). ``forward`` averages over the counted (student, teacher) pairs, which
    is upstream's normaliser: with 2 global + 8 local crops, 2 + 16 = 18 pairs.
    """

    def __init__(self, out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9):
        super().__init__((1, out_dim), center_momentum)
        if student_temp <= 0:
            raise ValueError(f"student_temp must be > 0, got {student_temp}")
        self.student_temp = student_temp

    @torch.no_grad()
    def sinkhorn_knopp_teacher(
        self, teacher_logits: torch.Tensor, teacher_temp: float, n_iterations: int = 3
    ) -> torch.Tensor:
        """Sinkhorn-Knopp targets (B, K) from teacher logits (B, K); no process group needed."""
        return sinkhorn_knopp(self._flat(teacher_logits), teacher_temp, n_iterations)

    def forward(
        self,
        student_logits_list: Sequence[torch.Tensor],
        teacher_probs_list: Sequence[torch.Tensor],
    ) -> torch.Tensor:
        """Mean over pairs of -sum_k t_k log softmax(s / student_temp)_k, each averaged over B.

        ``teacher_probs_list[j]`` is the target of global view j (unswapped);
        ``student_logits_list`` starts with the student's global crops in the same view order,
        then its local crops. Pair (i, j) is skipped when i == j (same view), so the teacher's
        crop-1 target supervises the student's crop 2 and vice versa, and local crops are
        compared with every teacher view.
        """
        n_teacher = len(teacher_probs_list)
        if n_teacher == 0 or len(student_logits_list) == 0:
            raise ValueError("need at least one student crop and one teacher view")
        device = student_logits_list[0].device
        total = torch.zeros((), device=device)
        n_pairs = 0
        with no_autocast(device):
            for i, student in enumerate(student_logits_list):
                log_probs = F.log_softmax(student.float() / self.student_temp, dim=-1)
                for j, target in enumerate(teacher_probs_list):
                    if i == j:
                        continue
                    total = total - torch.sum(target.float() * log_probs, dim=-1).mean()
                    n_pairs += 1
        if n_pairs == 0:
            raise ValueError("no (student, teacher) pair of different views to compare")
        return total / n_pairs


def n_dino_pairs(n_global: int, n_local: int) -> int:
    """Number of pairs the DINO loss averages over: n_g (n_g - 1) + n_l n_g (18 for 2 + 8)."""
    return n_global * (n_global - 1) + n_local * n_global
