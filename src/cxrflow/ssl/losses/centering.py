"""Teacher targets shared by the DINO and iBOT losses: lazy EMA centring and Sinkhorn-Knopp."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def no_autocast(device: torch.device) -> torch.autocast:
    """A region where autocast is off: targets and log-probabilities are computed in fp32."""
    return torch.autocast(device_type=device.type, enabled=False)


def distributed_ready() -> bool:
    """True when a process group exists (all_reduce is then required, otherwise skipped)."""
    return dist.is_available() and dist.is_initialized()


@torch.no_grad()
def sinkhorn_knopp(
    logits: torch.Tensor,
    teacher_temp: float,
    n_iterations: int = 3,
    n_samples: int | torch.Tensor | None = None,
) -> torch.Tensor:
    """Sinkhorn-Knopp targets (rows = prototypes, then columns = samples), shape (n, K), fp32.

    Each returned row (one sample's target) sums to 1; prototype marginals are equalised.
    Works without a process group: reductions are all-reduced only when one is initialised
    (upstream calls ``all_reduce`` unconditionally and so needs a group even single-process).
    ``n_samples`` is the global number of samples (summed over ranks when omitted).
    """
    if n_iterations < 1:
        raise ValueError(f"n_iterations must be >= 1, got {n_iterations}")
    if teacher_temp <= 0:
        raise ValueError(f"teacher_temp must be > 0, got {teacher_temp}")
    logits = logits.detach().float()
    distributed = distributed_ready()
    # Shifting by the global max multiplies Q by a constant that the first normalisation
    # removes exactly; without it exp(t / 0.04) overflows fp32 once t exceeds ~3.5.
    shift = logits.max()
    if distributed:
        dist.all_reduce(shift, op=dist.ReduceOp.MAX)
    q = torch.exp((logits - shift) / teacher_temp).t()  # K x n
    n_protos = q.shape[0]
    if n_samples is None:
        count = torch.tensor(float(q.shape[1]), device=q.device)
        if distributed:
            dist.all_reduce(count)
        n_total = count
    else:
        n_total = torch.as_tensor(n_samples, dtype=torch.float32, device=q.device)
    tiny = torch.finfo(q.dtype).tiny  # an empty prototype row stays 0 instead of 0/0 = NaN
    total = q.sum()
    if distributed:
        dist.all_reduce(total)
    q /= total
    for _ in range(n_iterations):
        rows = q.sum(dim=1, keepdim=True)
        if distributed:
            dist.all_reduce(rows)
        q /= rows.clamp_min(tiny)
        q /= n_protos
        q /= q.sum(dim=0, keepdim=True).clamp_min(tiny)
        q /= n_total
    q *= n_total
    return q.t()


class CenteredTeacher(nn.Module):
    """EMA centre of teacher logits with upstream's lazy update (targets use the previous centre).

    ``update_center(t)`` only computes (and, under DDP, starts all-reducing) the batch mean;
    the EMA step ``c <- m c + (1 - m) mean`` is applied at the next ``softmax_center_teacher``
    call, so the targets of step t are centred with the means up to step t-1.
    """

    center: torch.Tensor

    def __init__(self, center_shape: tuple[int, ...], center_momentum: float) -> None:
        super().__init__()
        if not 0.0 <= center_momentum <= 1.0:
            raise ValueError(f"center_momentum must be in [0, 1], got {center_momentum}")
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(center_shape))
        self._pending: torch.Tensor | None = None  # [sum over rows..., row count]
        self._handle: dist.Work | None = None

    @property
    def out_dim(self) -> int:
        """Number of prototypes K."""
        return self.center.shape[-1]

    def _flat(self, logits: torch.Tensor) -> torch.Tensor:
        if logits.shape[-1] != self.out_dim:
            raise ValueError(f"expected logits with last dim {self.out_dim}, got {logits.shape}")
        return logits.detach().float().reshape(-1, self.out_dim)

    @torch.no_grad()
    def update_center(self, teacher_logits: torch.Tensor) -> None:
        """Record this batch's mean teacher logit; applied lazily at the next centring."""
        flat = self._flat(teacher_logits)
        count = torch.full((1,), float(flat.shape[0]), device=flat.device)
        # Sum and count travel together so ranks with different row counts (iBOT masks)
        # give the exact global mean.
        self._pending = torch.cat([flat.sum(dim=0), count])
        self._handle = None
        if distributed_ready():
            self._handle = dist.all_reduce(self._pending, async_op=True)

    @torch.no_grad()
    def apply_center_update(self) -> None:
        """Apply a pending EMA step (call before saving a checkpoint to keep it)."""
        if self._pending is None:
            return
        if self._handle is not None:
            self._handle.wait()
        total, count = self._pending[:-1], self._pending[-1].clamp_min(1.0)
        batch_center = (total / count).to(self.center.device).reshape(self.center.shape)
        self.center.mul_(self.center_momentum).add_(batch_center, alpha=1 - self.center_momentum)
        self._pending, self._handle = None, None

    @torch.no_grad()
    def softmax_center_teacher(
        self, teacher_logits: torch.Tensor, teacher_temp: float
    ) -> torch.Tensor:
        """Centred, sharpened teacher probabilities softmax((t - c) / tau), same shape as input."""
        if teacher_temp <= 0:
            raise ValueError(f"teacher_temp must be > 0, got {teacher_temp}")
        self.apply_center_update()
        self._flat(teacher_logits)  # shape check
        # At temperature 0.04 a logit error d scales a probability by exp(d / 0.04).
        with no_autocast(teacher_logits.device):
            centred = teacher_logits.detach().float() - self.center.reshape(self.out_dim)
            return F.softmax(centred / teacher_temp, dim=-1)
