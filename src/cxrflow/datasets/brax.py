"""BRAX (Brazilian labeled chest X-ray dataset, PhysioNet 1.1.0) to the manifest.

File read under `root`: `master_spreadsheet_update.csv`: `PatientID`, `AccessionNumber`,
`PngPath`, `ViewPosition` and the 14 CheXpert-labeller columns (required; BRAX labelled its
reports with the CheXpert labeller, values 1.0 / 0.0 / -1.0 / blank); `PatientSex`,
`PatientAge`, `DicomPath`, `Rows`, `Columns` (used when present).

*Layout caveat*: the required columns are the ones published code reads from this file; the
exact spelling of the optional demographic and size columns was not checked against the
release, so they are optional and ignored when absent.

Images: `PngPath` as given (relative to the dataset root). BRAX has no per-image id column, so
the image id is the PNG path without its extension and with `/` -> `_`
(`brax:images_id_..._Study_..._image-...`); subject `brax:<PatientID>`; study
`brax:<PatientID>_<AccessionNumber>` (accession numbers are not assumed globally unique). No
official split (null). View: `ViewPosition` through the common mapping. Sex: M/F. Age: a
number or a DICOM age string (`045Y`); anything else (e.g. an open-ended band) is null.

Labels: as MIMIC-CXR/CheXpert (same labeller, same policy: -1 and blank null by default,
configurable; the four shared observations mapped; other positives in `labels_other`, every -1
in `labels_uncertain`).

Licence: PhysioNet Credentialed Health Data License 1.5.0 (credentialed access, DUA).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cxrflow.datasets.common import (
    CHEXPERT_OBSERVATIONS,
    BlankPolicy,
    UncertainPolicy,
    chexpert_columns,
    finalize,
    locate,
    normalize_sex,
    normalize_view,
    parse_age,
    read_csv_checked,
)

NAME = "brax"
NAMESPACE = "brax"
CSV = "master_spreadsheet_update.csv"
REQUIRED = ["PatientID", "AccessionNumber", "PngPath", "ViewPosition", *CHEXPERT_OBSERVATIONS]
EXTRAS = ("labels_uncertain",)


def load_brax(
    root: Path, *, uncertain: UncertainPolicy = "null", blank: BlankPolicy = "null"
) -> pd.DataFrame:
    root = Path(root)
    path = locate(root, CSV)
    df = read_csv_checked(path, REQUIRED)
    png = df["PngPath"].str.strip().str.lstrip("/")
    stem = png.str.replace(r"\.png$", "", regex=True, case=False).str.replace("/", "_")
    patient = df["PatientID"].str.strip()
    out = pd.DataFrame(
        {
            "image_id": NAMESPACE + ":" + stem,
            "subject_id": NAMESPACE + ":" + patient,
            "study_id": NAMESPACE + ":" + patient + "_" + df["AccessionNumber"].str.strip(),
            "view": df["ViewPosition"].map(normalize_view),
            "image_path": png,
            **chexpert_columns(df, uncertain=uncertain, blank=blank, source=path.name),
        }
    )
    if "PatientSex" in df:
        out["sex"] = df["PatientSex"].map(normalize_sex)
    if "PatientAge" in df:
        out["age_years"] = df["PatientAge"].map(parse_age)
    if "Rows" in df and "Columns" in df:
        out["height"] = pd.to_numeric(df["Rows"], errors="coerce")
        out["width"] = pd.to_numeric(df["Columns"], errors="coerce")
    return finalize(out, NAME, extra_columns=EXTRAS)
