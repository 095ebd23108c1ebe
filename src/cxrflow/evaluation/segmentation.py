"""Per-image Dice: the long table the fairness analysis and the Dice distributions need."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from cxrflow.heads.metrics import dice

PER_IMAGE_COLUMNS = ("image_id", "decoder", "structure", "dice")
PER_IMAGE_FILE = "segmentation_per_image.parquet"


def per_image_dice(
    probs: np.ndarray,
    masks: np.ndarray,
    structures: Sequence[str],
    image_ids: Sequence[str],
    decoder: str,
    threshold: float = 0.5,
) -> pd.DataFrame:
    """(N, K, H, W) probabilities and masks -> one row per image and structure with a mask.

    As in Table 3, only structures present in the ground truth are scored.
    """
    probs, masks = np.asarray(probs), np.asarray(masks).astype(bool)
    if probs.shape != masks.shape or probs.shape[0] != len(image_ids):
        raise ValueError(
            f"probs {probs.shape}, masks {masks.shape} and {len(image_ids)} image ids disagree"
        )
    if probs.shape[1] != len(structures):
        raise ValueError(f"{probs.shape[1]} channels but {len(structures)} structures")
    rows = [
        (str(image_ids[i]), decoder, name, dice(probs[i, k] > threshold, masks[i, k]))
        for i in range(len(image_ids))
        for k, name in enumerate(structures)
        if masks[i, k].any()
    ]
    return pd.DataFrame(rows, columns=list(PER_IMAGE_COLUMNS))


def image_means(per_image: pd.DataFrame, decoder: str) -> pd.Series:
    """image_id -> mean Dice over the image's structures, for one decoder."""
    part = per_image[per_image["decoder"] == decoder]
    return part.groupby("image_id")["dice"].mean()


def check_per_image(df: pd.DataFrame) -> pd.DataFrame:
    """Validate the columns of a per-image Dice table."""
    missing = [c for c in PER_IMAGE_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"per-image Dice table lacks columns: {', '.join(missing)}")
    return df
