"""Typed settings of the report-generation stage, with the paper's and a tiny CPU preset."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Final, Literal

Precision = Literal["auto", "bf16", "fp32"]
PRESETS: Final[tuple[str, ...]] = ("paper", "tiny")
DEEPSPEED_STAGES: Final[tuple[str, ...]] = ("", "zero2", "zero3")


def _positive(name: str, value: Any, kind: type = int) -> None:
    """Raise unless `value` is a positive number of `kind` (bool refused)."""
    ok = isinstance(value, kind | int) if kind is float else isinstance(value, int)
    if isinstance(value, bool) or not ok or not math.isfinite(value) or value <= 0:
        raise ValueError(f"ReportConfig.{name} must be a positive {kind.__name__}, got {value!r}")


@dataclass(frozen=True)
class ReportConfig:
    """LLaVA fine-tuning, generation and evaluation settings; every field is a pipeline knob.

    Defaults are the paper's (Appendix E.3.3: LLaVA-1.5 hyperparameters, 3 epochs, LR 2e-5,
    cosine with 3% warm-up, global batch 128, frozen encoder, decoding up to 150 tokens).
    """

    preset: str = "paper"
    epochs: float = 3.0
    max_steps: int = -1  # > 0 overrides epochs (the tiny preset counts steps)
    learning_rate: float = 2e-5  # projector and LM alike
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    global_batch_size: int = 128
    per_device_batch_size: int = 32  # paper: 32 per GPU on 4 GPUs
    precision: Precision = "auto"  # auto: bf16 on a GPU that has it, fp32 otherwise
    gradient_checkpointing: bool = True
    deepspeed: str = ""  # "", "zero2", "zero3" (bundled configs) or a path to a JSON config
    max_length: int = 2048  # prompt + image tokens + answer, as LLaVA-1.5's model_max_length
    max_new_tokens: int = 150
    generation_batch_size: int = 8
    precompute_image_features: bool = True
    n_bootstrap: int = 500
    seed: int = 0
    save_steps: int = 500
    # Only when no LM directory is given: a small Llama trained from scratch with a BPE
    # tokenizer learnt on the training reports (demo and tests).
    vocab_size: int = 1000
    lm_hidden_size: int = 256
    lm_layers: int = 2
    lm_heads: int = 4
    cache_images: bool = False  # keep decoded training images in memory (small datasets)
    max_train_samples: int = 0  # 0: all
    max_eval_samples: int = 0  # 0: all
    sample_table_rows: int = 20

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"ReportConfig.preset must be one of {PRESETS}, got {self.preset!r}")
        _positive("epochs", self.epochs, float)
        _positive("learning_rate", self.learning_rate, float)
        for name in (
            "global_batch_size",
            "per_device_batch_size",
            "max_length",
            "max_new_tokens",
            "generation_batch_size",
            "n_bootstrap",
            "save_steps",
            "vocab_size",
            "lm_hidden_size",
            "lm_layers",
            "lm_heads",
        ):
            _positive(name, getattr(self, name))
        if isinstance(self.max_steps, bool) or not isinstance(self.max_steps, int):
            raise ValueError(f"ReportConfig.max_steps must be an int, got {self.max_steps!r}")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError(f"ReportConfig.max_steps must be -1 or > 0, got {self.max_steps}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(
                f"ReportConfig.warmup_ratio must be in [0, 1), got {self.warmup_ratio}"
            )
        if self.weight_decay < 0:
            raise ValueError(f"ReportConfig.weight_decay must be >= 0, got {self.weight_decay}")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(
                f"ReportConfig.precision must be auto/bf16/fp32, got {self.precision!r}"
            )
        if self.global_batch_size % self.per_device_batch_size:
            raise ValueError(
                f"ReportConfig.global_batch_size ({self.global_batch_size}) must be a multiple "
                f"of per_device_batch_size ({self.per_device_batch_size})"
            )
        if self.lm_hidden_size % self.lm_heads:
            raise ValueError("ReportConfig.lm_hidden_size must be divisible by lm_heads")
        for name in ("max_train_samples", "max_eval_samples", "sample_table_rows", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"ReportConfig.{name} must be an int >= 0, got {value!r}")
        if not isinstance(self.deepspeed, str):
            raise ValueError(f"ReportConfig.deepspeed must be a string, got {self.deepspeed!r}")

    def accumulation_steps(self, world_size: int = 1) -> int:
        """Gradient accumulation that makes the global batch from per-device batches."""
        per_step = self.per_device_batch_size * world_size
        if self.global_batch_size % per_step:
            raise ValueError(
                f"global batch {self.global_batch_size} is not a multiple of "
                f"{self.per_device_batch_size} x {world_size} devices"
            )
        return self.global_batch_size // per_step

    def with_(self, **changes: Any) -> ReportConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, e.g. for MLflow params."""
        return asdict(self)

    @classmethod
    def named(cls, preset: str, **overrides: Any) -> ReportConfig:
        """The `paper` or `tiny` preset, with fields overridden."""
        if preset == "paper":
            return cls(**overrides)
        if preset == "tiny":
            return cls(**{**TINY, **overrides})
        raise ValueError(f"unknown report preset {preset!r}; known: {PRESETS}")


# CPU preset for the phantom: a few hundred optimiser steps of a small Llama. The LR is
# higher than the paper's because the LM starts from random weights; precision fp32 on CPU.
# Steps: on 60-100 phantom subjects, 60-80 steps (4-5 epochs) leave greedy decoding on one
# report for every image (finding F1 0, like the most frequent report); 300 steps do not.
# Vocabulary: byte-level BPE starts from 256 bytes, so 400 left ~140 merges and phantom
# Findings took 72-80 tokens on average (p90 ~115, above max_new_tokens, so generations were
# cut); at 1000 (the corpus saturates near 860) they take ~35 tokens (max 71), the prompt 46.
TINY: Final[dict[str, Any]] = {
    "preset": "tiny",
    "max_steps": 300,
    "learning_rate": 3e-3,
    "global_batch_size": 8,
    "per_device_batch_size": 8,
    "precision": "fp32",
    "gradient_checkpointing": False,
    "cache_images": True,
    "max_length": 512,
    "max_new_tokens": 80,
    "generation_batch_size": 16,
    "n_bootstrap": 200,
    "save_steps": 100,
    "vocab_size": 1000,
    "lm_hidden_size": 128,
    "lm_layers": 2,
    "lm_heads": 4,
}
