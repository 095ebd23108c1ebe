"""The split report (counts and label prevalence per split) and the assignment digest."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pandas as pd

from cxrflow.manifest import LABEL_COLUMNS
from cxrflow.split.config import SPLITS, SplitConfig

DIGEST_CHARS = 16


def split_digest(df: pd.DataFrame, split_column: str = "split") -> str:
    """A short sha256 hex over the sorted unique (subject_id, split) pairs of `df`."""
    ids, splits = df["subject_id"].astype(str), df[split_column].astype(str)
    pairs = sorted(set(zip(ids, splits, strict=True)))
    h = hashlib.sha256()
    for subject, split in pairs:
        h.update(f"{subject}\t{split}\n".encode())
    return h.hexdigest()[:DIGEST_CHARS]


def _finding(column: str) -> str:
    return column.removeprefix("label_")


def split_report(
    df: pd.DataFrame, label_columns: Sequence[str] = LABEL_COLUMNS, split_column: str = "split"
) -> pd.DataFrame:
    """One row per split (and "all"): subjects, images, fractions, positives/annotated/prev."""
    columns = [c for c in label_columns if c in df.columns]
    names = [s for s in SPLITS if (df[split_column] == s).any()]
    names += sorted(set(df[split_column].dropna().astype(str)) - set(SPLITS))
    rows: list[dict[str, object]] = []
    n_subjects = df["subject_id"].nunique()
    for name in [*names, "all"]:
        part = df if name == "all" else df[df[split_column] == name]
        row: dict[str, object] = {
            "split": name,
            "subjects": int(part["subject_id"].nunique()),
            "images": len(part),
            "subject_fraction": part["subject_id"].nunique() / n_subjects if n_subjects else 0.0,
            "image_fraction": len(part) / len(df) if len(df) else 0.0,
        }
        for column in columns:
            values = pd.to_numeric(part[column], errors="coerce")
            annotated = int(values.notna().sum())
            positives = int((values == 1).sum())
            finding = _finding(column)
            row[f"{finding}_positives"] = positives
            row[f"{finding}_annotated"] = annotated
            row[f"{finding}_prevalence"] = positives / annotated if annotated else np.nan
        rows.append(row)
    return pd.DataFrame(rows).set_index("split")


def prevalence_table(report: pd.DataFrame) -> pd.DataFrame:
    """Prevalence (positives / annotated) with findings as rows and splits as columns."""
    cols = [c for c in report.columns if c.endswith("_prevalence")]
    table = report[cols].T
    table.index = [c.removesuffix("_prevalence") for c in cols]
    return table


def max_prevalence_deviation(report: pd.DataFrame) -> pd.Series:
    """Per finding, the largest |prevalence(split) - prevalence(all)| over the splits."""
    table = prevalence_table(report)
    splits = [c for c in table.columns if c != "all"]
    return table[splits].sub(table["all"], axis=0).abs().max(axis=1)


def _pct(x: float) -> str:
    return "n/a" if pd.isna(x) else f"{100 * x:.1f}%"


def _prevalence_cell(row: pd.Series, finding: str) -> str:
    positives, annotated = int(row[f"{finding}_positives"]), int(row[f"{finding}_annotated"])
    return f"{_pct(row[f'{finding}_prevalence'])} ({positives}/{annotated})"


def report_markdown(
    df: pd.DataFrame,
    *,
    config: SplitConfig | None = None,
    digest: str | None = None,
    new_subjects: int | None = None,
    title: str = "Split by subject",
    split_column: str = "split",
) -> str:
    """The split report as Markdown (a KFP Markdown artifact, an MLflow text artifact)."""
    label_columns = config.label_columns if config else LABEL_COLUMNS
    report = split_report(df, label_columns, split_column)
    digest = digest or split_digest(df, split_column)
    lines = [f"# {title}", ""]
    if config is not None:
        lines.append(
            f"Mode **{config.mode}**, ratios {config.ratios_text()} (train, val, test), "
            f"seed `{config.seed}`."
        )
    lines.append(f"Assignment digest `{digest}`.")
    if new_subjects is not None:
        lines.append(f"New subjects assigned in this run: {new_subjects}.")
    lines += ["", "| split | subjects | images | % subjects | % images |"]
    lines += ["| --- | ---: | ---: | ---: | ---: |"]
    for name in report.index:
        r = report.loc[name]
        lines.append(
            f"| {name} | {int(r['subjects'])} | {int(r['images'])} | "
            f"{_pct(r['subject_fraction'])} | {_pct(r['image_fraction'])} |"
        )
    findings = [
        c.removesuffix("_prevalence")
        for c in report.columns
        if c.endswith("_prevalence") and report.loc["all", c.replace("prevalence", "annotated")]
    ]
    if findings:
        lines += ["", "Label prevalence per split: positives / annotated images.", ""]
        lines.append("| finding | " + " | ".join(map(str, report.index)) + " |")
        lines.append("| --- |" + " ---: |" * len(report.index))
        for f in findings:
            cells = [_prevalence_cell(report.loc[name], f) for name in report.index]
            lines.append(f"| {f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
