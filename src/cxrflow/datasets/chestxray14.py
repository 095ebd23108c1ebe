"""NIH ChestX-ray14 (ChestX-ray8 extended) to the manifest.

Files read under `root`:

- `Data_Entry_2017.csv` (or `Data_Entry_2017_v2020.csv`): `Image Index`, `Finding Labels`
  (pipe-separated, or `No Finding`), `Follow-up #`, `Patient ID`, `Patient Age`,
  `Patient Gender`, `View Position` (required); the original-size columns are not used (the
  distributed PNGs are resized, so `width`/`height` stay 0).
- `train_val_list.txt` / `test_list.txt` (one `Image Index` a line): the official split,
  train_val -> train, test -> test; images in neither (or without the lists) get null.

Images: `images/<Image Index>`, or `images_NNN/images/<Image Index>` when the archives were
unpacked side by side (found by listing those folders). ids: `cxr14:<Patient ID>`,
`cxr14:<Image Index stem>` for both study and image (`<patient>_<follow-up>` identifies the
visit, one image each).

Labels: text-mined from the reports, over 14 classes. `Cardiomegaly`, `Effusion`,
`Pneumothorax`, `Fibrosis` (-> pulmonary_fibrosis) and `Pleural_Thickening` map to the common
vocabulary; as the 14 labels are assigned exhaustively, a mapped class that is absent is 0.
lung_opacity, aortic_enlargement, tuberculosis, chest_tube, rib_fracture are not annotated
(null). The other classes (and `No Finding`) go to `labels_other`. Ages outside 0-120 (a few
erroneous entries in the 2017 file) are null.

Licence: released by the NIH Clinical Center for unrestricted use; cite the paper and
acknowledge the NIH Clinical Center.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from cxrflow.datasets.common import (
    finalize,
    join_names,
    locate,
    normalize_sex,
    normalize_view,
    parse_age,
    read_csv_checked,
)
from cxrflow.findings import label_column

NAME = "chestxray14"
NAMESPACE = "cxr14"
REQUIRED = [
    "Image Index",
    "Finding Labels",
    "Follow-up #",
    "Patient ID",
    "Patient Age",
    "Patient Gender",
    "View Position",
]
LABEL_TO_FINDING = {
    "Cardiomegaly": "cardiomegaly",
    "Effusion": "pleural_effusion",
    "Pneumothorax": "pneumothorax",
    "Fibrosis": "pulmonary_fibrosis",
    "Pleural_Thickening": "pleural_thickening",
}


def _image_dirs(root: Path) -> dict[str, str]:
    """Image Index -> path relative to root, for the `images_NNN/images/` layout."""
    found: dict[str, str] = {}
    for sub in sorted(root.glob("images_*/images")):
        rel = sub.relative_to(root).as_posix()
        for name in os.listdir(sub):
            found[name] = f"{rel}/{name}"
    return found


def _read_list(path: Path) -> set[str]:
    if not path.is_file():
        return set()
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


def load_chestxray14(root: Path) -> pd.DataFrame:
    root = Path(root)
    df = read_csv_checked(
        locate(root, "Data_Entry_2017.csv", "Data_Entry_2017_v2020.csv"), REQUIRED
    )
    idx = df["Image Index"].str.strip()
    stem = idx.str.replace(r"\.png$", "", regex=True)
    labels = (
        df["Finding Labels"]
        .fillna("")
        .map(lambda s: {p.strip() for p in str(s).split("|") if p.strip()})
    )
    out = pd.DataFrame(
        {
            "image_id": NAMESPACE + ":" + stem,
            "subject_id": NAMESPACE
            + ":"
            + df["Patient ID"].str.strip().str.lstrip("0").replace("", "0"),
            "study_id": NAMESPACE + ":" + stem,
            "view": df["View Position"].map(normalize_view),
            "sex": df["Patient Gender"].map(normalize_sex),
            "age_years": df["Patient Age"].map(parse_age),
            "labels_other": labels.map(lambda s: join_names(s - set(LABEL_TO_FINDING))),
        }
    )
    for name, finding in LABEL_TO_FINDING.items():
        out[label_column(finding)] = labels.map(lambda s, n=name: int(n in s)).astype("Int8")

    nested = _image_dirs(root)
    out["image_path"] = [nested.get(i, f"images/{i}") for i in idx]
    train, test = _read_list(root / "train_val_list.txt"), _read_list(root / "test_list.txt")
    out["official_split"] = ["train" if i in train else "test" if i in test else None for i in idx]
    return finalize(out, NAME)
