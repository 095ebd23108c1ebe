"""Shared pieces of the dataset adapters: checked CSV reading, label policies, the frame builder.

Every adapter turns a public dataset's *published metadata* into rows of the manifest schema
(`cxrflow.manifest`). Conventions shared by all of them:

- ids are the dataset's own ids prefixed with a *cohort namespace* (`mimic:10000032`). Datasets
  drawn from the same cohort share a namespace (MIMIC-CXR and the MIMIC lung masks both use
  `mimic:`), so that a subject in one is recognised in the other when evaluation subjects are
  excluded from pre-training.
- `image_sha256` is the empty string: an adapter reads metadata only, never the images. The
  ingest stage fills it when it reads the pixels.
- `width`/`height` are 0 unless the metadata gives the size of the distributed image.
- `ingest_run` is `adapter:<dataset name>`.
- extra columns after the schema: `official_split` (train/val/test or null) and `labels_other`
  (the dataset's positive labels outside the common vocabulary, sorted and `;`-joined, "" when
  none), plus per-dataset extras listed in each module.
- a label column is null where the dataset does not annotate that finding, 0 for an annotated
  negative and 1 for a positive.
- what an adapter had to derive or leave out because a release lacks a file (the Kaggle
  editions) is said in a log warning and in the frame's `attrs["notes"]` (`notes()`), which the
  importer puts in its summary.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from cxrflow.findings import label_column
from cxrflow.manifest import MANIFEST_SCHEMA

UncertainPolicy = Literal["null", "negative", "positive"]
BlankPolicy = Literal["null", "negative"]

# The 14 observations of the CheXpert labeller (CheXpert, MIMIC-CXR-JPG, BRAX).
CHEXPERT_OBSERVATIONS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Enlarged Cardiomediastinum",
    "Fracture",
    "Lung Lesion",
    "Lung Opacity",
    "No Finding",
    "Pleural Effusion",
    "Pleural Other",
    "Pneumonia",
    "Pneumothorax",
    "Support Devices",
)
# Only observations that mean the same thing as a common finding are mapped. "Fracture" is any
# fracture (not rib fracture), "Support Devices" is any device (not a chest tube), "Pleural
# Other" is more than pleural thickening, "Enlarged Cardiomediastinum" is not aortic
# enlargement: those stay in labels_other.
CHEXPERT_TO_FINDING: dict[str, str] = {
    "Lung Opacity": "lung_opacity",
    "Cardiomegaly": "cardiomegaly",
    "Pleural Effusion": "pleural_effusion",
    "Pneumothorax": "pneumothorax",
}

EXTRA_COLUMNS: tuple[str, ...] = ("official_split", "labels_other")

_LATERAL = {"LL", "RL", "LATERAL", "LAT", "L", "LLD", "RLD", "XTABLE LATERAL"}
_VIEW_ALIASES = {
    "PA": "PA",
    "POSTEROANTERIOR": "PA",
    "AP": "AP",
    "ANTEROPOSTERIOR": "AP",
}


NOTES_ATTR = "notes"


def with_notes(df: pd.DataFrame, notes: Sequence[str]) -> pd.DataFrame:
    """`df` with `notes` (what was derived or left out, by file name) in its attrs."""
    df.attrs[NOTES_ATTR] = list(notes)
    return df


def notes(df: pd.DataFrame) -> list[str]:
    """The notes an adapter left on its frame (empty when none)."""
    return list(df.attrs.get(NOTES_ATTR, []))


class DatasetFormatError(ValueError):
    """A dataset's metadata does not have the layout its adapter expects (what, in the message)."""


def locate(root: Path, *names: str) -> Path:
    """The first of `names` (or its `.gz` twin) that exists under `root`."""
    for name in names:
        for candidate in (root / name, root / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(f"none of {', '.join(names)} (or .gz) found under {root}")


def find_optional(root: Path, *names: str) -> Path | None:
    try:
        return locate(root, *names)
    except FileNotFoundError:
        return None


def read_csv_checked(path: Path, required_columns: Iterable[str], **kwargs: object) -> pd.DataFrame:
    """Read a CSV and fail, naming the file and the columns, when required columns are missing.

    Everything is read as strings (`dtype=str`, blanks as NaN) unless `kwargs` says otherwise,
    so that ids with leading zeros survive; adapters convert the columns they use.
    """
    if not path.is_file():
        raise FileNotFoundError(f"metadata file not found: {path}")
    kwargs.setdefault("dtype", str)
    kwargs.setdefault("keep_default_na", False)
    kwargs.setdefault("na_values", [""])
    df = pd.read_csv(path, **kwargs)  # type: ignore[call-overload]
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in required_columns if c not in df.columns]
    if missing:
        raise DatasetFormatError(
            f"{path.name} ({path}) is missing required columns: {', '.join(missing)}; "
            f"it has: {', '.join(map(str, df.columns))}"
        )
    return df


def normalize_view(value: object) -> str:
    """PA/AP/LATERAL, or UNKNOWN for anything else (decubitus, oblique, blank)."""
    if not isinstance(value, str):
        return "UNKNOWN"
    v = value.strip().upper()
    if v in _VIEW_ALIASES:
        return _VIEW_ALIASES[v]
    if v in _LATERAL:
        return "LATERAL"
    return "UNKNOWN"


def normalize_sex(value: object) -> str | None:
    """M/F/O as in DICOM PatientSex; None when unknown."""
    if not isinstance(value, str):
        return None
    v = value.strip().upper()
    return {"M": "M", "MALE": "M", "F": "F", "FEMALE": "F", "O": "O"}.get(v)


