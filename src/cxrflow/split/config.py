"""Typed settings of the split stage: ratios, seed, method, folds."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Final, Literal

from cxrflow.manifest import LABEL_COLUMNS

SplitName = Literal["train", "val", "test"]
SplitMode = Literal["hash", "stratified", "official"]

SPLITS: Final[tuple[str, str, str]] = ("train", "val", "test")
MODES: Final[tuple[str, ...]] = ("hash", "stratified", "official")
RATIO_TOLERANCE: Final[float] = 1e-6


@dataclass(frozen=True)
class SplitConfig:
    """How subjects are assigned to train/val/test; every field is a pipeline parameter."""

    ratios: tuple[float, float, float] = (0.7, 0.15, 0.15)
    seed: str = "cxrflow-split-v1"
    mode: SplitMode = "hash"
    folds: int = 5
    official_column: str = "official_split"
    assigned_in: str = ""  # recorded for new subjects; empty: the subject's ingest_run
    label_columns: tuple[str, ...] = LABEL_COLUMNS

    def __post_init__(self) -> None:
        ratios = tuple(self.ratios)
        if len(ratios) != len(SPLITS):
            raise ValueError(f"ratios must have 3 values (train, val, test), got {self.ratios!r}")
        try:
            values = tuple(float(r) for r in ratios)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"ratios must be numbers, got {self.ratios!r}") from exc
        if not all(math.isfinite(r) and r > 0 for r in values):
            raise ValueError(f"ratios must all be positive, got {self.ratios!r}")
        if abs(sum(values) - 1.0) > RATIO_TOLERANCE:
            raise ValueError(f"ratios must sum to 1 (got {sum(values):.6g}): {self.ratios!r}")
        object.__setattr__(self, "ratios", values)
        if not isinstance(self.seed, str) or not self.seed:
            raise ValueError(f"seed must be a non-empty string, got {self.seed!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if isinstance(self.folds, bool) or not isinstance(self.folds, int) or self.folds < 2:
            raise ValueError(f"folds must be an integer >= 2, got {self.folds!r}")
        if not self.official_column:
            raise ValueError("official_column must be a non-empty column name")
        if not isinstance(self.assigned_in, str):
            raise ValueError(f"assigned_in must be a string, got {self.assigned_in!r}")
        object.__setattr__(self, "label_columns", tuple(self.label_columns))

    def with_(self, **changes: Any) -> SplitConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def ratios_text(self) -> str:
        """The ratios as "train,val,test" text (an MLflow param, a KFP parameter)."""
        return ",".join(f"{r:g}" for r in self.ratios)


def parse_ratios(text: str) -> tuple[float, float, float]:
    """Parse "0.7,0.15,0.15" or "70/15/15" (percentages) into ratios."""
    parts = [p for p in text.replace("/", ",").replace(" ", "").split(",") if p]
    if len(parts) != len(SPLITS):
        raise ValueError(f"ratios must have 3 values (train, val, test), got {text!r}")
    try:
        values = [float(p) for p in parts]
    except ValueError as exc:
        raise ValueError(f"ratios must be numbers, got {text!r}") from exc
    if sum(values) > 1.0 + RATIO_TOLERANCE:  # percentages
        values = [v / 100.0 for v in values]
    return (values[0], values[1], values[2])


DEFAULT: Final[SplitConfig] = SplitConfig()
PAPER_60_20_20: Final[SplitConfig] = SplitConfig(ratios=(0.6, 0.2, 0.2))
SPLIT_80_10_10: Final[SplitConfig] = SplitConfig(ratios=(0.8, 0.1, 0.1))
PRESETS: Final[dict[str, SplitConfig]] = {
    "70/15/15": DEFAULT,
    "60/20/20": PAPER_60_20_20,
    "80/10/10": SPLIT_80_10_10,
}


def preset(name: str, **changes: Any) -> SplitConfig:
    """A named preset ("70/15/15", "60/20/20", "80/10/10"), optionally with changed fields."""
    if name not in PRESETS:
        raise ValueError(f"unknown split preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name].with_(**changes) if changes else PRESETS[name]
