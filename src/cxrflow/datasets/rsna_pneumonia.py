"""RSNA Pneumonia Detection Challenge (2018, stage 2) to the manifest.

Files read under `root`:

- `stage_2_train_labels.csv`: `patientId`, `x`, `y`, `width`, `height`, `Target` — one row a
  box for positive images (Target 1), one row with blank box for negatives (Target 0).
- `stage_2_detailed_class_info.csv` (optional): `patientId`, `class` (`Lung Opacity`,
  `No Lung Opacity / Not Normal`, `Normal`), one row a box as above. Releases without it (some
  Kaggle mirrors ship only the labels file): lung_opacity still comes from `Target` (the
  pneumonia label), but which negatives are "Normal" and which "No Lung Opacity / Not Normal"
  cannot be derived: `labels_other` is null (unknown, not "none") and the frame's notes say so
  (`common.notes`).

Images: `stage_2_train_images/<patientId>.dcm`. `patientId` is in fact one image per patient:
subject, study and image are all `rsna:<patientId>` (the paper: "26,684 images from the same
number of subjects"). View, sex and age are in the DICOM headers only, not in these files
(UNKNOWN / null here; the ingest stage reads them). Official split: none with labels (the
stage-2 test labels were never published) — null.

Labels: `Target` -> lung_opacity (1/0; the challenge's "pneumonia" boxes are lung opacities).
Every other finding is not annotated (null). `labels_other`: "No Lung Opacity / Not Normal" or
"Normal" when that is the image's class. Boxes are kept as JSON in the extra column `boxes`
({class, x_min, y_min, x_max, y_max}, pixels).

**Overlap**: the RSNA images are a re-identified subset of NIH ChestX-ray14; their patientIds
cannot be linked to ChestX-ray14's Patient IDs from these files, so excluding RSNA evaluation
subjects from a ChestX-ray14 pre-training set needs the NIH<->RSNA mapping (not read here).

Licence: RSNA/Kaggle competition data; the images are NIH ChestX-ray14 (see that dataset's terms).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from cxrflow.datasets.common import (
    DatasetFormatError,
    finalize,
    find_optional,
    locate,
    read_csv_checked,
    with_notes,
)
from cxrflow.findings import label_column

NAME = "rsna_pneumonia"
NAMESPACE = "rsna"
LABELS = "stage_2_train_labels.csv"
CLASSES = "stage_2_detailed_class_info.csv"
IMAGE_DIR = "stage_2_train_images"
EXTRAS = ("boxes",)
log = logging.getLogger(__name__)


def load_rsna_pneumonia(root: Path) -> pd.DataFrame:
    root = Path(root)
    labels_path = locate(root, LABELS)
    labels = read_csv_checked(labels_path, ["patientId", "x", "y", "width", "height", "Target"])
    classes_path = find_optional(root, CLASSES)
    notes: list[str] = []
    if classes_path is None:
        notes.append(
            f"rsna_pneumonia: {CLASSES} not found under {root}: lung_opacity (pneumonia) is "
            f"derived from {LABELS} Target; the Normal / No Lung Opacity / Not Normal classes "
            "cannot be derived, labels_other is left null"
        )
        log.warning(notes[-1])
        classes = pd.DataFrame({"patientId": pd.Series(dtype=str), "class": pd.Series(dtype=str)})
    else:
        classes = read_csv_checked(classes_path, ["patientId", "class"])
    labels["patientId"] = labels["patientId"].str.strip()
    target = pd.to_numeric(labels["Target"], errors="coerce")
    if target.isna().any() or not target.isin([0, 1]).all():
        raise DatasetFormatError(f"{LABELS}: Target must be 0 or 1")
    labels["Target"] = target.astype(int)
    per_image = labels.groupby("patientId", sort=True)["Target"].max()
    klass = (
        classes.assign(patientId=classes["patientId"].str.strip())
        .drop_duplicates("patientId")
        .set_index("patientId")["class"]
        .str.strip()
    )

    boxes: dict[str, list[dict[str, object]]] = {}
    for row in labels[labels["Target"] == 1].itertuples(index=False):
        x, y, w, h = (float(v) for v in (row.x, row.y, row.width, row.height))
        boxes.setdefault(row.patientId, []).append(
            {"class": "Lung Opacity", "x_min": x, "y_min": y, "x_max": x + w, "y_max": y + h}
        )
    ids = pd.Series(per_image.index, index=per_image.index)
    image_class = ids.map(klass)
    out = pd.DataFrame(
        {
            "image_id": NAMESPACE + ":" + ids,
            "subject_id": NAMESPACE + ":" + ids,
            "study_id": NAMESPACE + ":" + ids,
            "image_path": IMAGE_DIR + "/" + ids + ".dcm",
            label_column("lung_opacity"): per_image.astype("Int8"),
            "labels_other": (
                pd.Series(None, index=ids.index, dtype=object)
                if classes_path is None
                else image_class.where(image_class.notna() & (image_class != "Lung Opacity"), "")
            ),
            "boxes": [
                json.dumps(boxes[i], separators=(",", ":")) if i in boxes else None for i in ids
            ],
        }
    )
    return with_notes(finalize(out, NAME, extra_columns=EXTRAS), notes)
