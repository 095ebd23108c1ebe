"""VinDr-RibCXR (rib segmentation, 245 images) to the manifest, with `ribs` masks.

Files read under `root` (found anywhere below it): `Vindr_RibCXR_train_mask.json` and
`Vindr_RibCXR_val_mask.json`, the published annotation layout — a pandas column-oriented JSON:

    {"img": {"0": "data/train/img/VinDr_RibCXR_train_000.png", ...},
     "R1":  {"0": [{"x": 512.3, "y": 201.7}, ...] | "None", ...},
     ... "R10", "L1" ... "L10"}

one polygon of points per rib label (R1-R10, L1-L10; "None" where the rib is not annotated).
`image_path` is the `img` value as given (relative to the dataset root; a leading `data/` is
kept). Official split: train (196 images) / val (49; the RAD-DINO paper uses it as its test).

Masks: every rib polygon goes into the `ribs` structure (the union of the 20 ribs; the single
rib labels with a polygon are listed in the extra column `ribs_annotated`, e.g. "L1;...;R10";
a per-rib task can read the polygons from the JSON). Decode with
`cxrflow.datasets.masks.write_masks`; the size is read from the image header.
Labels: none annotated (all null).

No patient ids are published: each image is its own subject (`vindr_rib:<file stem>`). The
images are thought to come from the VinDr-CXR collection but cannot be linked to it.

Licence: VinDr-RibCXR is distributed by VinBigData for research under the terms of its
release (registration); check the current terms before use.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

import pandas as pd

from cxrflow.datasets.common import DatasetFormatError, finalize, join_names
from cxrflow.datasets.masks import MASK_SPEC_COLUMN, mask_spec

NAME = "vindr_ribcxr"
NAMESPACE = "vindr_rib"
FILES = {"train": "Vindr_RibCXR_train_mask.json", "val": "Vindr_RibCXR_val_mask.json"}
RIBS = tuple([f"R{i}" for i in range(1, 11)] + [f"L{i}" for i in range(1, 11)])


def _find(root: Path, name: str) -> Path | None:
    direct = root / name
    if direct.is_file():
        return direct
    return next(iter(sorted(root.rglob(name))), None)


def _polygon(value: object, where: str) -> list[list[float]] | None:
    if value is None or value == "None" or (isinstance(value, float) and value != value):
        return None
    if not isinstance(value, list):
        raise DatasetFormatError(f"{where}: a rib is not a list of points")
    try:
        return [[float(p["x"]), float(p["y"])] for p in value]
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetFormatError(f"{where}: rib points must be {{'x': .., 'y': ..}}") from exc


def load_vindr_ribcxr(root: Path) -> pd.DataFrame:
    root = Path(root)
    rows: list[dict[str, object]] = []
    for split, file in FILES.items():
        path = _find(root, file)
        if path is None:
            raise FileNotFoundError(f"VinDr-RibCXR annotation {file} not found under {root}")
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or "img" not in data:
            raise DatasetFormatError(f"{path.name} ({path}) has no 'img' key")
        missing = [r for r in RIBS if r not in data]
        if missing:
            raise DatasetFormatError(
                f"{path.name} ({path}) is missing rib keys: {', '.join(missing)}"
            )
        for key, rel in data["img"].items():
            rel_path = PurePosixPath(str(rel).replace("\\", "/"))
            polygons = {}
            for rib in RIBS:
                poly = _polygon(data[rib].get(key), f"{path.name} {rib}[{key}]")
                if poly is not None:
                    polygons[rib] = poly
            stem = rel_path.stem
            rows.append(
                {
                    "image_id": f"{NAMESPACE}:{stem}",
                    "subject_id": f"{NAMESPACE}:{stem}",
                    "study_id": f"{NAMESPACE}:{stem}",
                    "image_path": rel_path.as_posix(),
                    "official_split": split,
                    "ribs_annotated": join_names(polygons),
                    MASK_SPEC_COLUMN: mask_spec(
                        {"ribs": [{"polygon": polygons[r]} for r in RIBS if r in polygons]}
                    ),
                }
            )
    return finalize(pd.DataFrame(rows), NAME, extra_columns=("ribs_annotated", MASK_SPEC_COLUMN))
