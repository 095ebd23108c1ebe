"""Cross-validation folds by subject for the evaluation stages."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from cxrflow.manifest import LABEL_COLUMNS
from cxrflow.split.hashing import bucket
from cxrflow.split.stratified import stratified_subject_assignment


def _check_k(df: pd.DataFrame, k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ValueError(f"k must be an integer >= 2, got {k!r}")
    n = df["subject_id"].nunique()
    if n < k:
        raise ValueError(f"k={k} folds need at least {k} subjects, got {n}")


def subject_folds(df: pd.DataFrame, k: int, seed: str | int) -> pd.Series:
    """Fold index (0..k-1) of each row; a subject's rows share a fold, folds differ by <= 1.

    Subjects are ordered by their seeded hash and dealt round-robin, so the folds are
    deterministic and do not depend on row order.
    """
    _check_k(df, k)
    ids = df["subject_id"].astype(str)
    subjects = sorted(ids.unique(), key=lambda s: (bucket(s, f"{seed}/folds"), s))
    fold_of = {s: i % k for i, s in enumerate(subjects)}
    return pd.Series(ids.map(fold_of).to_numpy(dtype=np.int64), index=df.index, name="fold")


def stratified_subject_folds(
    df: pd.DataFrame,
    k: int,
    seed: str | int,
    label_columns: Sequence[str] = LABEL_COLUMNS,
) -> pd.Series:
    """Fold index of each row, by subject, with folds stratified on the findings."""
    _check_k(df, k)
    folds = stratified_subject_assignment(
        df, [1.0 / k] * k, f"{seed}/folds", label_columns, names=list(range(k))
    )
    ids = df["subject_id"].astype(str)
    return pd.Series(ids.map(folds).to_numpy(dtype=np.int64), index=df.index, name="fold")
