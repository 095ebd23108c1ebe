import numpy as np
import pandas as pd
import pytest

from cxrflow.manifest import LABEL_COLUMNS
from cxrflow.split import stratified_subject_folds, subject_folds, subject_labels
from tests.split.helpers import make_manifest


@pytest.mark.parametrize("folder", [subject_folds, stratified_subject_folds])
def test_folds_are_by_subject_balanced_and_deterministic(folder):
    df = make_manifest(303, images=(1, 5), seed=1, annotated=0.8)
    folds = folder(df, 5, "seed")
    assert folds.index.equals(df.index) and folds.name == "fold"
    assert set(folds) == set(range(5))
    assert df.assign(fold=folds).groupby("subject_id")["fold"].nunique().max() == 1
    sizes = df.assign(fold=folds).groupby("fold")["subject_id"].nunique()
    limit = 1 if folder is subject_folds else 3
    assert sizes.max() - sizes.min() <= limit, sizes.tolist()
    pd.testing.assert_series_equal(folds, folder(df, 5, "seed"))
    shuffled = df.sample(frac=1.0, random_state=3)
    pd.testing.assert_series_equal(folder(shuffled, 5, "seed").sort_index(), folds)
    assert not folds.equals(folder(df, 5, "other"))


def test_stratified_folds_spread_a_rare_finding():
    df = make_manifest(300, seed=2, exact_prevalence=True)  # 6 subjects positive for the rarest
    folds = stratified_subject_folds(df, 3, 0)
    labels = subject_labels(df, LABEL_COLUMNS[:1])
    fold_of = df.assign(fold=folds).groupby("subject_id")["fold"].first()
    positive = fold_of.loc[np.asarray(labels.subject_ids)[labels.positive[:, 0]]]
    assert np.bincount(positive, minlength=3).tolist() == [2, 2, 2]


def test_bad_k_is_refused():
    df = make_manifest(3)
    with pytest.raises(ValueError, match="k"):
        subject_folds(df, 1, 0)
    with pytest.raises(ValueError, match="at least 4 subjects"):
        subject_folds(df, 4, 0)
