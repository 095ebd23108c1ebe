"""DINO loss: lazy centring, swapped-view pairing, 18-pair normaliser, Sinkhorn-Knopp."""

from __future__ import annotations

import math
import os
import tempfile

import pytest
import torch
import torch.distributed as dist

from cxrflow.ssl import DINOLoss, n_dino_pairs, sinkhorn_knopp

K, B = 7, 3


def _cross_entropy(target: torch.Tensor, logits: torch.Tensor, temp: float) -> float:
    """Batch mean of -sum_k t_k log softmax(s / temp)_k, with explicit loops."""
    total = 0.0
    for b in range(logits.shape[0]):
        z = [float(v) / temp for v in logits[b]]
        log_norm = math.log(sum(math.exp(v) for v in z))
        total += -sum(float(target[b, k]) * (z[k] - log_norm) for k in range(len(z)))
    return total / logits.shape[0]


def test_pairs_skip_same_view_and_average_over_18() -> None:
    torch.manual_seed(0)
    students = [torch.randn(B, K) for _ in range(10)]  # 2 global then 8 local
    teachers = [torch.softmax(torch.randn(B, K), dim=-1) for _ in range(2)]
    loss = DINOLoss(K)(students, teachers)

    total = 0.0
    pairs = 0
    for i, s in enumerate(students):
        for j, t in enumerate(teachers):
            if i == j:  # a global crop is never compared with its own teacher view
                continue
            total += _cross_entropy(t, s, 0.1)
            pairs += 1
    assert pairs == 18 == n_dino_pairs(2, 8)
    assert loss.item() == pytest.approx(total / 18, rel=1e-5)


def test_teacher_targets_are_swapped_across_global_crops() -> None:
    torch.manual_seed(1)
    s1, s2 = torch.randn(B, K), torch.randn(B, K)
    t1, t2 = (torch.softmax(torch.randn(B, K), dim=-1) for _ in range(2))
    loss = DINOLoss(K)([s1, s2], [t1, t2])
    swapped = (_cross_entropy(t2, s1, 0.1) + _cross_entropy(t1, s2, 0.1)) / 2
    assert loss.item() == pytest.approx(swapped, rel=1e-5)
    # Upstream's form: the global student batch vs the teacher batch with its halves swapped.
    log_probs = torch.log_softmax(torch.cat([s1, s2]) / 0.1, dim=-1)
    upstream = -(torch.cat([t2, t1]) * log_probs).sum(dim=-1).mean()
    assert upstream.item() == pytest.approx(swapped, rel=1e-5)


def test_centre_lags_one_step() -> None:
    loss = DINOLoss(K, center_momentum=0.9)
    torch.manual_seed(2)
    t0, t1, t2 = (torch.randn(4, K) * 3 for _ in range(3))
    temp = 0.04

    p0 = loss.softmax_center_teacher(t0, temp)
    torch.testing.assert_close(p0, torch.softmax(t0 / temp, dim=-1))  # centre starts at 0
    loss.update_center(t0)
    assert torch.count_nonzero(loss.center) == 0  # applied lazily, not yet

    p1 = loss.softmax_center_teacher(t1, temp)
    c1 = 0.1 * t0.mean(dim=0)  # step 0's mean, not step 1's
    torch.testing.assert_close(p1, torch.softmax((t1 - c1) / temp, dim=-1))
    loss.update_center(t1)

    p2 = loss.softmax_center_teacher(t2, temp)
    c2 = 0.9 * c1 + 0.1 * t1.mean(dim=0)
    torch.testing.assert_close(p2, torch.softmax((t2 - c2) / temp, dim=-1))
    torch.testing.assert_close(loss.center, c2.unsqueeze(0))
    assert loss.center.shape == (1, K)


def _upstream_sinkhorn(t: torch.Tensor, temp: float, n_iterations: int) -> torch.Tensor:
    """Upstream's single-process arithmetic, transcribed (no max shift)."""
    q = torch.exp(t.double() / temp).t()
    n, k = q.shape[1], q.shape[0]
    q /= q.sum()
    for _ in range(n_iterations):
        q /= q.sum(dim=1, keepdim=True)
        q /= k
        q /= q.sum(dim=0, keepdim=True)
        q /= n
    return (q * n).t()


def test_sinkhorn_matches_reference_without_process_group() -> None:
    assert not dist.is_initialized()
    torch.manual_seed(3)
    t = torch.randn(12, 5)
    q = DINOLoss(5).sinkhorn_knopp_teacher(t, 0.1)
    assert q.shape == (12, 5)
    torch.testing.assert_close(q.double(), _upstream_sinkhorn(t, 0.1, 3), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(q.sum(dim=1), torch.ones(12))  # each target sums to 1


def test_sinkhorn_equalises_prototype_marginals() -> None:
    torch.manual_seed(4)
    t = torch.randn(12, 4)
    converged = sinkhorn_knopp(t, 0.5, n_iterations=100)
    torch.testing.assert_close(converged.sum(dim=1), torch.ones(12))
    torch.testing.assert_close(converged.sum(dim=0), torch.full((4,), 12 / 4), rtol=1e-4, atol=0)
    # Three iterations already spread mass more evenly than a plain softmax.
    three = sinkhorn_knopp(t, 0.5).sum(dim=0)
    plain = torch.softmax(t / 0.5, dim=-1).sum(dim=0)
    assert three.std() < plain.std()


def test_sinkhorn_does_not_overflow_on_large_logits() -> None:
    t = torch.tensor([[10.0, 0.0, -3.0], [9.0, 8.0, 0.0]])
    q = sinkhorn_knopp(t, 0.04)  # exp(250) overflows without the max shift
    assert torch.isfinite(q).all()
    torch.testing.assert_close(q.sum(dim=1), torch.ones(2))


def test_distributed_path_with_single_process_group_agrees() -> None:
    torch.manual_seed(5)
    t0, t1 = torch.randn(6, K), torch.randn(6, K)
    expected = DINOLoss(K)
    expected.update_center(t0)
    want = expected.softmax_center_teacher(t1, 0.05)
    with tempfile.TemporaryDirectory() as tmp:
        dist.init_process_group(
            "gloo", init_method="file://" + os.path.join(tmp, "pg"), rank=0, world_size=1
        )
        try:
            loss = DINOLoss(K)
            loss.update_center(t0)  # async all_reduce
            got = loss.softmax_center_teacher(t1, 0.05)
            sk = loss.sinkhorn_knopp_teacher(t1, 0.05)
        finally:
            dist.destroy_process_group()
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(sk, sinkhorn_knopp(t1, 0.05))


def test_gradient_reaches_only_the_student() -> None:
    student = torch.randn(B, K, requires_grad=True)
    other = torch.randn(B, K, requires_grad=True)
    teachers = [torch.softmax(torch.randn(B, K), dim=-1) for _ in range(2)]
    DINOLoss(K)([student, other], teachers).backward()
    assert student.grad is not None and torch.isfinite(student.grad).all()


def test_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="student_temp"):
        DINOLoss(K, student_temp=0)
    with pytest.raises(ValueError, match="center_momentum"):
        DINOLoss(K, center_momentum=1.5)
    with pytest.raises(ValueError, match="teacher_temp"):
        DINOLoss(K).softmax_center_teacher(torch.randn(2, K), 0.0)
