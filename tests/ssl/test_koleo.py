"""KoLeo: brute-force nearest neighbours, fp32 under bf16."""

from __future__ import annotations

import math

import pytest
import torch

from cxrflow.ssl import KoLeoLoss


def _brute_force(x: torch.Tensor) -> float:
    x = x.double()
    x = x / x.norm(dim=-1, keepdim=True)
    logs = []
    for i in range(x.shape[0]):
        nearest = min(float((x[i] - x[j]).norm()) for j in range(x.shape[0]) if j != i)
        logs.append(math.log(nearest + 1e-8))
    return -sum(logs) / len(logs)


def test_matches_brute_force() -> None:
    torch.manual_seed(0)
    x = torch.randn(9, 5) * 4
    assert KoLeoLoss()(x).item() == pytest.approx(_brute_force(x), rel=1e-5)


def test_runs_in_fp32_for_bf16_inputs() -> None:
    torch.manual_seed(1)
    x = torch.randn(8, 16).to(torch.bfloat16)
    loss = KoLeoLoss()(x)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(_brute_force(x.float()), rel=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = KoLeoLoss()(x.float())
    assert under_autocast.dtype == torch.float32
    assert under_autocast.item() == pytest.approx(loss.item(), rel=1e-6)


def test_gradient_is_finite_and_duplicates_do_not_nan() -> None:
    x = torch.randn(6, 4)
    x[1] = x[0]  # distance 0 -> log(1e-8), finite
    x.requires_grad_(True)
    loss = KoLeoLoss()(x)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()


def test_spread_points_score_lower() -> None:
    spread = torch.eye(4)
    clumped = torch.eye(4) + 5.0  # all near the same direction
    assert KoLeoLoss()(spread) < KoLeoLoss()(clumped)


def test_needs_two_rows() -> None:
    with pytest.raises(ValueError, match="B>=2"):
        KoLeoLoss()(torch.randn(1, 4))
