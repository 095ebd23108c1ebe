"""PadChest (BIMCV, Hospital San Juan, Alicante) to the manifest.

File read under `root`: `PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv` (or `.csv.gz`):
`ImageID`, `ImageDir`, `StudyID`, `PatientID`, `PatientBirth`, `PatientSex_DICOM`,
`ViewPosition_DICOM`, `Projection`, `Labels` (required); `StudyDate_DICOM`, `Rows_DICOM`,
`Columns_DICOM`, `Report`, `MethodLabel` (used when present).

Images: `<ImageDir>/<ImageID>` (16-bit PNGs at the original size, so `width`/`height` come
from `Columns_DICOM`/`Rows_DICOM`). ids: `padchest:<PatientID>`, `padchest:<StudyID>`,
`padchest:<ImageID without .png>`. No official split (null).

View: `Projection` PA -> PA, AP and AP_horizontal (supine AP) -> AP, L -> LATERAL; otherwise
`ViewPosition_DICOM` (POSTEROANTERIOR/ANTEROPOSTERIOR/LATERAL...) through the common view
mapping; else UNKNOWN (COSTAL, EXCLUDE, UNK ...). Sex: `PatientSex_DICOM` M/F/O. Age: study year
(`StudyDate_DICOM`) minus `PatientBirth` year (so +-1 year); null without both. `study_date`
is left null (PadChest dates are not shifted by the publisher; the manifest carries only
shifted dates).

Labels: `Labels` is a Python-list-like string of the taxonomy's terms (e.g.
`['pleural effusion', 'cardiomegaly']`), assigned exhaustively to every report, so a mapped
finding that is absent is 0; rows whose `Labels` is blank or unparsable have every label null.
Mapping (`TERM_TO_FINDING`): cardiomegaly, pleural effusion, pneumothorax, pleural thickening
and apical pleural thickening, pulmonary fibrosis, tuberculosis, chest drain tube, rib fracture;
aortic_enlargement from the aortic elongation family and aortic aneurysm (a judgement call:
PadChest has no "aortic enlargement" term). lung_opacity is not mapped (PadChest splits opacity
into many patterns) and stays null. All other terms go to `labels_other`. The Spanish,
pre-processed `Report` goes to the extra column `report_full`; `report` stays null.

Licence: PadChest Dataset Research Use Agreement (BIMCV; registration, non-commercial research).
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd

from cxrflow.datasets.common import (
    finalize,
    join_names,
    locate,
    normalize_sex,
    normalize_view,
    read_csv_checked,
)
from cxrflow.findings import FINDINGS, label_column

NAME = "padchest"
NAMESPACE = "padchest"
CSV = "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv"
REQUIRED = [
    "ImageID",
    "ImageDir",
    "StudyID",
    "PatientID",
    "PatientBirth",
    "PatientSex_DICOM",
    "ViewPosition_DICOM",
    "Projection",
    "Labels",
]
TERM_TO_FINDING: dict[str, str] = {
    "cardiomegaly": "cardiomegaly",
    "pleural effusion": "pleural_effusion",
    "pneumothorax": "pneumothorax",
    "pleural thickening": "pleural_thickening",
    "apical pleural thickening": "pleural_thickening",
    "pulmonary fibrosis": "pulmonary_fibrosis",
    "tuberculosis": "tuberculosis",
    "chest drain tube": "chest_tube",
    "rib fracture": "rib_fracture",
    "aortic elongation": "aortic_enlargement",
    "descendent aortic elongation": "aortic_enlargement",
    "ascendent aortic elongation": "aortic_enlargement",
    "aortic button enlargement": "aortic_enlargement",
    "aortic aneurysm": "aortic_enlargement",
}
MAPPED = sorted(set(TERM_TO_FINDING.values()))
EXTRAS = ("report_full",)
_PROJECTION = {"PA": "PA", "AP": "AP", "AP_HORIZONTAL": "AP", "L": "LATERAL"}


def parse_labels(value: object) -> list[str] | None:
    """The terms of a `Labels` cell; None when blank or not a list."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
        return None
    if not isinstance(parsed, (list, tuple)):
        return None
    return [str(t).strip().lower() for t in parsed if str(t).strip()]


def _view(projection: object, dicom_view: object) -> str:
    if isinstance(projection, str) and projection.strip().upper() in _PROJECTION:
        return _PROJECTION[projection.strip().upper()]
    return normalize_view(dicom_view)


def load_padchest(root: Path) -> pd.DataFrame:
    root = Path(root)
    df = read_csv_checked(locate(root, CSV), REQUIRED)
    terms = df["Labels"].map(parse_labels)
    image = df["ImageID"].str.strip()
    out = pd.DataFrame(
        {
            "image_id": NAMESPACE + ":" + image.str.replace(r"\.png$", "", regex=True),
            "subject_id": NAMESPACE + ":" + df["PatientID"].str.strip(),
            "study_id": NAMESPACE + ":" + df["StudyID"].str.strip(),
            "view": [
                _view(p, v) for p, v in zip(df["Projection"], df["ViewPosition_DICOM"], strict=True)
            ],
            "image_path": df["ImageDir"].str.strip().str.replace(r"\.0$", "", regex=True)
            + "/"
            + image,
            "sex": df["PatientSex_DICOM"].map(normalize_sex),
            "labels_other": terms.map(
                lambda t: "" if t is None else join_names(x for x in t if x not in TERM_TO_FINDING)
            ),
        }
    )
    for finding in FINDINGS:
        if finding not in MAPPED:
            continue
        out[label_column(finding)] = terms.map(
            lambda t, f=finding: (
                pd.NA if t is None else int(any(TERM_TO_FINDING.get(x) == f for x in t))
            )
        ).astype("Int8")
    birth = pd.to_numeric(df["PatientBirth"], errors="coerce")
    if "StudyDate_DICOM" in df:
        year = pd.to_numeric(df["StudyDate_DICOM"].str.strip().str[:4], errors="coerce")
        age = year - birth
        out["age_years"] = age.where((age >= 0) & (age <= 120), np.nan)
    if "Rows_DICOM" in df and "Columns_DICOM" in df:
        out["height"] = pd.to_numeric(df["Rows_DICOM"], errors="coerce")
        out["width"] = pd.to_numeric(df["Columns_DICOM"], errors="coerce")
    if "Report" in df:
        out["report_full"] = df["Report"]
    return finalize(out, NAME, extra_columns=EXTRAS)
