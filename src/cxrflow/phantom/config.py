"""Typed configuration and summary of one phantom generation run."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class PhantomConfig:
    """Parameters of `generate_phantom`; validated on construction."""

    out_dir: Path
    subjects: int
    seed: int = 0
    min_side: int = 384
    max_side: int = 896
    include_faulty: bool = True
    workers: int = 1
    progress: bool = True

    def __post_init__(self) -> None:
        if self.subjects < 1:
            raise ValueError(f"subjects must be at least 1 (got {self.subjects})")
        if self.min_side < 64:
            raise ValueError(f"min_side must be at least 64 (got {self.min_side})")
        if self.max_side < self.min_side:
            raise ValueError(f"max_side ({self.max_side}) must be >= min_side ({self.min_side})")
        if self.max_side > 4096:
            raise ValueError(f"max_side must be at most 4096 (got {self.max_side})")
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1 (got {self.workers})")


@dataclass(frozen=True)
class PhantomSummary:
    """What a run wrote: counts and the ground-truth path."""

    out_dir: Path
    n_subjects: int
    n_studies: int
    n_images: int
    n_faulty: int
    ground_truth_path: Path

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (paths as strings)."""
        d = asdict(self)
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}
