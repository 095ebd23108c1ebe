"""MIMIC-CXR (the JPG release, MIMIC-CXR-JPG 2.0.0/2.1.0) to the manifest.

Files read under `root` (each may also be the distributed `.csv.gz`):

- `mimic-cxr-2.0.0-metadata.csv`: `dicom_id`, `subject_id`, `study_id`, `ViewPosition`
  (required); `Rows`, `Columns`, `StudyDate` (used when present).
- `mimic-cxr-2.0.0-chexpert.csv`: `subject_id`, `study_id` and the 14 CheXpert-labeller
  columns (`Atelectasis` ... `Support Devices`), values 1.0 / 0.0 / -1.0 / blank.
- `mimic-cxr-2.0.0-split.csv`: `dicom_id`, `study_id`, `subject_id`, `split`
  (train/validate/test) — the official split, kept as `official_split` (validate -> val).
- reports, optional: `files/pXX/pNNNNNNNN/sNNNNNNNN.txt` (MIMIC-CXR's report layout), looked
  for under `root` and under `root/mimic-cxr-reports`; `report` is its FINDINGS section
  (`cxrflow.datasets.reports`), null when the file or the section is missing.
- optional: MIMIC-IV `patients.csv` (`subject_id`, `gender`, `anchor_age`, `anchor_year`) for
  sex and age (age at the study = anchor_age + study year - anchor_year).

Images: `files/pXX/pNNNNNNNN/sNNNNNNNN/<dicom_id>.jpg`. ids: `mimic:<subject_id>`,
`mimic:s<study_id>`, `mimic:<dicom_id>` (shared with the MIMIC lung-mask adapter).
`width`/`height` from `Columns`/`Rows` (the JPGs keep the DICOM size); `study_date` is
MIMIC's own (already shifted by the publisher) `StudyDate`.

Labels: CheXpert labeller on the report, per study (every image of a study gets the study's
labels). Lung Opacity, Cardiomegaly, Pleural Effusion, Pneumothorax map to the common
vocabulary; the other 10 observations go to `labels_other` when positive. -1 (uncertain) is
null by default (`uncertain="negative"|"positive"` for U-Zeros / U-Ones); blank (not
mentioned) is null by default (`blank="negative"` to read it as absent). A study without a
CheXpert row has every label null. Extra columns: `labels_uncertain`, `report_full`.

Licence: PhysioNet Credentialed Health Data License 1.5.0; needs a credentialed PhysioNet
account, CITI training and the signed DUA. No data leaves the user's machine through this code.
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
    find_optional,
    locate,
    normalize_sex,
    normalize_view,
    read_csv_checked,
)
from cxrflow.datasets.reports import extract_findings

NAME = "mimic_cxr"
NAMESPACE = "mimic"
METADATA = "mimic-cxr-2.0.0-metadata.csv"
CHEXPERT = "mimic-cxr-2.0.0-chexpert.csv"
SPLIT = "mimic-cxr-2.0.0-split.csv"
SPLIT_NAMES = {"train": "train", "validate": "val", "test": "test"}
EXTRAS = ("labels_uncertain", "report_full")


def image_path(subject_id: str, study_id: str, dicom_id: str) -> str:
    return f"files/p{subject_id[:2]}/p{subject_id}/s{study_id}/{dicom_id}.jpg"


def read_metadata(root: Path) -> pd.DataFrame:
    """The metadata table with clean string ids (subject_id zero-padded to 8 digits)."""
    path = locate(root, METADATA)
    meta = read_csv_checked(path, ["dicom_id", "subject_id", "study_id", "ViewPosition"])
    meta["subject_id"] = meta["subject_id"].str.strip().str.zfill(8)
    meta["study_id"] = meta["study_id"].str.strip()
    meta["dicom_id"] = meta["dicom_id"].str.strip()
    return meta


def read_report(root: Path, subject_id: str, study_id: str) -> str | None:
    rel = Path("files") / f"p{subject_id[:2]}" / f"p{subject_id}" / f"s{study_id}.txt"
    for base in (root, root / "mimic-cxr-reports"):
        path = base / rel
        if path.is_file():
            return path.read_text(encoding="utf-8", errors="replace")
    return None


def load_mimic_cxr(
    root: Path,
    *,
    uncertain: UncertainPolicy = "null",
    blank: BlankPolicy = "null",
    read_reports: bool = True,
) -> pd.DataFrame:
    """Manifest rows for every image in the metadata file (all views, all splits)."""
    root = Path(root)
    meta = read_metadata(root)
    split_path = locate(root, SPLIT)
    split = read_csv_checked(split_path, ["dicom_id", "split"])
    unknown = sorted(set(split["split"].dropna().str.strip()) - set(SPLIT_NAMES))
    if unknown:
        raise ValueError(f"{split_path.name}: unknown split values {', '.join(unknown)}")
    split_of = dict(
        zip(split["dicom_id"].str.strip(), split["split"].str.strip().map(SPLIT_NAMES), strict=True)
    )

    chex_path = locate(root, CHEXPERT)
    chex = read_csv_checked(chex_path, ["subject_id", "study_id", *CHEXPERT_OBSERVATIONS])
    chex["subject_id"] = chex["subject_id"].str.strip().str.zfill(8)
    chex["study_id"] = chex["study_id"].str.strip()
    if chex.duplicated(["subject_id", "study_id"]).any():
        raise ValueError(f"{chex_path.name}: more than one row for a study")
    df = meta.merge(chex, on=["subject_id", "study_id"], how="left", validate="many_to_one")
    labels = chexpert_columns(df, uncertain=uncertain, blank=blank, source=chex_path.name)

    out = pd.DataFrame(
        {
            "image_id": NAMESPACE + ":" + df["dicom_id"],
            "subject_id": NAMESPACE + ":" + df["subject_id"],
            "study_id": NAMESPACE + ":s" + df["study_id"],
            "view": df["ViewPosition"].map(normalize_view),
            "image_path": [
                image_path(s, t, d)
                for s, t, d in zip(df["subject_id"], df["study_id"], df["dicom_id"], strict=True)
            ],
            "official_split": df["dicom_id"].map(split_of),
            **labels,
        }
    )
    if "Rows" in df and "Columns" in df:
        out["height"] = pd.to_numeric(df["Rows"], errors="coerce")
        out["width"] = pd.to_numeric(df["Columns"], errors="coerce")
    dates = (
        pd.to_datetime(df["StudyDate"], format="%Y%m%d", errors="coerce")
        if ("StudyDate" in df)
        else None
    )
    if dates is not None:
        out["study_date"] = dates.dt.strftime("%Y-%m-%d").where(dates.notna(), None)
    # a study without a CheXpert row is not annotated: its labels_other is "" and labels null

    patients = find_optional(root, "patients.csv")
    if patients is not None:
        pat = read_csv_checked(patients, ["subject_id", "gender", "anchor_age", "anchor_year"])
        pat["subject_id"] = pat["subject_id"].str.strip().str.zfill(8)
        pat = pat.drop_duplicates("subject_id").set_index("subject_id")
        out["sex"] = df["subject_id"].map(pat["gender"]).map(normalize_sex)
        anchor_age = pd.to_numeric(df["subject_id"].map(pat["anchor_age"]), errors="coerce")
        anchor_year = pd.to_numeric(df["subject_id"].map(pat["anchor_year"]), errors="coerce")
        if dates is not None:
            out["age_years"] = (anchor_age + (dates.dt.year - anchor_year)).where(
                dates.notna(), anchor_age
            )
        else:
            out["age_years"] = anchor_age

    if read_reports:
        cache: dict[tuple[str, str], str | None] = {}
        for s, t in zip(df["subject_id"], df["study_id"], strict=True):
            if (s, t) not in cache:
                cache[(s, t)] = read_report(root, s, t)
        full = [cache[(s, t)] for s, t in zip(df["subject_id"], df["study_id"], strict=True)]
        out["report_full"] = full
        out["report"] = [extract_findings(r) for r in full]
    return finalize(out, NAME, extra_columns=EXTRAS)
