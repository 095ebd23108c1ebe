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

Releases without the image-label files (the Kaggle VinBigData edition ships only `train.csv`:
`image_id`, `class_name`, `class_id`, `rad_id` and the box; some PhysioNet copies lack
`image_labels_*.csv`): image-level labels are derived from the boxes, a class positive for a
rater who drew a box of it (then the same vote rule), negative otherwise — but only for the
classes that have boxes in that release (`LOCAL_LABELS`: 22 in PhysioNet's
`annotations_*.csv`, the 14 of `KAGGLE_LABELS` in Kaggle's `train.csv`). Labels without boxes
(Tuberculosis always; Rib fracture in the Kaggle edition) cannot be derived: they stay null,
and `labels_other` holds only the derivable classes. The frame's notes (`common.notes`) and a
log warning name the missing file and what was left out. With no label file and no box file
for the train split, the adapter refuses, naming the files it looked for. The Kaggle test
images have no labels and are not listed.

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
import logging
from pathlib import Path
from typing import Literal

import pandas as pd

from cxrflow.datasets.common import (
    DatasetFormatError,
    finalize,
    join_flags,
    read_csv_checked,
    with_notes,
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
# The classes drawn as boxes (local labels) in each release; the others are image-level only.
LOCAL_LABELS: tuple[str, ...] = (
    "Aortic enlargement",
    "Atelectasis",
    "Calcification",
    "Cardiomegaly",
    "Clavicle fracture",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Enlarged PA",
    "ILD",
    "Infiltration",
    "Lung cavity",
    "Lung cyst",
    "Lung Opacity",
    "Mediastinal shift",
    "Nodule/Mass",
    "Other lesion",
    "Pleural effusion",
    "Pleural thickening",
    "Pneumothorax",
    "Pulmonary fibrosis",
    "Rib fracture",
)
KAGGLE_LABELS: tuple[str, ...] = (
    "Aortic enlargement",
    "Atelectasis",
    "Calcification",
    "Cardiomegaly",
    "Consolidation",
    "ILD",
    "Infiltration",
    "Lung Opacity",
    "Nodule/Mass",
    "Other lesion",
    "Pleural effusion",
    "Pleural thickening",
    "Pneumothorax",
    "Pulmonary fibrosis",
)
NO_FINDING = "No finding"
KAGGLE_TRAIN = "train.csv"
log = logging.getLogger(__name__)


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


def _rater_column(df: pd.DataFrame) -> pd.DataFrame:
    """The rater column as `rad_id` (copies of the release also spell it `rad_ID`)."""
    return df.rename(columns={c: "rad_id" for c in df.columns if c.lower() == "rad_id"})


def _box_file(root: Path, split: str) -> tuple[Path, tuple[str, ...]] | None:
    """The box file of a split and the classes it can hold boxes of; None when there is none."""
    path = _find(root, f"annotations_{split}.csv")
    if path is not None:
        return path, LOCAL_LABELS
    kaggle = root / KAGGLE_TRAIN
    if split == "train" and kaggle.is_file():
        return kaggle, KAGGLE_LABELS
    return None


def _derive_votes(path: Path, classes: tuple[str, ...], vote: Vote) -> pd.DataFrame:
    """Image-level 0/1 of `classes` (+ No finding) from the raters' boxes, by the vote rule."""
    df = _rater_column(read_csv_checked(path, ["image_id", "class_name"]))
    df["image_id"] = df["image_id"].str.strip()
    df["class_name"] = df["class_name"].str.strip()
    unknown = sorted(set(df["class_name"].dropna()) - {*classes, NO_FINDING})
    if unknown:
        raise DatasetFormatError(
            f"{path.name}: class_name values outside the release's classes: {', '.join(unknown)}"
        )
    rater = df["rad_id"].fillna("").str.strip() if "rad_id" in df.columns else ""
    df = df.assign(rater=rater)
    raters = df.groupby("image_id", sort=True)["rater"].nunique()
    marks = (
        df.drop_duplicates(["image_id", "rater", "class_name"])
        .groupby(["image_id", "class_name"])
        .size()
        .unstack(fill_value=0)
        .reindex(index=raters.index, columns=[*classes, NO_FINDING], fill_value=0)
    )
    if vote == "any":
        return (marks > 0).astype(int)
    if vote == "majority":
        return (marks.mul(2).gt(raters, axis=0)).astype(int)
    raise ValueError(f"unknown vote rule {vote!r}; known: any, majority")


def _frame(
    split: str, voted: pd.DataFrame, label_cols: list[str], boxes: dict[str, str]
) -> pd.DataFrame:
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
        frame[label_column(finding)] = (
            voted[name].astype("Int8").to_numpy()
            if name in voted.columns
            else pd.array([pd.NA] * len(frame), dtype="Int8")
        )
    frame["boxes"] = [boxes.get(i) for i in ids]
    return frame.reset_index(drop=True)


def load_vindr_cxr(root: Path, *, vote: Vote = "any") -> pd.DataFrame:
    root = Path(root)
    parts = []
    notes: list[str] = []
    for split in ("train", "test"):
        path = _find(root, f"image_labels_{split}.csv")
        box_file = _box_file(root, split)
        if path is not None:
            df = _rater_column(read_csv_checked(path, ["image_id", *MAPPED]))
            label_cols = [c for c in df.columns if c not in ("image_id", "rad_id")]
            voted = _votes(df, label_cols, vote, path.name)
            boxes = _boxes(_find(root, f"annotations_{split}.csv"))
        elif box_file is not None:
            box_path, classes = box_file
            voted = _derive_votes(box_path, classes, vote)
            label_cols = [*classes, NO_FINDING]
            boxes = _boxes(box_path)
            lost = sorted(LABEL_TO_FINDING[n] for n in MAPPED if n not in classes)
            notes.append(
                f"vindr_cxr {split}: image_labels_{split}.csv not found under {root}; "
                f"image-level labels derived from {box_path.name} (a class is positive where "
                f"raters drew its box, vote={vote}); not derivable without "
                f"image_labels_{split}.csv, left null: {', '.join(lost)}; labels_other holds "
                "only classes that have boxes"
            )
            log.warning(notes[-1])
        elif split == "train":
            raise FileNotFoundError(
                f"VinDr-CXR labels not found under {root}: need annotations/"
                "image_labels_train.csv (PhysioNet), or annotations/annotations_train.csv "
                f"(PhysioNet boxes) or {KAGGLE_TRAIN} (Kaggle) to derive labels from boxes"
            )
        else:
            continue
        parts.append(_frame(split, voted, label_cols, boxes))
    out = pd.concat(parts, ignore_index=True)
    return with_notes(finalize(out, NAME, extra_columns=EXTRAS), notes)
