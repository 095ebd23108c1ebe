"""The cohort's characteristics from the manifest: images, subjects, sex and age by split."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cxrflow.evaluation.tables import Table
from cxrflow.heads.demographics import AGE_EDGES, bin_labels

SPLITS = ("train", "val", "test")
UNKNOWN = "unknown"


def age_groups(ages: pd.Series) -> pd.Series:
    """Age bins of Table E.1 (`<20`, `20-40`, ..., `>80`; a value on an edge goes up)."""
    labels = bin_labels(AGE_EDGES)
    v = pd.to_numeric(ages, errors="coerce").to_numpy(dtype=np.float64)
    idx = np.digitize(np.nan_to_num(v, nan=-1.0), AGE_EDGES)
    out = np.asarray(labels, dtype=object)[idx]
    out[np.isnan(v)] = UNKNOWN
    return pd.Series(out, index=ages.index, dtype=object)


def sex_groups(sex: pd.Series) -> pd.Series:
    """F, M or unknown."""
    s = sex.astype("string").str.upper().str.strip()
    return s.where(s.isin(["F", "M"]), UNKNOWN).fillna(UNKNOWN).astype(object)


def demographic_groups(manifest: pd.DataFrame) -> pd.DataFrame:
    """image_id -> sex and age group (the strata of the fairness analysis)."""
    sex = manifest["sex"] if "sex" in manifest else pd.Series(None, index=manifest.index)
    age = (
        manifest["age_years"] if "age_years" in manifest else pd.Series(None, index=manifest.index)
    )
    return pd.DataFrame(
        {
            "image_id": manifest["image_id"].astype(str).to_numpy(),
            "sex": sex_groups(sex).to_numpy(),
            "age_group": age_groups(age).to_numpy(),
        }
    )


def _cell(n: int, suppress_below: int) -> str:
    # small counts can single people out in a shared document: show them as "<k"
    return f"<{suppress_below}" if 0 < n < suppress_below else str(n)


def cohort_table(manifest: pd.DataFrame, *, suppress_below: int = 0) -> Table:
    """Counts by split: subjects, studies, images, then images by sex, age group and view."""
    df = manifest.copy()
    df["split"] = df["split"].fillna(UNKNOWN) if "split" in df else UNKNOWN
    groups = demographic_groups(df)
    df["sex_group"], df["age_group"] = groups["sex"].to_numpy(), groups["age_group"].to_numpy()
    splits = [s for s in SPLITS if (df["split"] == s).any()]
    splits += sorted(set(df["split"].astype(str)) - set(SPLITS))
    parts = {s: df[df["split"] == s] for s in splits} | {"all": df}

    def row(label: str, count) -> tuple[str, ...]:
        return (label, *(_cell(int(count(p)), suppress_below) for p in parts.values()))

    rows = [
        row("subjects", lambda p: p["subject_id"].nunique()),
        row("studies", lambda p: p["study_id"].nunique()),
        row("images", len),
    ]
    for sex in ("F", "M", UNKNOWN):
        rows.append(row(f"sex {sex}", lambda p, s=sex: (p["sex_group"] == s).sum()))
    for age in [*bin_labels(AGE_EDGES), UNKNOWN]:
        rows.append(row(f"age {age}", lambda p, a=age: (p["age_group"] == a).sum()))
    for view in sorted(df["view"].dropna().astype(str).unique()):
        rows.append(row(f"view {view}", lambda p, v=view: (p["view"] == v).sum()))
    caption = "Images per split unless stated; age in years at the study (Table E.1 bins)."
    if suppress_below:
        caption += f" Counts below {suppress_below} are shown as <{suppress_below}."
    return Table(
        "table5_cohort", "Cohort characteristics", ("", *parts.keys()), tuple(rows), caption
    )


def cohort_metrics(manifest: pd.DataFrame) -> dict[str, float]:
    """Flat counts for KFP Metrics: images and subjects per split."""
    df = manifest
    split = df["split"] if "split" in df else pd.Series(UNKNOWN, index=df.index)
    out: dict[str, float] = {}
    for s, part in df.groupby(split.fillna(UNKNOWN)):
        out[f"cohort.images.{s}"] = float(len(part))
        out[f"cohort.subjects.{s}"] = float(part["subject_id"].nunique())
    return out