def parse_age(value: object, max_years: float = 120.0) -> float | None:
    """Years from a number or a DICOM age string (`058Y`, `006M`); None when implausible."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value).strip().upper()
    m = re.fullmatch(r"(\d{1,3})([DWMY])", text)
    if m:
        per_year = {"D": 365.25, "W": 52.1775, "M": 12.0, "Y": 1.0}[m.group(2)]
        years = int(m.group(1)) / per_year
    else:
        try:
            years = float(text)
        except ValueError:
            return None
    if not (0 <= years <= max_years) or np.isnan(years):
        return None
    return float(years)


def chexpert_label(
    values: pd.Series,
    *,
    uncertain: UncertainPolicy,
    blank: BlankPolicy,
    where: str,
) -> pd.Series:
    """Map CheXpert-labeller values (1.0 / 0.0 / -1.0 / blank) to nullable Int8.

    `uncertain` is what -1 becomes ("null" = U-Ignore, "negative" = U-Zeros, "positive" =
    U-Ones in the CheXpert paper's terms); `blank` (not mentioned in the report) becomes null or
    0. Any other value is an error naming `where` (file and column).
    """
    num = pd.to_numeric(values, errors="coerce")
    bad = values.notna() & (num.isna() | ~num.isin([1.0, 0.0, -1.0]))
    if bad.any():
        examples = ", ".join(sorted(map(str, values[bad].unique()[:5])))
        raise DatasetFormatError(f"{where}: unexpected label values: {examples}")
    out = pd.Series(pd.NA, index=values.index, dtype="Int8")
    out[num == 1.0] = 1
    out[num == 0.0] = 0
    if uncertain != "null":
        out[num == -1.0] = 1 if uncertain == "positive" else 0
    if blank == "negative":
        out[num.isna()] = 0
    return out


def chexpert_columns(
    df: pd.DataFrame,
    *,
    uncertain: UncertainPolicy,
    blank: BlankPolicy,
    source: str,
) -> dict[str, pd.Series]:
    """Label columns, `labels_other` and `labels_uncertain` from the 14 CheXpert columns."""
    labels = {
        CHEXPERT_TO_FINDING[obs]: chexpert_label(
            df[obs], uncertain=uncertain, blank=blank, where=f"{source} column {obs!r}"
        )
        for obs in CHEXPERT_TO_FINDING
    }
    num = {obs: pd.to_numeric(df[obs], errors="coerce") for obs in CHEXPERT_OBSERVATIONS}
    other = [o for o in CHEXPERT_OBSERVATIONS if o not in CHEXPERT_TO_FINDING]
    out: dict[str, pd.Series] = {label_column(f): s for f, s in labels.items()}
    out["labels_other"] = join_flags(df.index, {o: num[o] == 1.0 for o in other})
    out["labels_uncertain"] = join_flags(
        df.index, {o: num[o] == -1.0 for o in CHEXPERT_OBSERVATIONS}
    )
    return out


def join_flags(index: pd.Index, flags: Mapping[str, pd.Series]) -> pd.Series:
    """Per row, the sorted `;`-joined names whose flag is true ("" when none)."""
    names = sorted(flags)
    if not names:
        return pd.Series("", index=index, dtype=object)
    matrix = np.column_stack([flags[n].fillna(False).to_numpy(dtype=bool) for n in names])
    arr = np.array(names, dtype=object)
    return pd.Series([";".join(arr[row]) for row in matrix], index=index, dtype=object)


def join_names(names: Iterable[str]) -> str:
    return ";".join(sorted({n for n in names if n}))


def finalize(
    df: pd.DataFrame,
    name: str,
    *,
    extra_columns: Sequence[str] = (),
) -> pd.DataFrame:
    """Fill defaults, cast to the manifest's types and order the columns; check image ids.

    Columns of the schema missing from `df` get their default (labels null, demographics null,
    `image_sha256` "", `width`/`height` 0); the extras `official_split` and `labels_other` come
    next, then `extra_columns`.
    """
    out = pd.DataFrame(index=pd.RangeIndex(len(df)))
    df = df.reset_index(drop=True)
    defaults: dict[str, object] = {
        "image_sha256": "",
        "width": 0,
        "height": 0,
        "source_dataset": name,
        "ingest_run": f"adapter:{name}",
        "view": "UNKNOWN",
    }
    for field in MANIFEST_SCHEMA:
        col = field.name
        if col in df.columns:
            values = df[col]
        elif col in defaults:
            values = pd.Series([defaults[col]] * len(df))
        else:
            values = pd.Series([None] * len(df), dtype=object)
        if col.startswith("label_"):
            out[col] = values.astype("Int8")
        elif col in ("width", "height"):
            out[col] = pd.to_numeric(values, errors="coerce").fillna(0).astype("int32")
        elif col in ("age_years", "weight_kg", "height_m"):
            out[col] = pd.to_numeric(values, errors="coerce").astype("float32")
        else:
            out[col] = _strings(values)
    for col in (*EXTRA_COLUMNS, *extra_columns):
        if col in df.columns:
            out[col] = _strings(df[col])
        elif col == "labels_other":
            out[col] = pd.Series([""] * len(df), dtype=object)
        else:
            out[col] = pd.Series([None] * len(df), dtype=object)
    for col in ("image_id", "subject_id", "study_id", "image_path"):
        if out[col].isna().any() or (out[col] == "").any():
            raise DatasetFormatError(f"{name}: some rows have no {col}")
    dup = out["image_id"][out["image_id"].duplicated()]
    if len(dup):
        raise DatasetFormatError(
            f"{name}: duplicate image ids: {', '.join(sorted(dup.unique()[:5]))}"
        )
    return out


def _strings(values: pd.Series) -> pd.Series:
    """Python strings or None, as an object column (Arrow string on conversion)."""
    return pd.Series(
        [
            None if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA else str(v)
            for v in values
        ],
        dtype=object,
    )
