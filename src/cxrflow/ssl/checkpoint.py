"""Atomic checkpoints with everything an exact resume needs.

A checkpoint holds the student, teacher, optimiser, loss centres, the step (which fixes the
data position and every schedule), the intensity statistics and the RNG states of Python,
NumPy and torch (CPU and CUDA: stochastic depth draws from them). It is written to a
temporary file and renamed, so a run killed mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

LATEST = "latest.pt"


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write `payload` (+ RNG states) to `path` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({**payload, "rng": rng_state()}, tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint` (trusted: our own files)."""
    return torch.load(path, map_location="cpu", weights_only=False)


def latest_checkpoint(directory: Path) -> Path | None:
    path = directory / LATEST
    return path if path.is_file() else None
