"""Images (and masks) of one manifest split as encoder inputs.

An image becomes the encoder's square input in four steps: 16-bit (or 8-bit) PNG -> float in
[0, 1]; geometric fit to `image_size` (`crop`: resize the shortest edge and centre-crop, as the
encoder's image processor does; `pad`: resize the longest edge and pad with black, keeping the
whole chest); optional augmentation on [0, 1] pixels; normalisation with the encoder's
mean/std and replication to three channels. Masks take the same geometry with nearest
neighbour, so a pixel's label never blends.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import Dataset

from cxrflow.dataset import Dataset as DatasetDir  # torch's Dataset is used here too
from cxrflow.findings import MASK_STRUCTURES
from cxrflow.heads.config import FitMode, HeadsConfigError
from cxrflow.models import EncoderPreprocessing
from cxrflow.models.preprocessing import (  # the one pixel pipeline, as served
    fit_geometry,
    normalise,
    read_image,
)

SPLIT_COLUMN = "split"
# (image [1, S, S] in [0, 1], masks [K, S, S] bool or None) -> the same, augmented
Augment = Callable[[torch.Tensor, torch.Tensor | None], tuple[torch.Tensor, torch.Tensor | None]]


class EmptySplitError(HeadsConfigError):
    """A split the stage needs has no images."""


def load_manifest(data_dir: Path) -> pd.DataFrame:
    """The dataset's manifest, checked to carry the split column."""
    dataset = DatasetDir(data_dir)
    df = dataset.manifest()
    if SPLIT_COLUMN not in df.columns:
        raise HeadsConfigError(
            f"{dataset.manifest_path} has no '{SPLIT_COLUMN}' column: run the split stage first"
        )
    return df


def split_frame(df: pd.DataFrame, split: str | Sequence[str], *, need: str = "") -> pd.DataFrame:
    """Rows of one split (or several), in image_id order; empty is an `EmptySplitError`."""
    names = [split] if isinstance(split, str) else list(split)
    out = df[df[SPLIT_COLUMN].isin(names)].sort_values("image_id", kind="stable")
    if out.empty:
        counts = df[SPLIT_COLUMN].value_counts().to_dict()
        raise EmptySplitError(
            f"split {'+'.join(names)} has no images{' ' + need if need else ''} "
            f"(split sizes: {counts or 'none'}); re-split with more subjects or other ratios"
        )
    return out.reset_index(drop=True)


def read_png(path: Path) -> np.ndarray:
    """A grey PNG as float32 in [0, 1] (8- or 16-bit), as every encoder consumer reads it."""
    return read_image(path)


def read_mask(path: Path, structures: Sequence[str]) -> np.ndarray:
    """Bool (K, H, W) masks of `structures` from a packed 16-bit PNG (bit i = structure i)."""
    with Image.open(path) as img:
        packed = np.asarray(img).astype(np.uint16)
    bits = [MASK_STRUCTURES.index(s) for s in structures]
    return np.stack([((packed >> b) & 1).astype(bool) for b in bits])


class ImageDataset(Dataset):
    """Encoder inputs of a manifest frame: `{"pixels", "index"[, "masks"]}` per row."""

    def __init__(
        self,
        data_dir: Path,
        frame: pd.DataFrame,
        prep: EncoderPreprocessing,
        *,
        fit: FitMode = "crop",
        structures: Sequence[str] = (),
        augment: Augment | None = None,
    ) -> None:
        if frame.empty:
            raise EmptySplitError("no images to load (the frame is empty)")
        self.data_dir = Path(data_dir)
        self.frame = frame.reset_index(drop=True)
        self.prep = prep
        self.fit = fit
        self.structures = tuple(structures)
        self.augment = augment
        if self.structures:
            missing = int(self.frame["mask_path"].isna().sum())
            if missing:
                raise HeadsConfigError(
                    f"{missing} of {len(self.frame)} images have no mask; "
                    "keep only rows with a mask_path for segmentation"
                )

    def __len__(self) -> int:
        return len(self.frame)

    def image(self, i: int) -> torch.Tensor:
        """Row i as fitted [0, 1] grey pixels (1, S, S), before augmentation."""
        arr = read_png(self.data_dir / self.frame.at[i, "image_path"])
        return fit_geometry(torch.from_numpy(arr)[None], self.prep.image_size, self.fit)

    def masks(self, i: int) -> torch.Tensor:
        """Row i's masks (K, S, S) bool, fitted like the image."""
        m = read_mask(self.data_dir / self.frame.at[i, "mask_path"], self.structures)
        t = torch.from_numpy(m)
        return fit_geometry(t, self.prep.image_size, self.fit, nearest=True) > 0.5

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        x = self.image(i)
        m = self.masks(i) if self.structures else None
        if self.augment is not None:
            x, m = self.augment(x, m)
        item = {"pixels": normalise(x, self.prep), "index": torch.tensor(i)}
        if m is not None:
            item["masks"] = m.float()
        return item
