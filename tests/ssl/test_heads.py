"""DINOHead: shapes, normalised bottleneck, weight-norm magnitude, size, last-layer freeze."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cxrflow.ssl import DINOHead, DINOLoss


def _small() -> DINOHead:
    torch.manual_seed(0)
    return DINOHead(32, out_dim=64, hidden_dim=48, bottleneck_dim=16)


def test_shapes_and_unit_bottleneck() -> None:
    head = _small()
    x = torch.randn(5, 32)
    assert head(x).shape == (5, 64)
    assert head(torch.randn(2, 3, 32)).shape == (2, 3, 64)
    torch.testing.assert_close(head.bottleneck(x).norm(dim=-1), torch.ones(5))
    layers = [m for m in head.mlp if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in layers] == [(32, 48), (48, 48), (48, 16)]
    assert sum(isinstance(m, nn.GELU) for m in head.mlp) == 2
    assert not any(isinstance(m, nn.BatchNorm1d | nn.LayerNorm) for m in head.modules())


def test_logits_are_weight_normed_prototypes_scaled_by_magnitude() -> None:
    head = _small()
    x = torch.randn(5, 32)
    z = head.bottleneck(x)
    g = head.last_layer.parametrizations.weight.original0
    v = head.last_layer.parametrizations.weight.original1
    assert g.shape == (64, 1) and torch.equal(g, torch.ones_like(g))
    torch.testing.assert_close(head(x), z @ (v / v.norm(dim=1, keepdim=True)).t())
    assert head(x).abs().max() <= 1.0 + 1e-5  # magnitude 1 at init
    with torch.no_grad():
        g.fill_(3.0)
    torch.testing.assert_close(head(x), 3.0 * z @ (v / v.norm(dim=1, keepdim=True)).t())


def test_magnitude_is_trainable() -> None:
    head = _small()
    g = head.last_layer.parametrizations.weight.original0
    assert g.requires_grad
    head(torch.randn(4, 32)).pow(2).sum().backward()
    assert g.grad is not None and g.grad.abs().sum() > 0


def test_mlp_init_is_trunc_normal_002() -> None:
    torch.manual_seed(0)
    head = DINOHead(256, out_dim=32, hidden_dim=512, bottleneck_dim=64)
    weights = torch.cat([m.weight.flatten() for m in head.mlp if isinstance(m, nn.Linear)])
    assert weights.std().item() == pytest.approx(0.02, rel=0.05)
    assert all(torch.count_nonzero(m.bias) == 0 for m in head.mlp if isinstance(m, nn.Linear))


def test_parameter_count_vit_b() -> None:
    with torch.device("meta"):
        head = DINOHead(768, out_dim=65536)
    n = sum(p.numel() for p in head.parameters())
    mlp = (768 * 2048 + 2048) + (2048 * 2048 + 2048) + (2048 * 256 + 256)
    assert n == mlp + 256 * 65536 + 65536  # direction + magnitude
    assert abs(n - 23.1e6) < 0.1e6


def test_last_layer_parameters_and_trainable_switch() -> None:
    head = _small()
    names = {n for n, _ in head.named_parameters() if "last_layer" in n}
    assert len(names) == 2 == len(head.last_layer_parameters())
    head.set_last_layer_trainable(False)
    assert not any(p.requires_grad for p in head.last_layer_parameters())
    head.set_last_layer_trainable(True)
    assert all(p.requires_grad for p in head.last_layer_parameters())


def test_single_layer_and_validation() -> None:
    head = DINOHead(8, out_dim=10, bottleneck_dim=4, nlayers=1)
    assert isinstance(head.mlp, nn.Linear) and head(torch.randn(2, 8)).shape == (2, 10)
    with pytest.raises(ValueError, match="nlayers"):
        DINOHead(8, nlayers=0)


def _relative_error(probs: torch.Tensor, reference: torch.Tensor) -> float:
    return float(((probs - reference).abs() / reference).max())


def test_logits_and_teacher_probabilities_are_fp32_under_bf16_autocast() -> None:
    # At teacher temperature 0.04 a logit error d scales the probability by exp(d / 0.04):
    # bf16 prototype logits (2^-9 relative) give errors of several percent.
    torch.manual_seed(0)
    head = DINOHead(16, out_dim=512, bottleneck_dim=16, nlayers=1)
    with torch.no_grad():  # an identity MLP, exact in bf16: only the prototype layer differs
        head.mlp.weight.copy_(torch.eye(16))
        head.mlp.bias.zero_()
    x = torch.randn(8, 16).bfloat16().float()
    center = DINOLoss(512)
    reference = center.softmax_center_teacher(head(x), 0.04)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = head(x)
        probs = center.softmax_center_teacher(logits, 0.04)
    assert logits.dtype == probs.dtype == torch.float32
    assert _relative_error(probs, reference) < 1e-4
