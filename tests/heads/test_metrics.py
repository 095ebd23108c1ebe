"""AUPRC/AUROC agree with scikit-learn (nulls left out); Dice on hand-made masks."""

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from cxrflow.heads.metrics import (
    binary_score,
    curve_data,
    dice,
    dice_per_structure,
    macro,
    mean_std,
    multilabel_scores,
)

Y = np.array([1, 0, 1, 1, 0, 0, 1, 0], dtype=float)
S = np.array([0.9, 0.1, 0.8, 0.3, 0.4, 0.35, 0.7, 0.6])


def test_scores_equal_sklearn_on_fixed_inputs():
    got = binary_score(Y, S)
    assert got.auprc == average_precision_score(Y, S)
    assert got.auroc == roc_auc_score(Y, S)
    assert (got.positives, got.labelled) == (4, 8)


def test_null_labels_are_left_out():
    y = Y.copy()
    y[[1, 3]] = np.nan  # one negative, one positive not annotated
    keep = ~np.isnan(y)
    got = binary_score(y, S)
    assert got.auprc == average_precision_score(y[keep], S[keep])
    assert got.auroc == roc_auc_score(y[keep], S[keep])
    assert (got.positives, got.labelled) == (3, 6)


def test_class_without_positives_is_nan_and_left_out_of_macro():
    labels = np.stack([Y, np.zeros_like(Y), np.full_like(Y, np.nan)], axis=1)
    scores = np.stack([S, S, S], axis=1)
    got = multilabel_scores(labels, scores, ["a", "none", "unlabelled"])
    assert math.isnan(got["none"].auprc) and math.isnan(got["none"].auroc)
    assert math.isnan(got["unlabelled"].auprc) and got["unlabelled"].labelled == 0
    assert macro([s.auprc for s in got.values()]) == average_precision_score(Y, S)
    assert math.isnan(macro([math.nan]))
    assert mean_std([0.2, 0.4, math.nan]) == pytest.approx((0.3, 0.1))


def test_bad_labels_are_refused():
    with pytest.raises(ValueError, match="0, 1 or NaN"):
        binary_score(np.array([0, 2.0]), np.array([0.1, 0.2]))


def test_dice_on_hand_made_masks():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[:2, :2] = True  # 4 pixels
    b[:2, :3] = True  # 6 pixels, 4 shared
    assert dice(a, b) == pytest.approx(2 * 4 / 10)
    assert dice(a, a) == 1.0
    assert dice(a, ~a) == 0.0
    empty = np.zeros((4, 4), bool)
    assert dice(empty, empty) == 1.0  # convention: nothing to find, nothing found
    assert dice(a, empty) == 0.0


def test_dice_per_structure_uses_images_that_have_the_structure():
    t = np.zeros((3, 2, 4, 4), bool)
    p = np.zeros_like(t)
    t[0, 0, :2] = True
    p[0, 0, :2] = True  # Dice 1
    t[1, 0, :1] = True
    p[1, 0, :2] = True  # Dice 2*4/(4+8)
    p[2, 1, :1] = True  # structure 1 absent everywhere: no image counts
    got = dice_per_structure(p, t, ["lung", "tube"])
    assert got["lung"].images == 2
    assert got["lung"].mean == pytest.approx((1 + 8 / 12) / 2)
    assert got["tube"].images == 0 and math.isnan(got["tube"].mean)


def test_curve_data_is_kfp_shaped():
    c = curve_data(Y, S, "x", threshold=0.5)
    # predictions >= 0.5: 0.9, 0.8, 0.7, 0.6 -> tp 3, fp 1; rest: fn 1, tn 3
    assert c["confusion_matrix"] == [[3, 1], [1, 3]]
    assert c["categories"] == ["negative", "positive"]
    assert len(c["roc"]["fpr"]) == len(c["roc"]["tpr"]) == len(c["roc"]["threshold"])
    assert max(c["roc"]["threshold"]) <= 1.0  # no +inf: JSON-safe
    assert len(c["pr"]["precision"]) == len(c["pr"]["recall"]) == len(c["pr"]["threshold"])
