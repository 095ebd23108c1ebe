"""Frozen-encoder features, batched, with an on-disk cache shared by seeds, folds and heads.

A cache entry is keyed by (encoder digest, data digest, image size, fit, layers): the same
encoder on the same data version is encoded once per stage run and reused by every seed and
fold of every head; a new encoder or data version is a new key, never a stale hit.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from cxrflow.heads.data import ImageDataset
from cxrflow.models import DinoViT

log = logging.getLogger(__name__)

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".json")


def file_digest(paths: Sequence[Path]) -> str:
    """sha256 over the names and bytes of `paths` (sorted by name)."""
    h = hashlib.sha256()
    for path in sorted(paths, key=lambda p: p.name):
        h.update(path.name.encode() + b"\0")
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def encoder_digest(encoder_dir: Path) -> str:
    """Digest of an HF encoder directory's weights and configs."""
    files = [p for p in Path(encoder_dir).iterdir() if p.suffix in _WEIGHT_SUFFIXES]
    if not files:
        raise FileNotFoundError(f"no weights or configs in {encoder_dir}")
    return file_digest(files)


def default_layers(depth: int) -> tuple[int, ...]:
    """Four evenly spaced blocks ending with the last (ViT-B: 2, 5, 8, 11, as DINOv2)."""
    if depth < 4:
        raise ValueError(f"the UPerNet decoder needs an encoder with >= 4 blocks, got {depth}")
    return tuple(depth * (i + 1) // 4 - 1 for i in range(4))


def encode_batch(
    encoder: DinoViT, pixels: torch.Tensor, layers: Sequence[int] = ()
) -> dict[str, torch.Tensor]:
    """CLS and mean-patch tokens (B, D) of a batch; with `layers`, maps (B, L, D, h, w).

    One pass through the blocks: the maps are what `get_intermediate_layers(x, layers,
    reshape=True)` returns (final norm applied), the tokens what `forward_features` does.
    """
    h, w = encoder.patch_grid(tuple(pixels.shape[-2:]))
    x = encoder.prepare_tokens(pixels)
    r = encoder.num_prefix_tokens
    maps: dict[int, torch.Tensor] = {}
    for i, block in enumerate(encoder.blocks):
        x = block(x)
        if i in layers:
            out = encoder.norm(x)[:, r:]
            maps[i] = out.reshape(len(x), h, w, -1).permute(0, 3, 1, 2)
    x = encoder.norm(x)
    result = {"cls": x[:, 0], "mean_patch": x[:, r:].mean(dim=1)}
    if layers:
        result["layers"] = torch.stack([maps[i] for i in layers], dim=1).contiguous()
    return result


def select(features: dict[str, torch.Tensor], kind: str) -> torch.Tensor:
    """The probe input of a feature kind: `cls`, `mean_patch` or `cls+mean_patch`."""
    if kind == "cls+mean_patch":
        return torch.cat([features["cls"], features["mean_patch"]], dim=1)
    return features[kind]


@torch.inference_mode()
def extract_features(
    encoder: DinoViT,
    dataset: ImageDataset,
    *,
    batch_size: int = 32,
    layers: Sequence[int] = (),
    device: str = "cpu",
) -> dict[str, torch.Tensor]:
    """Features of every row of `dataset`, in its order (fp32, on the CPU)."""
    encoder = encoder.eval().to(device)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    parts: dict[str, list[torch.Tensor]] = {}
    for batch in loader:
        out = encode_batch(encoder, batch["pixels"].to(device), layers)
        for k, v in out.items():
            parts.setdefault(k, []).append(v.float().cpu())
    return {k: torch.cat(v) for k, v in parts.items()}


class FeatureCache:
    """Features on disk under `root`, one file a key, indexed by image_id."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @staticmethod
    def key(
        encoder_digest: str,
        data_digest: str,
        image_size: int,
        fit: str,
        layers: Sequence[int] = (),
    ) -> str:
        """The entry name for one (encoder, data, geometry, layers) combination."""
        text = f"{encoder_digest}|{data_digest}|{image_size}|{fit}|{','.join(map(str, layers))}"
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def path(self, key: str) -> Path:
        return self.root / f"{key}.pt"

    def get(
        self,
        key: str,
        encoder: DinoViT,
        dataset: ImageDataset,
        *,
        batch_size: int = 32,
        layers: Sequence[int] = (),
        device: str = "cpu",
    ) -> dict[str, torch.Tensor]:
        """Features of `dataset`'s rows: from the cache where present, else computed and added."""
        ids = dataset.frame["image_id"].astype(str).tolist()
        path = self.path(key)
        stored: dict[str, object] = {}
        if path.is_file():
            stored = torch.load(path, weights_only=True)
        known = {image_id: i for i, image_id in enumerate(stored.get("image_ids", []))}
        missing = [i for i, image_id in enumerate(ids) if image_id not in known]
        if missing:
            log.info("encoding %d of %d images (cache %s)", len(missing), len(ids), key[:8])
            sub = ImageDataset(
                dataset.data_dir, dataset.frame.iloc[missing], dataset.prep, fit=dataset.fit
            )
            new = extract_features(
                encoder, sub, batch_size=batch_size, layers=layers, device=device
            )
            old_ids = list(stored.get("image_ids", []))
            merged = {k: torch.cat([stored[k], v]) if k in stored else v for k, v in new.items()}
            stored = {"image_ids": old_ids + [ids[i] for i in missing], **merged}
            known = {image_id: i for i, image_id in enumerate(stored["image_ids"])}
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            torch.save(stored, tmp)
            tmp.replace(path)
        else:
            log.info("feature cache hit for %d images (%s)", len(ids), key[:8])
        index = torch.tensor([known[i] for i in ids], dtype=torch.long)
        return {k: v[index] for k, v in stored.items() if k != "image_ids"}
