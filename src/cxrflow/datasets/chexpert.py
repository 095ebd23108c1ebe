"""CheXpert (v1.0, full or "small") to the manifest.

Files read under `root` (the folder that holds them, e.g. `CheXpert-v1.0-small/`):

- `train.csv` (required) and `valid.csv` (when present): `Path`, `Sex`, `Age`,
  `Frontal/Lateral`, `AP/PA` and the 14 CheXpert-labeller columns (`No Finding` ...
  `Support Devices`), values 1.0 / 0.0 / -1.0 / blank. `valid.csv` holds the radiologists'
  consensus (0/1 only).

`Path` is like `CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg`; the leading
folder (anything before `train/` or `valid/`) is dropped so that `image_path` is relative to
`root`. ids: `chexpert:patient00001`, `chexpert:patient00001_study1`,
`chexpert:patient00001_study1_view1_frontal`. Official split: `train.csv` -> train,
`valid.csv` -> val (the hidden test set of the competition is not read).

View: `Frontal/Lateral` = Lateral -> LATERAL, else `AP/PA` (AP/PA, anything else UNKNOWN).
Sex: Male/Female -> M/F, Unknown -> null. Age: years.

Labels: as MIMIC-CXR (same labeller): Lung Opacity, Cardiomegaly, Pleural Effusion,
Pneumothorax mapped; -1 null by default (`uncertain=` to change); blank null by default
(`blank="negative"` to change); the other positive observations in `labels_other`; every -1 in
`labels_uncertain`.

Licence: Stanford University School of Medicine CheXpert Dataset Research Use Agreement
(registration; non-commercial research use).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from cxrflow.datasets.common import (
    CHEXPERT_OBSERVATIONS,
    BlankPolicy,
    DatasetFormatError,
    UncertainPolicy,
    chexpert_columns,
    finalize,
    normalize_sex,
    normalize_view,
    parse_age,
    read_csv_checked,
)

NAME = "chexpert"
NAMESPACE = "chexpert"
FILES = {"train.csv": "train", "valid.csv": "val"}
REQUIRED = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *CHEXPERT_OBSERVATIONS]
EXTRAS = ("labels_uncertain",)
_PATH = re.compile(r"(?:^|/)((?:train|valid|test)/(patient\d+)/(study\d+)/([^/]+?)\.\w+)$")


def _view(frontal_lateral: object, ap_pa: object) -> str:
    if isinstance(frontal_lateral, str) and frontal_lateral.strip().lower() == "lateral":
        return "LATERAL"
    view = normalize_view(ap_pa)
    return view if view in ("PA", "AP") else "UNKNOWN"


def load_chexpert(
    root: Path, *, uncertain: UncertainPolicy = "null", blank: BlankPolicy = "null"
) -> pd.DataFrame:
    root = Path(root)
    if not (root / "train.csv").is_file():
        raise FileNotFoundError(f"CheXpert train.csv not found under {root}")
    parts: list[pd.DataFrame] = []
    for file, split in FILES.items():
        path = root / file
        if not path.is_file():
            continue
        df = read_csv_checked(path, REQUIRED)
        matches = df["Path"].str.strip().str.extract(_PATH)
        bad = matches[0].isna()
        if bad.any():
            raise DatasetFormatError(
                f"{file}: Path not like '<split>/patientNNNNN/studyN/viewN_x.jpg': "
                f"{', '.join(df['Path'][bad].head(3))}"
            )
        rel, patient, study, view = matches[0], matches[1], matches[2], matches[3]
        labels = chexpert_columns(df, uncertain=uncertain, blank=blank, source=file)
        parts.append(
            pd.DataFrame(
                {
                    "image_id": NAMESPACE + ":" + patient + "_" + study + "_" + view,
                    "subject_id": NAMESPACE + ":" + patient,
                    "study_id": NAMESPACE + ":" + patient + "_" + study,
                    "view": [
                        _view(a, b) for a, b in zip(df["Frontal/Lateral"], df["AP/PA"], strict=True)
                    ],
                    "image_path": rel,
                    "sex": df["Sex"].map(normalize_sex),
                    "age_years": df["Age"].map(parse_age),
                    "official_split": split,
                    **labels,
                }
            )
        )
    return finalize(pd.concat(parts, ignore_index=True), NAME, extra_columns=EXTRAS)
