"""Metrics as the paper reports them: AUPRC/AUROC per finding (with nulls), Dice per structure.

Conventions:
- labels are float arrays with NaN for "not annotated"; those entries are left out;
- a finding whose labelled entries are all positive or all negative has no AUPRC/AUROC: NaN
  (never 0), and the macro average leaves it out;
- Dice of two empty masks is 1 (nothing to find, nothing found); empty ground truth with a
  non-empty prediction is 0. Table-3 style means use only images whose ground truth is
  non-empty ("the cases with masks").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)


@dataclass(frozen=True)
class BinaryScore:
    """AUPRC and AUROC of one finding, with its counts; NaN when undefined."""

    auprc: float
    auroc: float
    positives: int
    labelled: int


def _labelled(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true, dtype=np.float64).ravel()
    y_score = np.asarray(y_score, dtype=np.float64).ravel()
    if y_true.shape != y_score.shape:
        raise ValueError(f"labels {y_true.shape} and scores {y_score.shape} differ in shape")
    keep = ~np.isnan(y_true)
    bad = set(np.unique(y_true[keep])) - {0.0, 1.0}
    if bad:
        raise ValueError(f"labels must be 0, 1 or NaN; got {sorted(bad)}")
    return y_true[keep].astype(int), y_score[keep]


def binary_score(y_true: np.ndarray, y_score: np.ndarray) -> BinaryScore:
    """scikit-learn's AP and ROC AUC on the labelled entries; NaN without both classes."""
    y, s = _labelled(y_true, y_score)
    pos = int(y.sum())
    if pos == 0 or pos == len(y):
        return BinaryScore(math.nan, math.nan, pos, len(y))
    return BinaryScore(
        float(average_precision_score(y, s)), float(roc_auc_score(y, s)), pos, len(y)
    )


def multilabel_scores(
    y_true: np.ndarray, y_score: np.ndarray, names: Sequence[str]
) -> dict[str, BinaryScore]:
    """Per-finding scores of (N, C) labels (NaN = null) and scores."""
    if y_true.ndim != 2 or y_true.shape[1] != len(names):
        raise ValueError(f"labels of shape {y_true.shape} do not match {len(names)} names")
    return {n: binary_score(y_true[:, i], y_score[:, i]) for i, n in enumerate(names)}


def macro(values: Sequence[float]) -> float:
    """Mean of the defined (non-NaN) values; NaN when none is."""
    arr = np.asarray([v for v in values if not math.isnan(v)], dtype=np.float64)
    return float(arr.mean()) if arr.size else math.nan


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and (population) standard deviation of the defined values."""
    arr = np.asarray([v for v in values if not math.isnan(v)], dtype=np.float64)
    if not arr.size:
        return math.nan, math.nan
    return float(arr.mean()), float(arr.std())


def dice(pred: np.ndarray, target: np.ndarray) -> float:
    """Dice of two boolean masks; 1.0 when both are empty."""
    p, t = np.asarray(pred, dtype=bool), np.asarray(target, dtype=bool)
    if p.shape != t.shape:
        raise ValueError(f"prediction {p.shape} and target {t.shape} differ in shape")
    denom = int(p.sum()) + int(t.sum())
    if denom == 0:
        return 1.0
    return 2.0 * int(np.logical_and(p, t).sum()) / denom


@dataclass(frozen=True)
class DiceScore:
    """Dice of one structure: mean and std over the test images that have it."""

    mean: float
    std: float
    images: int


def dice_per_structure(
    preds: np.ndarray, targets: np.ndarray, names: Sequence[str]
) -> dict[str, DiceScore]:
    """(N, K, H, W) boolean predictions and targets -> Dice per structure (non-empty targets)."""
    out = {}
    for k, name in enumerate(names):
        values = [
            dice(preds[i, k], targets[i, k]) for i in range(len(preds)) if targets[i, k].any()
        ]
        m, s = mean_std(values)
        out[name] = DiceScore(m, s, len(values))
    return out


def curve_data(
    y_true: np.ndarray, y_score: np.ndarray, name: str, threshold: float = 0.5
) -> dict[str, Any]:
    """PR/ROC points and the confusion matrix at `threshold`, as plain JSON-safe dicts.

    Shaped for KFP's `ClassificationMetrics`: `log_confusion_matrix(d["categories"],
    d["confusion_matrix"])` and `log_roc_curve(**d["roc"])`; `pr` holds the PR points.
    """
    y, s = _labelled(y_true, y_score)
    cm = confusion_matrix(y, (s >= threshold).astype(int), labels=[0, 1])
    out: dict[str, Any] = {
        "class": name,
        "threshold": threshold,
        "categories": ["negative", "positive"],
        "confusion_matrix": cm.astype(int).tolist(),
        "roc": {"fpr": [], "tpr": [], "threshold": []},
        "pr": {"precision": [], "recall": [], "threshold": []},
    }
    if 0 < y.sum() < len(y):
        fpr, tpr, thr = roc_curve(y, s)
        precision, recall, pr_thr = precision_recall_curve(y, s)
        # the first ROC threshold is +inf; scores are probabilities, so 1.0 says the same
        out["roc"] = {
            "fpr": fpr.tolist(),
            "tpr": tpr.tolist(),
            "threshold": np.minimum(thr, 1.0).tolist(),
        }
        out["pr"] = {
            "precision": precision.tolist(),
            "recall": recall.tolist(),
            "threshold": [*pr_thr.tolist(), 1.0],
        }
    return out
