"""Per-iteration schedules: LR, weight decay, teacher momentum and temperature, last-layer LR.

``CosineScheduler`` follows upstream: ``freeze_iters`` zeros, then ``warmup_iters`` points of
``linspace(start_warmup_value, base_value)`` (the last warm-up iteration is exactly
``base_value``), then a half cosine from ``base_value`` towards ``final_value`` whose last
point is just above ``final_value``; indices >= total_iters return ``final_value``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

REFERENCE_BATCH = 1024


class CosineScheduler:
    """A precomputed per-iteration schedule (``.schedule`` is a numpy array of total_iters)."""

    def __init__(
        self,
        base_value: float,
        final_value: float,
        total_iters: int,
        warmup_iters: int = 0,
        start_warmup_value: float = 0.0,
        freeze_iters: int = 0,
    ) -> None:
        for name, value in (
            ("total_iters", total_iters),
            ("warmup_iters", warmup_iters),
            ("freeze_iters", freeze_iters),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        if warmup_iters + freeze_iters > total_iters:
            raise ValueError(
                f"warmup_iters + freeze_iters ({warmup_iters} + {freeze_iters}) must not exceed "
                f"total_iters ({total_iters})"
            )
        self.base_value = float(base_value)
        self.final_value = float(final_value)
        self.total_iters = total_iters
        freeze = np.zeros(freeze_iters)
        warmup = np.linspace(start_warmup_value, base_value, warmup_iters)
        n_cos = total_iters - warmup_iters - freeze_iters
        steps = np.arange(n_cos)
        cosine = final_value + 0.5 * (base_value - final_value) * (
            1 + np.cos(np.pi * steps / max(n_cos, 1))
        )
        self.schedule = np.concatenate((freeze, warmup, cosine))

    def __len__(self) -> int:
        return self.total_iters

    def __getitem__(self, it: int) -> float:
        """The value at iteration ``it``; ``final_value`` past the end."""
        if it < 0:
            raise IndexError(f"iteration must be >= 0, got {it}")
        if it >= self.total_iters:
            return self.final_value
        return float(self.schedule[it])


def lr_for_batch(base_lr: float, batch_size: int) -> float:
    """Upstream's square-root scaling rule: base_lr * sqrt(batch_size / 1024) (global batch)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return base_lr * math.sqrt(batch_size / REFERENCE_BATCH)


@dataclass(frozen=True)
class ScheduleConfig:
    """Schedule settings (DINOv2 defaults; RAD-DINO's base LR 1e-3); durations in epochs."""

    base_lr: float = 1e-3  # before lr_for_batch scaling
    min_lr: float = 1e-6
    warmup_epochs: float = 10.0
    weight_decay: float = 0.04
    weight_decay_end: float = 0.4
    momentum_teacher: float = 0.992
    final_momentum_teacher: float = 1.0
    warmup_teacher_temp: float = 0.04
    teacher_temp: float = 0.07
    warmup_teacher_temp_epochs: float = 30.0
    freeze_last_layer_epochs: float = 1.0
    scale_lr_with_batch: bool = True

    def __post_init__(self) -> None:
        for name in ("base_lr", "min_lr", "weight_decay", "weight_decay_end"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("warmup_epochs", "warmup_teacher_temp_epochs", "freeze_last_layer_epochs"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("momentum_teacher", "final_momentum_teacher"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("warmup_teacher_temp", "teacher_temp"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class Schedules:
    """All per-iteration schedules of a run; ``at(it)`` gives the values for one iteration."""

    lr: CosineScheduler
    weight_decay: CosineScheduler
    momentum: CosineScheduler
    teacher_temp: CosineScheduler
    last_layer_lr: CosineScheduler
    freeze_last_layer_iters: int
    peak_lr: float

    @classmethod
    def build(
        cls,
        total_iters: int,
        iters_per_epoch: int,
        batch_size: int,
        config: ScheduleConfig | None = None,
    ) -> Schedules:
        """Schedules for ``total_iters`` iterations of global batch ``batch_size``."""
        config = config or ScheduleConfig()
        if iters_per_epoch < 1:
            raise ValueError(f"iters_per_epoch must be >= 1, got {iters_per_epoch}")
        if total_iters < 1:
            raise ValueError(f"total_iters must be >= 1, got {total_iters}")

        def iters(epochs: float, name: str) -> int:
            n = round(epochs * iters_per_epoch)
            if n > total_iters:
                raise ValueError(f"{name} ({epochs} epochs = {n} iters) exceeds total_iters")
            return n

        warmup = iters(config.warmup_epochs, "warmup_epochs")
        freeze = iters(config.freeze_last_layer_epochs, "freeze_last_layer_epochs")
        # The temperature warm-up is its own short schedule (flat afterwards), so it may
        # outlast a short run; no check against total_iters.
        temp_warmup = round(config.warmup_teacher_temp_epochs * iters_per_epoch)
        peak = (
            lr_for_batch(config.base_lr, batch_size)
            if config.scale_lr_with_batch
            else config.base_lr
        )
        lr = CosineScheduler(peak, config.min_lr, total_iters, warmup_iters=warmup)
        last_layer_lr = CosineScheduler(peak, config.min_lr, total_iters, warmup_iters=warmup)
        # As upstream: the LR schedule with its first epoch zeroed (not shifted).
        last_layer_lr.schedule[:freeze] = 0.0
        return cls(
            lr=lr,
            weight_decay=CosineScheduler(config.weight_decay, config.weight_decay_end, total_iters),
            momentum=CosineScheduler(
                config.momentum_teacher, config.final_momentum_teacher, total_iters
            ),
            teacher_temp=CosineScheduler(
                config.teacher_temp,
                config.teacher_temp,
                temp_warmup,
                warmup_iters=temp_warmup,
                start_warmup_value=config.warmup_teacher_temp,
            ),
            last_layer_lr=last_layer_lr,
            freeze_last_layer_iters=freeze,
            peak_lr=peak,
        )

    def at(self, it: int) -> dict[str, float]:
        """Every schedule's value at iteration ``it``."""
        return {
            "lr": self.lr[it],
            "weight_decay": self.weight_decay[it],
            "momentum": self.momentum[it],
            "teacher_temp": self.teacher_temp[it],
            "last_layer_lr": self.last_layer_lr[it],
        }

    def last_layer_frozen(self, it: int) -> bool:
        """True while the last layer's learning rate is held at 0 (the first iterations)."""
        return it < self.freeze_last_layer_iters
