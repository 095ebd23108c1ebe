"""Multi-label iterative stratification (Sechidis et al. 2011), grouped by subject.

A subject is positive for a finding if any of its images is, negative if it has annotated
images and none is positive, and unknown if none of its images is annotated. Both the
positive and the annotated-negative counts of every finding are stratified, so that the
prevalence (positives / annotated) of each split follows the cohort's, and an unknown label
never counts as a negative.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cxrflow.split.config import SPLITS
from cxrflow.split.hashing import bucket

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SubjectLabels:
    """Subject-level label matrices: positives and annotated negatives, one row a subject."""

    subject_ids: tuple[str, ...]
    positive: np.ndarray  # bool, (subjects, findings)
    negative: np.ndarray  # bool, (subjects, findings): annotated and never positive
    label_columns: tuple[str, ...]

    @property
    def annotated(self) -> np.ndarray:
        return self.positive | self.negative


def subject_labels(df: pd.DataFrame, label_columns: Sequence[str]) -> SubjectLabels:
    """Collapse image rows to subject label vectors (any positive image -> positive)."""
    columns = [c for c in label_columns if c in df.columns]
    missing = sorted(set(label_columns) - set(columns))
    if missing:
        log.warning("label columns not in the manifest, not stratified: %s", ", ".join(missing))
    ids = df["subject_id"].astype(str)
    if not columns:
        subjects = sorted(ids.unique())
        empty = np.zeros((len(subjects), 0), dtype=bool)
        return SubjectLabels(tuple(subjects), empty, empty.copy(), ())
    labels = df[columns].apply(pd.to_numeric, errors="coerce")
    pos = (labels == 1).groupby(ids.values).any()
    ann = labels.notna().groupby(ids.values).any()
    pos = pos.sort_index()
    ann = ann.loc[pos.index]
    positive = pos.to_numpy(dtype=bool)
    negative = ann.to_numpy(dtype=bool) & ~positive
    return SubjectLabels(tuple(map(str, pos.index)), positive, negative, tuple(columns))


def rng_for(seed: str, purpose: str) -> np.random.Generator:
    """A numpy generator derived deterministically from a text seed."""
    digest = hashlib.sha256(f"{seed}\x1f{purpose}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "big"))


def iterative_stratification(
    targets: np.ndarray, ratios: Sequence[float], rng: np.random.Generator
) -> np.ndarray:
    """Assign each row of a boolean (examples, labels) matrix to a subset; returns indices.

    Sechidis et al. 2011, Algorithm 1: repeatedly take the label with the fewest examples
    left, give each of its examples to the subset that most wants that label (ties: the
    subset that most wants examples overall, then at random); examples without any label
    go last to the subsets that most want examples. Rows are processed in their given order.
    """
    targets = np.asarray(targets, dtype=bool)
    n, n_labels = targets.shape
    r = np.asarray(ratios, dtype=float)
    wanted = r * n  # examples each subset still wants
    wanted_label = np.outer(r, targets.sum(axis=0)).astype(float)  # (subsets, labels)
    assigned = np.full(n, -1, dtype=np.int64)
    remaining = targets.copy()
    left = remaining.sum(axis=0).astype(np.int64)

    def pick(candidates: np.ndarray) -> int:
        best = candidates[wanted[candidates] == wanted[candidates].max()]
        return int(best[0] if len(best) == 1 else rng.choice(best))

    def give(i: int, subset: int) -> None:
        assigned[i] = subset
        wanted[subset] -= 1
        row = targets[i]
        wanted_label[subset, row] -= 1
        left[row] -= 1
        remaining[i] = False

    while n_labels and left.sum() > 0:
        counts = np.where(left > 0, left, np.iinfo(np.int64).max)
        lowest = np.flatnonzero(counts == counts.min())
        label = int(lowest[0] if len(lowest) == 1 else rng.choice(lowest))
        for i in np.flatnonzero(remaining[:, label]):
            want = wanted_label[:, label]
            give(int(i), pick(np.flatnonzero(want == want.max())))
    for i in np.flatnonzero(assigned < 0):
        give(int(i), pick(np.arange(len(r))))
    return assigned


def stratified_subject_assignment(
    df: pd.DataFrame,
    ratios: Sequence[float],
    seed: str,
    label_columns: Sequence[str],
    names: Sequence[str | int] = SPLITS,
) -> pd.Series:
    """Subjects split into `names` by iterative stratification; Series indexed by subject_id.

    Deterministic by seed and independent of row order: subjects are processed in the order
    of their seeded hash, and ties are broken by a generator derived from the seed.
    """
    if len(names) != len(ratios):
        raise ValueError(f"need one ratio per subset: {len(ratios)} ratios, {len(names)} names")
    labels = subject_labels(df, label_columns)
    order = np.argsort([bucket(s, seed) for s in labels.subject_ids], kind="stable")
    targets = np.concatenate([labels.positive, labels.negative], axis=1)[order]
    subsets = iterative_stratification(targets, ratios, rng_for(seed, "stratified"))
    ids = np.asarray(labels.subject_ids, dtype=object)[order]
    out = pd.Series(np.asarray(names, dtype=object)[subsets], index=ids, name="split")
    out.index.name = "subject_id"
    return out.sort_index()


def stratified_split(
    df: pd.DataFrame, ratios: Sequence[float], seed: str, label_columns: Sequence[str]
) -> pd.Series:
    """Train/val/test for each subject of a labelled cohort, stratified on its findings."""
    return stratified_subject_assignment(df, ratios, seed, label_columns, SPLITS)
