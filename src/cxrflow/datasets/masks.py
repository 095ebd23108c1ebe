"""Masks described by the adapters, decoded to the project's packed 16-bit PNGs on request.

An adapter never decodes masks while loading: it puts a JSON *mask spec* in the extra column
`mask_spec` (null for rows without masks). `write_masks(df, root, out_dir)` rasterises them
into `out_dir/masks/<source_dataset>/<image id>.png`, a 16-bit PNG in which bit i is
`MASK_STRUCTURES[i]` (the format the ingest stage and the phantom use), and returns the frame
with `mask_path` set (relative to `out_dir`).

Spec layout::

    {"shape": [height, width],            # optional; else width/height, else the image header
     "structures": {
        "<structure>": [                  # union of its parts
            {"rle": "...", "style": "siim" | "standard"},
            {"polygon": [[x, y], ...]},   # pixel coordinates of the image
            {"box": [x1, y1, x2, y2], "within": "<other structure>"},
        ], ...}}

Structures that are not in `MASK_STRUCTURES` (e.g. CANDID-PTX `rib_fracture`) are kept in the
spec so that nothing is lost, but have no bit and are not written. "left"/"right" are the
patient's sides, as the source datasets define them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from cxrflow.datasets.common import DatasetFormatError
from cxrflow.datasets.rle import rle_decode
from cxrflow.findings import MASK_STRUCTURES

MASK_SPEC_COLUMN = "mask_spec"
BIT: dict[str, int] = {name: i for i, name in enumerate(MASK_STRUCTURES)}


def mask_spec(
    structures: dict[str, list[dict[str, Any]]], shape: tuple[int, int] | None = None
) -> str | None:
    """The JSON string of a spec; None when it names no structure.

    A structure with an empty list of parts is annotated and empty (an all-zero mask), which is
    not the same as a structure that is absent from the spec (not annotated).
    """
    if not structures:
        return None
    spec: dict[str, Any] = {"structures": structures}
    if shape is not None:
        spec["shape"] = [int(shape[0]), int(shape[1])]
    return json.dumps(spec, separators=(",", ":"), sort_keys=True)


def rasterize(spec: dict[str, Any], shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """Boolean (height, width) masks of every structure in the spec."""
    h, w = shape
    structures: dict[str, list[dict[str, Any]]] = spec.get("structures", {})
    out: dict[str, np.ndarray] = {}
    # parts restricted to another structure come after the structures they depend on
    plain = [n for n, parts in structures.items() if not any("within" in p for p in parts)]
    dependent = [n for n in structures if n not in plain]
    for name in plain + dependent:
        mask = np.zeros((h, w), dtype=bool)
        for part in structures[name]:
            mask |= _part(part, (h, w), out, name)
        out[name] = mask
    return out


def _part(
    part: dict[str, Any], shape: tuple[int, int], done: dict[str, np.ndarray], name: str
) -> np.ndarray:
    h, w = shape
    if "rle" in part:
        return rle_decode(part["rle"], h, w, part.get("style", "siim"))
    if "polygon" in part:
        points = [(float(x), float(y)) for x, y in part["polygon"]]
        if len(points) < 3:
            return np.zeros(shape, dtype=bool)
        img = Image.new("L", (w, h), 0)
        ImageDraw.Draw(img).polygon(points, fill=1, outline=1)
        return np.asarray(img, dtype=bool)
    if "box" in part:
        x1, y1, x2, y2 = (float(v) for v in part["box"])
        mask = np.zeros(shape, dtype=bool)
        r0, r1 = max(0, int(np.floor(y1))), min(h, int(np.ceil(y2)))
        c0, c1 = max(0, int(np.floor(x1))), min(w, int(np.ceil(x2)))
        mask[r0:r1, c0:c1] = True
        within = part.get("within")
        if within is not None:
            if within not in done:
                raise DatasetFormatError(f"mask part of {name!r} is within unknown {within!r}")
            mask &= done[within]
        return mask
    raise DatasetFormatError(f"mask part of {name!r} has no rle, polygon or box: {part}")


def pack(masks: dict[str, np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Pack structure masks into one uint16 image (bit i = MASK_STRUCTURES[i])."""
    out = np.zeros(shape, dtype=np.uint16)
    for name, mask in masks.items():
        if name in BIT:
            out |= mask.astype(np.uint16) << BIT[name]
    return out


def unpack(packed: np.ndarray) -> dict[str, np.ndarray]:
    """The inverse of `pack`, for every structure."""
    arr = np.asarray(packed).astype(np.uint16)
    return {name: (arr >> bit) & 1 == 1 for name, bit in BIT.items()}


def image_shape(path: Path) -> tuple[int, int]:
    """(height, width) from an image header, without decoding the pixels."""
    if not path.is_file():
        raise FileNotFoundError(f"image not found (needed for the mask size): {path}")
    if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"):
        with Image.open(path) as img:
            return img.height, img.width
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return int(ds.Rows), int(ds.Columns)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def spec_shape(spec: dict[str, Any]) -> tuple[int, int] | None:
    """The (height, width) a spec was drawn on, when it says."""
    if "shape" not in spec:
        return None
    return int(spec["shape"][0]), int(spec["shape"][1])


def packed_mask(spec: str | dict[str, Any], image_shape: tuple[int, int]) -> np.ndarray:
    """The packed uint16 mask of a spec (its JSON or parsed), at the spec's shape (else
    `image_shape`, the source image's (height, width))."""
    if isinstance(spec, str):
        spec = json.loads(spec)
    shape = spec_shape(spec) or image_shape
    return pack(rasterize(spec, shape), shape)


def write_masks(df: pd.DataFrame, root: Path, out_dir: Path) -> pd.DataFrame:
    """Decode every row's `mask_spec` to a packed PNG under `out_dir`; set `mask_path`.

    The mask size is the spec's `shape`, else the row's `height`/`width` when nonzero, else the
    size read from the header of `root / image_path`.
    """
    out = df.copy()
    if MASK_SPEC_COLUMN not in out.columns:
        return out
    paths: list[object] = list(out["mask_path"]) if "mask_path" in out else [None] * len(out)
    for i, (_, row) in enumerate(out.iterrows()):
        raw = row[MASK_SPEC_COLUMN]
        if not isinstance(raw, str) or not raw:
            continue
        spec = json.loads(raw)
        shape = spec_shape(spec)
        height, width = int(row.get("height", 0) or 0), int(row.get("width", 0) or 0)
        if shape is None and height > 0 and width > 0:
            shape = (height, width)
        packed = packed_mask(spec, shape or image_shape(Path(root) / str(row["image_path"])))
        _, _, local = str(row["image_id"]).partition(":")
        rel = (
            Path("masks")
            / _safe(str(row["source_dataset"]))
            / f"{_safe(local or row['image_id'])}.png"
        )
        target = Path(out_dir) / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(packed).save(target, format="PNG")
        paths[i] = rel.as_posix()
    out["mask_path"] = pd.Series(paths, index=out.index, dtype=object)
    return out
