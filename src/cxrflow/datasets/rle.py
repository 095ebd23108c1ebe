"""Run-length encodings of binary masks, in the two published styles the adapters meet.

- `siim` — the SIIM-ACR Pneumothorax challenge's encoding (its `mask_functions.py`), used by
  CANDID-PTX: pairs of (offset, length) where each offset counts pixels from the *end of the
  previous run* (the first from pixel 0), over the image flattened **column by column**
  (Fortran order: pixel (row y, column x) has flat index x * height + y). `-1` (or blank) is
  an empty mask.
- `standard` — the Kaggle/COCO-style encoding used by CheXmask: pairs of (start, length) with
  **1-based absolute** starts over the image flattened **row by row** (C order).

Both decoders return a `bool` array of shape (height, width).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

RleStyle = Literal["siim", "standard"]
RLE_STYLES: tuple[str, ...] = ("siim", "standard")


class RleError(ValueError):
    """The string is not a valid run-length encoding for the given size."""


def is_empty_rle(rle: object) -> bool:
    if rle is None or (isinstance(rle, float) and np.isnan(rle)):
        return True
    text = str(rle).strip()
    return text in ("", "-1")


def rle_decode(rle: object, height: int, width: int, style: RleStyle = "siim") -> np.ndarray:
    """Decode one run-length string into a (height, width) boolean mask."""
    if style not in RLE_STYLES:
        raise ValueError(f"unknown RLE style {style!r}; known: {', '.join(RLE_STYLES)}")
    if height <= 0 or width <= 0:
        raise RleError(f"cannot decode a mask of size {height}x{width}")
    flat = np.zeros(height * width, dtype=bool)
    if is_empty_rle(rle):
        return flat.reshape(height, width)
    try:
        numbers = np.array([int(x) for x in str(rle).split()], dtype=np.int64)
    except ValueError as exc:
        raise RleError(f"run-length string has a non-integer: {exc}") from exc
    if len(numbers) % 2:
        raise RleError("run-length string has an odd number of values")
    firsts, lengths = numbers[0::2], numbers[1::2]
    if (lengths < 0).any() or (firsts < 0).any():
        raise RleError("run-length string has a negative value")
    if style == "siim":
        # start_i = sum of all earlier offsets and lengths + offset_i
        ends_before = np.concatenate([[0], np.cumsum(firsts + lengths)[:-1]])
        starts = ends_before + firsts
    else:
        if (firsts < 1).any():
            raise RleError("standard run-length starts are 1-based")
        starts = firsts - 1
    if len(starts) and (starts + lengths).max() > flat.size:
        raise RleError(f"run-length string runs past the end of a {height}x{width} mask")
    for start, length in zip(starts, lengths, strict=True):
        flat[start : start + length] = True
    if style == "siim":
        return flat.reshape(width, height).T
    return flat.reshape(height, width)


def rle_encode(mask: np.ndarray, style: RleStyle = "siim") -> str:
    """Encode a 2-D mask (nonzero = inside); an empty mask gives `-1` (siim) or "" (standard)."""
    if style not in RLE_STYLES:
        raise ValueError(f"unknown RLE style {style!r}; known: {', '.join(RLE_STYLES)}")
    m = np.asarray(mask).astype(bool)
    if m.ndim != 2:
        raise ValueError("rle_encode needs a 2-D mask")
    flat = m.T.reshape(-1) if style == "siim" else m.reshape(-1)
    padded = np.concatenate([[False], flat, [False]])
    changes = np.flatnonzero(padded[1:] != padded[:-1])
    starts, ends = changes[0::2], changes[1::2]
    lengths = ends - starts
    if len(starts) == 0:
        return "-1" if style == "siim" else ""
    if style == "siim":
        prev_ends = np.concatenate([[0], ends[:-1]])
        firsts = starts - prev_ends
    else:
        firsts = starts + 1
    return " ".join(f"{a} {b}" for a, b in zip(firsts, lengths, strict=True))
