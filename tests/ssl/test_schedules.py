"""Schedules: warm-up, cosine midpoint and end, teacher temperature, momentum, last layer."""

from __future__ import annotations

import math

import pytest

from cxrflow.ssl import CosineScheduler, ScheduleConfig, Schedules, lr_for_batch


def test_cosine_with_warmup_at_known_steps() -> None:
    s = CosineScheduler(1.0, 0.0, total_iters=100, warmup_iters=10, start_warmup_value=0.0)
    assert len(s) == 100 and s.schedule.shape == (100,)
    assert s[0] == 0.0
    assert s[9] == pytest.approx(1.0)  # last warm-up step reaches the base value
    assert s[10] == pytest.approx(1.0)  # cosine starts at the base value
    assert s[10 + 45] == pytest.approx(0.5)  # midpoint of the 90 cosine steps
    assert 0.0 < s[99] < 1e-3
    assert s[100] == 0.0 and s[10**6] == 0.0  # clamps past the end
    with pytest.raises(IndexError):
        s[-1]


def test_freeze_then_warmup() -> None:
    s = CosineScheduler(2.0, 1.0, total_iters=20, warmup_iters=5, freeze_iters=3)
    assert list(s.schedule[:3]) == [0.0, 0.0, 0.0]
    assert s[3] == 0.0 and s[7] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="total_iters"):
        CosineScheduler(1.0, 0.0, total_iters=5, warmup_iters=6)


def test_lr_scaling_rule() -> None:
    assert lr_for_batch(1e-3, 1024) == pytest.approx(1e-3)
    assert lr_for_batch(1e-3, 640) == pytest.approx(1e-3 * math.sqrt(640 / 1024))


def test_bundle_at_known_steps() -> None:
    config = ScheduleConfig(
        base_lr=1e-3, warmup_epochs=10, warmup_teacher_temp_epochs=30, freeze_last_layer_epochs=1
    )
    s = Schedules.build(total_iters=1000, iters_per_epoch=10, batch_size=256, config=config)
    peak = 1e-3 * math.sqrt(256 / 1024)
    assert s.peak_lr == pytest.approx(peak)
    assert s.lr[0] == 0.0 and s.lr[99] == pytest.approx(peak)
    assert s.lr[100 + 450] == pytest.approx((peak + 1e-6) / 2)
    assert s.lr[1000] == 1e-6
    assert s.weight_decay[0] == pytest.approx(0.04)
    assert s.weight_decay[500] == pytest.approx(0.22)
    assert s.weight_decay[5000] == pytest.approx(0.4)
    assert s.momentum[0] == pytest.approx(0.992)
    assert s.momentum[500] == pytest.approx(0.996)
    assert s.momentum[1000] == 1.0
    assert s.teacher_temp[0] == pytest.approx(0.04)
    assert s.teacher_temp[299] == pytest.approx(0.07)
    assert s.teacher_temp[150] == pytest.approx(0.04 + 0.03 * 150 / 299)
    assert s.teacher_temp[300] == s.teacher_temp[900] == pytest.approx(0.07)
    # last layer: LR 0 during the first epoch (10 iterations), then the LR schedule
    assert all(s.last_layer_lr[i] == 0.0 for i in range(10))
    assert s.last_layer_lr[10] == pytest.approx(s.lr[10]) and s.lr[10] > 0
    assert s.last_layer_frozen(9) and not s.last_layer_frozen(10)
    assert s.at(10)["last_layer_lr"] == pytest.approx(s.lr[10])


def test_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="teacher_temp"):
        ScheduleConfig(teacher_temp=0.0)
    with pytest.raises(ValueError, match="momentum_teacher"):
        ScheduleConfig(momentum_teacher=1.5)
    with pytest.raises(ValueError, match="warmup_epochs"):
        Schedules.build(total_iters=50, iters_per_epoch=10, batch_size=64)
