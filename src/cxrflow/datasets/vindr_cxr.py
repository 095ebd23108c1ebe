"""VinDr-CXR (PhysioNet 1.0.0) to the manifest.

Files read under `root`:

- `annotations/image_labels_train.csv` (or at the root): `image_id`, `rad_id`, then one 0/1
  column per label (28 in the release: `Aortic enlargement`, `Atelectasis`, ... `Lung Opacity`,
  `Pleural effusion`, `Pleural thickening`, `Pneumothorax`, `Pulmonary fibrosis`,
  `Rib fracture`, `Tuberculosis`, ..., `No finding`). Three radiologists label each training
  image (three rows).
- `annotations/image_labels_test.csv` (optional): the test set's consensus labels, one row an
  image (`rad_id` optional).
- `annotations/annotations_train.csv` / `annotations_test.csv` (optional): `image_id`,
  `rad_id`, `class_name`, `x_min`, `y_min`, `x_max`, `y_max` — kept as JSON in the extra
  column `boxes` (a list of {class, rad_id, x_min, y_min, x_max, y_max}).

Required label columns: the nine mapped ones (`MAPPED`); every other column except
`image_id`/`rad_id` is treated as a label and, when positive, goes to `labels_other`.
chest_tube is not annotated (null).

Rater rule (train): a label is positive when *any* radiologist marked it (`vote="any"`, the
default, as in most VinDr-CXR classification work); `vote="majority"` needs more than half of
the image's raters. The test rows are already a consensus; the same rule applied to one row
is the identity.

Images: `train/<image_id>.dicom`, `test/<image_id>.dicom`. VinDr-CXR publishes no patient
ids: **each image is its own subject** (`vindr_cxr:<image_id>` for subject, study and image).
View: not in the metadata (UNKNOWN). Official split: train/test as published.

Licence: PhysioNet Credentialed Health Data License 1.5.0 (credentialed access, DUA).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import pandas as pd

from cxrflow.datasets.common import (
    DatasetFormatError,
    finalize,
    join_flags,
    read_csv_checked,
)
from cxrflow.findings import label_column

NAME = "vindr_cxr"
NAMESPACE = "vindr_cxr"
LABEL_TO_FINDING: dict[str, str] = {
    "Lung Opacity": "lung_opacity",
    "Cardiomegaly": "cardiomegaly",
    "Pleural thickening": "pleural_thickening",
    "Aortic enlargement": "aortic_enlargement",
    "Pulmonary fibrosis": "pulmonary_fibrosis",
    "Tuberculosis": "tuberculosis",
    "Pleural effusion": "pleural_effusion",
    "Pneumothorax": "pneumothorax",
    "Rib fracture": "rib_fracture",
}
MAPPED = tuple(LABEL_TO_FINDING)
BOX_COLUMNS = ["image_id", "class_name", "x_min", "y_min", "x_max", "y_max"]
EXTRAS = ("boxes",)
Vote = Literal["any", "majority"]


def _find(root: Path, name: str) -> Path | None:
    for candidate in (root / "annotations" / name, root / name):
        if candidate.is_file():
            return candidate
    return None


def _votes(df: pd.DataFrame, label_cols: list[str], vote: Vote, where: str) -> pd.DataFrame:
    values = df[label_cols].apply(pd.to_numeric, errors="coerce")
    if values.isna().any().any() or not values.isin([0, 1]).all().all():
        raise DatasetFormatError(f"{where}: label columns must hold 0/1 only")
    values["image_id"] = df["image_id"].str.strip()
    grouped = values.groupby("image_id", sort=True)
    if vote == "any":
        return (grouped.max() > 0).astype(int)
    if vote == "majority":
        return (grouped.sum() * 2 > grouped.count()).astype(int)
    raise ValueError(f"unknown vote rule {vote!r}; known: any, majority")


def _boxes(path: Path | None) -> dict[str, str]:
    if path is None:
        return {}
    df = read_csv_checked(path, BOX_COLUMNS)
    result: dict[str, list[dict[str, object]]] = {}
    for row in df.itertuples(index=False):
        d = row._asdict()
        if pd.isna(d["x_min"]):  # "No finding" rows carry no box
            continue
        result.setdefault(str(d["image_id"]).strip(), []).append(
            {
                "class": d["class_name"],
                "rad_id": d.get("rad_id"),
                **{k: float(d[k]) for k in ("x_min", "y_min", "x_max", "y_max")},
            }
        )
    return {k: json.dumps(v, separators=(",", ":")) for k, v in result.items()}


def load_vindr_cxr(root: Path, *, vote: Vote = "any") -> pd.DataFrame:
    root = Path(root)
    parts = []
    for split in ("train", "test"):
        path = _find(root, f"image_labels_{split}.csv")
        if path is None:
            if split == "train":
                raise FileNotFoundError(f"image_labels_train.csv not found under {root}")
            continue
        df = read_csv_checked(path, ["image_id", *MAPPED])
        label_cols = [c for c in df.columns if c not in ("image_id", "rad_id")]
        voted = _votes(df, label_cols, vote, path.name)
        ids = pd.Series(voted.index, index=voted.index)
        frame = pd.DataFrame(
            {
                "image_id": NAMESPACE + ":" + ids,
                "subject_id": NAMESPACE + ":" + ids,
                "study_id": NAMESPACE + ":" + ids,
                "image_path": split + "/" + ids + ".dicom",
                "official_split": split,
                "labels_other": join_flags(
                    voted.index, {c: voted[c] == 1 for c in label_cols if c not in MAPPED}
                ),
            }
        )
        for name, finding in LABEL_TO_FINDING.items():
            frame[label_column(finding)] = voted[name].astype("Int8")
        boxes = _boxes(_find(root, f"annotations_{split}.csv"))
        frame["boxes"] = [boxes.get(i) for i in ids]
        parts.append(frame.reset_index(drop=True))
    out = pd.concat(parts, ignore_index=True)
    return finalize(out, NAME, extra_columns=EXTRAS)
