import numpy as np
import pandas as pd
import pytest

from cxrflow.manifest import LABEL_COLUMNS
from cxrflow.split import (
    SPLITS,
    SplitConfig,
    assign_splits,
    check_leakage,
    iterative_stratification,
    max_prevalence_deviation,
    split_report,
    stratified_split,
    subject_labels,
)
from tests.split.helpers import make_manifest, subject_split

# 300 subjects, 10 findings at 2%..30%, 80% of label cells annotated, 70/15/15.
N_SUBJECTS = 300
RARE = 3  # the three rarest findings: 2%, 5.1%, 8.2%
# Subject-level prevalence (positive subjects / annotated subjects) of every split is within
# this of the cohort's for the rare findings (one subject in a 45-subject split is 0.022)...
RARE_TOLERANCE = 0.03
# ...and within this for every finding (the last-processed, commonest labels get leftovers).
ALL_TOLERANCE = 0.08
# Image-level prevalence (the split report's positives / annotated images), every finding.
IMAGE_TOLERANCE = 0.08


def _subject_deviation(out: pd.DataFrame) -> np.ndarray:
    """Per finding, max over splits of |subject prevalence(split) - subject prevalence(all)|."""
    labels = subject_labels(out, LABEL_COLUMNS)
    split = out.groupby("subject_id")["split"].first().loc[list(labels.subject_ids)].to_numpy()
    overall = labels.positive.sum(0) / labels.annotated.sum(0)
    per_split = [
        labels.positive[split == s].sum(0) / labels.annotated[split == s].sum(0) for s in SPLITS
    ]
    return np.abs(np.array(per_split) - overall).max(axis=0)


def _cohort(seed: int) -> pd.DataFrame:
    return make_manifest(N_SUBJECTS, seed=seed, annotated=0.8)


def test_subject_labels_treat_missing_as_unknown():
    df = make_manifest(2, images=(2, 2), prevalence=())
    col = LABEL_COLUMNS[0]
    df[col] = pd.array([1, pd.NA, pd.NA, pd.NA], dtype="Int8")  # subj 0: pos; subj 1: unknown
    df[LABEL_COLUMNS[1]] = pd.array([0, pd.NA, 0, 1], dtype="Int8")  # subj 0: neg; subj 1: pos
    labels = subject_labels(df, LABEL_COLUMNS[:2])
    assert labels.positive.tolist() == [[True, False], [False, True]]
    assert labels.negative.tolist() == [[False, True], [False, False]]
    assert labels.annotated.tolist() == [[True, True], [False, True]]


def test_stratified_split_keeps_prevalence_close_to_the_cohort():
    out, frozen = assign_splits(_cohort(0), SplitConfig(mode="stratified"))
    check_leakage(out)
    assert set(frozen["method"]) == {"stratified"}
    counts = frozen["split"].value_counts()
    for split, ratio in zip(SPLITS, (0.7, 0.15, 0.15), strict=True):
        assert abs(counts[split] - ratio * N_SUBJECTS) <= 2
    dev = _subject_deviation(out)
    assert dev[:RARE].max() < RARE_TOLERANCE, dev
    assert dev.max() < ALL_TOLERANCE, dev
    assert max_prevalence_deviation(split_report(out)).max() < IMAGE_TOLERANCE


def test_stratified_beats_hashing_on_the_rare_findings():
    worst = {"hash": [], "stratified": []}
    for seed in range(8):
        df = _cohort(seed)
        for mode in worst:
            out, _ = assign_splits(df, SplitConfig(mode=mode, seed=f"seed-{seed}"))
            worst[mode].append(_subject_deviation(out)[:RARE].max())
    hashed, stratified = np.mean(worst["hash"]), np.mean(worst["stratified"])
    assert stratified < 0.5 * hashed, (stratified, hashed)
    assert max(worst["stratified"]) < RARE_TOLERANCE


def test_stratified_split_is_deterministic_by_seed():
    df = _cohort(1)
    a = stratified_split(df, (0.7, 0.15, 0.15), "s", LABEL_COLUMNS)
    b = stratified_split(df.iloc[::-1], (0.7, 0.15, 0.15), "s", LABEL_COLUMNS)
    c = stratified_split(df, (0.7, 0.15, 0.15), "t", LABEL_COLUMNS)
    pd.testing.assert_series_equal(a, b)
    assert not a.equals(c)


def test_stratified_mode_hashes_new_subjects_once_frozen():
    config = SplitConfig(mode="stratified")
    first, frozen = assign_splits(_cohort(2), config)
    more = make_manifest(100, start=N_SUBJECTS, seed=3, ingest_run="ingest-0002")
    out, frozen2 = assign_splits(pd.concat([_cohort(2), more]), config, frozen)
    new = frozen2[frozen2["subject_id"].isin(more["subject_id"])]
    assert set(new["method"]) == {"hash"}
    before = subject_split(first)
    assert {s: v for s, v in subject_split(out).items() if s in before} == before


def test_iterative_stratification_rare_label_goes_by_ratio():
    targets = np.zeros((100, 1), dtype=bool)
    targets[:10, 0] = True
    got = iterative_stratification(targets, [0.6, 0.2, 0.2], np.random.default_rng(0))
    assert np.bincount(got[:10], minlength=3).tolist() == [6, 2, 2]
    assert np.bincount(got, minlength=3).tolist() == [60, 20, 20]


@pytest.mark.parametrize("n", [0, 1, 2])
def test_tiny_cohorts_do_not_fail(n):
    out, frozen = assign_splits(make_manifest(n), SplitConfig(mode="stratified"))
    assert len(frozen) == n and out["split"].notna().all()
