"""The pre-training data: train-split images of a dataset version, in a resumable order.

Every random choice is a function of (seed, step, position): the order of images comes from a
seeded permutation per epoch, each sample's augmentations from its own generator, and the
iBOT masks from the step. A run resumed at step k therefore sees exactly the batches an
uninterrupted run sees, and a data-parallel run sees the same global batch as one process.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler

from cxrflow.dataset import Dataset as DatasetDir  # torch's Dataset is used here too
from cxrflow.ssl.augment import MultiCropAugmentation, to_gray_float


class PretrainDataError(ValueError):
    """The dataset cannot feed pre-training (reason in the message)."""


def sample_seed(seed: int, step: int, position: int) -> int:
    """A 63-bit seed for the augmentations of one sample of one step."""
    digest = hashlib.sha256(f"{seed}:{step}:{position}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def load_image(path: Path) -> torch.Tensor:
    """A (1, H, W) float image in [0, 1] from a 8- or 16-bit grayscale PNG."""
    with Image.open(path) as im:
        return to_gray_float(im)


def train_images(data_dir: Path, split: str = "train", views: tuple[str, ...] = ()) -> pd.DataFrame:
    """The manifest rows pre-training may read: only the given split (and views)."""
    dataset = DatasetDir(data_dir)
    manifest = dataset.manifest()
    if "split" not in manifest.columns:
        raise PretrainDataError(f"{dataset.manifest_path} has no split column: run the split stage")
    rows = manifest[manifest["split"] == split]
    if views:
        rows = rows[rows["view"].isin(views)]
    if rows.empty:
        raise PretrainDataError(f"no {split} images in {data_dir} (views: {views or 'all'})")
    return rows.sort_values("image_id").reset_index(drop=True)


class MultiCropDataset(Dataset):
    """Items are (index, seed) pairs; each returns the multi-crop views of one image."""

    def __init__(self, data_dir: Path, rows: pd.DataFrame, augmentation: MultiCropAugmentation):
        self.paths = [data_dir / p for p in rows["image_path"]]
        self.augmentation = augmentation

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item: tuple[int, int]) -> dict[str, Any]:
        index, seed = item
        generator = torch.Generator().manual_seed(seed)
        return self.augmentation(load_image(self.paths[index]), generator=generator)


def intensity_statistics(paths: list[Path], limit: int = 256) -> tuple[float, float]:
    """Mean and std of pixel intensity over (an evenly spaced subset of) the training images."""
    chosen = (
        paths
        if len(paths) <= limit
        else [paths[i] for i in np.linspace(0, len(paths) - 1, limit).astype(int)]
    )
    total = total_sq = count = 0.0
    for p in chosen:
        x = load_image(p).double()
        total += float(x.sum())
        total_sq += float((x * x).sum())
        count += x.numel()
    mean = total / count
    return float(mean), float(max(total_sq / count - mean * mean, 1e-12) ** 0.5)


class StepSampler(Sampler[list[tuple[int, int]]]):
    """Yields the micro-batches of steps `start_step`..`steps - 1` for one rank.

    Step s reads images perm_e[p B : (p + 1) B] with e, p = divmod(s, steps_per_epoch) and
    perm_e a seeded permutation; the rank takes its contiguous slice of that global batch,
    cut into `accum` micro-batches.
    """

    def __init__(
        self,
        n_images: int,
        global_batch: int,
        *,
        seed: int,
        start_step: int,
        steps: int,
        rank: int = 0,
        world_size: int = 1,
        accum: int = 1,
    ) -> None:
        if global_batch % (world_size * accum):
            raise PretrainDataError(
                f"batch_size {global_batch} is not divisible by world size {world_size} x "
                f"grad_accum_steps {accum}"
            )
        if n_images < global_batch:
            raise PretrainDataError(
                f"the train split holds {n_images} images, fewer than one global batch "
                f"({global_batch}): lower batch_size or add data"
            )
        self.n, self.batch, self.seed = n_images, global_batch, seed
        self.start, self.steps, self.rank, self.world, self.accum = (
            start_step,
            steps,
            rank,
            world_size,
            accum,
        )
        self.steps_per_epoch = n_images // global_batch

    def global_batch_indices(self, step: int) -> list[int]:
        """The dataset indices of step `step`'s global batch."""
        epoch, pos = divmod(step, self.steps_per_epoch)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        perm = torch.randperm(self.n, generator=g)
        return perm[pos * self.batch : (pos + 1) * self.batch].tolist()

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        local = self.batch // self.world
        micro = local // self.accum
        for step in range(self.start, self.steps):
            indices = self.global_batch_indices(step)
            for a in range(self.accum):
                begin = self.rank * local + a * micro
                yield [
                    (indices[p], sample_seed(self.seed, step, p))
                    for p in range(begin, begin + micro)
                ]

    def __len__(self) -> int:
        return max(0, self.steps - self.start) * self.accum
