"""Reading weight files (safetensors, torch pickles) with errors that name the file."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

TORCH_SUFFIXES = (".pth", ".pt", ".bin")
WEIGHT_SUFFIXES = (".safetensors", *TORCH_SUFFIXES)
# Wrappers some tools put around a state dict (timm and DINOv2 training checkpoints).
_WRAPPERS = ("state_dict", "model")


class CheckpointFormatError(ValueError):
    """A file or directory is not a checkpoint of a kind we can import."""


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a `.safetensors` or torch-pickle (`.pth`/`.pt`/`.bin`) file, on the CPU."""
    if path.suffix not in WEIGHT_SUFFIXES:
        raise CheckpointFormatError(
            f"{path}: unknown weight file type {path.suffix!r} (expected one of {WEIGHT_SUFFIXES})"
        )
    try:
        if path.suffix == ".safetensors":
            obj: Any = load_file(path, device="cpu")
        else:
            # weights_only: a checkpoint from elsewhere must not run code when unpickled
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, not this format, or a pickle with code in it
        raise CheckpointFormatError(
            f"{path}: cannot be read as a {path.suffix} state dict "
            f"(truncated, or not a tensor checkpoint): {type(err).__name__}: {err}"
        ) from err
    return _tensor_dict(obj, path)


def _tensor_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The flat {name: tensor} mapping in `obj`, unwrapping {"model": ...}/{"state_dict": ...}."""
    if isinstance(obj, Mapping):
        for wrapper in _WRAPPERS:
            inner = obj.get(wrapper)
            if isinstance(inner, Mapping) and not any(torch.is_tensor(v) for v in obj.values()):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointFormatError(
            f"{path}: expected a state dict (a mapping of names to tensors), "
            f"got {type(obj).__name__}"
        )
    bad = [str(k) for k, v in obj.items() if not (isinstance(k, str) and torch.is_tensor(v))]
    if bad:
        raise CheckpointFormatError(
            f"{path}: expected a state dict of tensors; non-tensor entries: {', '.join(bad[:5])}"
        )
    return dict(obj)


def sha256_of(files: Iterable[Path]) -> str:
    """Hex SHA-256 of the files' bytes, concatenated in the given order (one file: its hash)."""
    digest = hashlib.sha256()
    for file in files:
        with file.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def hf_weight_files(directory: Path) -> list[Path]:
    """The weight files transformers (or timm) reads in a hub-style directory, sorted by name.

    Safetensors when present (`model.safetensors`, `model-0000i-of-0000n.safetensors`), else
    pickles (`pytorch_model*.bin`); other files (e.g. a DINO head beside the encoder) are not
    weights of the encoder.
    """
    for pattern in ("model*.safetensors", "pytorch_model*.bin"):
        files = sorted(p for p in directory.glob(pattern) if p.is_file())
        if files:
            return files
    return []
