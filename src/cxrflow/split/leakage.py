"""The subject-leakage check: no subject may have images in two splits."""

from __future__ import annotations

import pandas as pd

MAX_EXAMPLES = 5


class LeakageError(RuntimeError):
    """A subject has images in more than one split."""

    def __init__(self, subjects: list[str], split_column: str = "split") -> None:
        self.subjects = subjects
        examples = ", ".join(subjects[:MAX_EXAMPLES])
        more = f" and {len(subjects) - MAX_EXAMPLES} more" if len(subjects) > MAX_EXAMPLES else ""
        super().__init__(
            f"subject leakage: {len(subjects)} subjects have images in more than one "
            f"{split_column!r} value, e.g. {examples}{more}"
        )


def leaking_subjects(df: pd.DataFrame, split_column: str = "split") -> list[str]:
    """Subject ids (sorted) whose rows carry more than one split."""
    for column in ("subject_id", split_column):
        if column not in df.columns:
            raise KeyError(f"leakage check needs the column {column!r}")
    rows = df[df[split_column].notna()]
    n = rows.groupby(rows["subject_id"].astype(str))[split_column].nunique()
    return sorted(n[n > 1].index)


def check_leakage(df: pd.DataFrame, split_column: str = "split") -> None:
    """Raise LeakageError if any subject_id appears in two splits."""
    subjects = leaking_subjects(df, split_column)
    if subjects:
        raise LeakageError(subjects, split_column)
