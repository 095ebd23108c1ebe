"""iBOT loss: per-image 1/M_i weighting, the 1/n_images normaliser, padding, centring."""

from __future__ import annotations

import math

import pytest
import torch

from cxrflow.ssl import iBOTPatchLoss, masks_weight_from

K = 6


def _masks() -> torch.Tensor:
    masks = torch.zeros(4, 12, dtype=torch.bool)
    masks[0, 3] = True  # 1 masked patch
    masks[1, :10] = True  # 10 masked patches
    # images 2 and 3 unmasked: they count in the normaliser (2B = 4) only
    return masks


def _reference(
    student: torch.Tensor, teacher: torch.Tensor, masks: torch.Tensor, temp: float
) -> float:
    """-(1/n_images) sum_i (1/max(M_i,1)) sum_p sum_k t log softmax(s/T), with loops."""
    total, row = 0.0, 0
    for i in range(masks.shape[0]):
        m_i = int(masks[i].sum())
        image_sum = 0.0
        for _ in range(m_i):
            z = [float(v) / temp for v in student[row]]
            log_norm = math.log(sum(math.exp(v) for v in z))
            image_sum += -sum(float(teacher[row, k]) * (z[k] - log_norm) for k in range(K))
            row += 1
        total += image_sum / max(m_i, 1)
    return total / masks.shape[0]


def test_matches_loop_reference() -> None:
    torch.manual_seed(0)
    masks = _masks()
    m = int(masks.sum())
    student = torch.randn(m, K)
    teacher = torch.softmax(torch.randn(m, K), dim=-1)
    loss = iBOTPatchLoss(K)
    want = _reference(student, teacher, masks, 0.1)
    assert loss.forward_masked(student, teacher, masks).item() == pytest.approx(want, rel=1e-5)
    weights = masks_weight_from(masks)
    got = loss.forward_masked(student, teacher, masks, n_masked_patches=m, masks_weight=weights)
    assert got.item() == pytest.approx(want, rel=1e-5)


def test_each_masked_image_counts_once() -> None:
    masks = _masks()
    a = torch.tensor([[4.0, 0, 0, 0, 0, 0]])
    b = torch.tensor([[0.0, 0, 3.0, 0, 0, 0]])
    student = torch.cat([a, b.expand(10, K)])  # image 0: 1 patch, image 1: 10 identical patches
    teacher = torch.full((11, K), 1.0 / K)
    loss = iBOTPatchLoss(K).forward_masked(student, teacher, masks)
    ce = lambda s: -(teacher[0] * torch.log_softmax(s[0] / 0.1, dim=-1)).sum()  # noqa: E731
    torch.testing.assert_close(loss, (ce(a) + ce(b)) / 4)


def test_padding_beyond_n_masked_patches_is_ignored() -> None:
    torch.manual_seed(1)
    masks = _masks()
    m = int(masks.sum())
    student = torch.randn(1, m + 5, K)  # upperbound-sized buffer, (1, M, K) as upstream
    teacher = torch.softmax(torch.randn(1, m + 5, K), dim=-1)
    loss = iBOTPatchLoss(K)
    got = loss.forward_masked(student, teacher, masks, n_masked_patches=torch.tensor([m]))
    want = _reference(student[0, :m], teacher[0, :m], masks, 0.1)
    assert got.item() == pytest.approx(want, rel=1e-5)
    with pytest.raises(ValueError, match="n_masked_patches"):
        loss.forward_masked(student[:, :3], teacher, masks, n_masked_patches=m)


def test_centre_shape_and_lag_over_patches() -> None:
    loss = iBOTPatchLoss(K, center_momentum=0.9)
    assert loss.center.shape == (1, 1, K)
    torch.manual_seed(2)
    t0, t1 = torch.randn(1, 9, K), torch.randn(5, K)
    p0 = loss.softmax_center_teacher(t0, 0.07)
    assert p0.shape == (1, 9, K)
    loss.update_center(t0)
    p1 = loss.softmax_center_teacher(t1, 0.07)
    c1 = 0.1 * t0.reshape(-1, K).mean(dim=0)
    torch.testing.assert_close(p1, torch.softmax((t1 - c1) / 0.07, dim=-1))
    torch.testing.assert_close(loss.center, c1.view(1, 1, K))


def test_sinkhorn_truncates_to_masked_patches() -> None:
    torch.manual_seed(3)
    t = torch.randn(1, 10, K)
    q = iBOTPatchLoss(K).sinkhorn_knopp_teacher(t, 0.07, n_masked_patches=torch.tensor([7]))
    assert q.shape == (7, K)
    torch.testing.assert_close(q.sum(dim=1), torch.ones(7))
