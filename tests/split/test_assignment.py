import pandas as pd
import pytest

from cxrflow.split import (
    PRESETS,
    SPLITS,
    SplitAssignmentError,
    SplitConfig,
    assign_splits,
    bucket,
    check_leakage,
    hash_split,
    read_splits,
    split_digest,
    write_splits,
)
from tests.split.helpers import make_manifest, subject_split

# Hashing 10k subjects: each split's subject fraction is within this of its target ratio
# (binomial sd at p=0.7, n=10k is 0.0046; 0.015 is > 3 sd).
RATIO_TOLERANCE = 0.015


@pytest.mark.parametrize("mode", ["hash", "stratified", "official"])
def test_no_subject_is_in_two_splits(mode):
    df = make_manifest(400, images=(1, 6))
    if mode == "official":
        first = df.groupby("subject_id")["image_id"].transform("first")
        df["official_split"] = [
            SPLITS[int(s[-6:]) % 3] if i == f else None
            for s, i, f in zip(df["subject_id"], df["image_id"], first, strict=True)
        ]
    out, frozen = assign_splits(df, SplitConfig(mode=mode))
    check_leakage(out)
    assert out["split"].notna().all() and set(out["split"]) <= set(SPLITS)
    assert out.groupby("subject_id")["split"].nunique().max() == 1
    assert frozen["subject_id"].is_unique and set(frozen["subject_id"]) == set(df["subject_id"])
    assert len(out) == len(df) and list(out["image_id"]) == list(df["image_id"])


def test_bucket_is_stable_uniform_and_seeded():
    assert bucket("subj-1", "s") == bucket("subj-1", "s")
    assert bucket("subj-1", "s") != bucket("subj-1", "t")
    values = [bucket(f"subj-{i}", "s") for i in range(2000)]
    assert all(0.0 <= v < 1.0 for v in values)
    assert abs(sum(values) / len(values) - 0.5) < 0.03
    assert hash_split("subj-1", "s", (0.7, 0.15, 0.15)) in SPLITS


@pytest.mark.parametrize("mode", ["hash", "stratified"])
def test_existing_subjects_never_move_when_the_data_grows(mode):
    config = SplitConfig(mode=mode)
    base = make_manifest(2000, seed=1)
    first, frozen = assign_splits(base, config)
    before = subject_split(first)

    # 50% more subjects, and more images of 500 old subjects (from a later ingest).
    more = make_manifest(1000, start=2000, seed=2, ingest_run="ingest-0002")
    old_again = make_manifest(500, seed=3, ingest_run="ingest-0002")
    old_again["image_id"] = old_again["image_id"] + "-later"
    grown = pd.concat([base, more, old_again], ignore_index=True)

    second, frozen2 = assign_splits(grown, config, frozen)
    after = subject_split(second)
    assert {s: after[s] for s in before} == before
    check_leakage(second)
    assert len(frozen2) == 3000
    kept = frozen2.set_index("subject_id").loc[frozen["subject_id"]]
    assert (kept["assigned_in"] == "ingest-0001").all()
    new = frozen2[~frozen2["subject_id"].isin(frozen["subject_id"])]
    assert (new["method"] == "hash").all() and (new["assigned_in"] == "ingest-0002").all()
    if mode == "hash":  # hashing alone, without the frozen file, gives the same answer
        assert subject_split(assign_splits(grown, config)[0]) == after


@pytest.mark.parametrize("mode", ["hash", "stratified"])
def test_row_order_does_not_matter(mode):
    df = make_manifest(600, seed=4)
    config = SplitConfig(mode=mode)
    a, fa = assign_splits(df, config)
    b, fb = assign_splits(df.sample(frac=1.0, random_state=7), config)
    assert subject_split(a) == subject_split(b)
    assert split_digest(a) == split_digest(b)
    pd.testing.assert_frame_equal(fa, fb)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_ratios_hold_on_10k_subjects(name):
    config = PRESETS[name]
    df = make_manifest(10_000, images=(1, 1), prevalence=())
    out, _ = assign_splits(df, config)
    observed = out["split"].value_counts(normalize=True)
    for split, target in zip(SPLITS, config.ratios, strict=True):
        assert abs(observed[split] - target) < RATIO_TOLERANCE, (split, observed[split], target)


def test_frozen_assignment_survives_a_change_of_settings(tmp_path):
    df = make_manifest(500, seed=5)
    out, frozen = assign_splits(df, SplitConfig(mode="stratified"))
    path = tmp_path / "splits.parquet"
    write_splits(frozen, path)
    reread = read_splits(path)
    pd.testing.assert_frame_equal(reread, frozen)
    assert set(reread["method"]) == {"stratified"}

    other = SplitConfig(ratios=(0.34, 0.33, 0.33), seed="another-seed", mode="hash")
    again, frozen2 = assign_splits(df, other, reread)
    assert subject_split(again) == subject_split(out)
    pd.testing.assert_frame_equal(frozen2, frozen)


def test_subjects_absent_from_the_manifest_stay_frozen():
    df = make_manifest(100)
    _, frozen = assign_splits(df, SplitConfig())
    smaller = df[df["subject_id"] != df["subject_id"].iloc[0]]
    _, frozen2 = assign_splits(smaller, SplitConfig(), frozen)
    pd.testing.assert_frame_equal(frozen2, frozen)


def test_assigned_in_can_be_given():
    _, frozen = assign_splits(make_manifest(20), SplitConfig(assigned_in="pipeline-42"))
    assert set(frozen["assigned_in"]) == {"pipeline-42"}


def test_a_bad_frozen_assignment_is_refused():
    _, frozen = assign_splits(make_manifest(20), SplitConfig())
    twice = pd.concat([frozen, frozen.iloc[:3]], ignore_index=True)
    with pytest.raises(SplitAssignmentError, match="3 subjects twice"):
        assign_splits(make_manifest(20), SplitConfig(), twice)
    bad = frozen.assign(split="holdout")
    with pytest.raises(SplitAssignmentError, match="holdout"):
        assign_splits(make_manifest(20), SplitConfig(), bad)


def _with_official(df: pd.DataFrame) -> pd.DataFrame:
    """Official splits for 3 of 4 subjects, on every image; the rest have none."""
    n = df["subject_id"].str[-6:].astype(int)
    df = df.copy()
    df["official_split"] = (
        n.map(lambda i: None if i % 4 == 3 else SPLITS[i % 4 % 3]).astype("string").to_numpy()
    )
    return df


def test_official_splits_are_kept_and_the_rest_hashed():
    df = _with_official(make_manifest(400))
    config = SplitConfig(mode="official")
    out, frozen = assign_splits(df, config)
    has = df["official_split"].notna()
    assert (out.loc[has, "split"] == df.loc[has, "official_split"]).all()
    methods = frozen.set_index("subject_id")["method"]
    assert set(methods[df.loc[has, "subject_id"]]) == {"official"}
    rest = df.loc[~has, "subject_id"].unique()
    assert set(methods[rest]) == {"hash"}
    expected = {s: hash_split(s, config.seed, config.ratios) for s in rest}
    assert {s: subject_split(out)[s] for s in rest} == expected


def test_official_split_may_be_on_some_images_only():
    df = _with_official(make_manifest(50, images=(2, 3)))
    first = df.groupby("subject_id").cumcount() == 0
    df.loc[~first, "official_split"] = None
    out, _ = assign_splits(df, SplitConfig(mode="official"))
    check_leakage(out)
    want = df[first].set_index("subject_id")["official_split"].dropna()
    got = out.groupby("subject_id")["split"].first()
    assert (got[want.index] == want).all()


def test_a_subject_in_two_official_splits_is_an_error_naming_the_count():
    df = _with_official(make_manifest(100, images=(2, 2)))
    torn = df["subject_id"].isin(["subj-000000", "subj-000001", "subj-000004"])
    second = df.groupby("subject_id").cumcount() == 1
    df.loc[torn & second, "official_split"] = "test"
    with pytest.raises(SplitAssignmentError, match="3 subjects have images in more than one"):
        assign_splits(df, SplitConfig(mode="official"))


def test_official_mode_refuses_unknown_values_and_a_missing_column():
    df = make_manifest(10)
    with pytest.raises(SplitAssignmentError, match="official_split"):
        assign_splits(df, SplitConfig(mode="official"))
    df["official_split"] = "holdout"
    with pytest.raises(SplitAssignmentError, match="holdout"):
        assign_splits(df, SplitConfig(mode="official"))


def test_a_changed_official_split_does_not_move_a_frozen_subject(caplog):
    df = _with_official(make_manifest(40))
    out, frozen = assign_splits(df, SplitConfig(mode="official"))
    changed = df.copy()
    moved = changed["subject_id"] == "subj-000000"  # official "train"
    changed.loc[moved, "official_split"] = "test"
    with caplog.at_level("WARNING", logger="cxrflow.split.assignment"):
        again, _ = assign_splits(changed, SplitConfig(mode="official"), frozen)
    assert subject_split(again) == subject_split(out)
    assert "1 known subjects have an official split other than their frozen one" in caplog.text


def _small_manifest_hashing_leaves_empty(split: str, n: int = 16) -> pd.DataFrame:
    """The first `n`-subject manifest (by id offset) whose hashing puts nobody in `split`."""
    config = SplitConfig()
    for start in range(0, 100_000, n):
        df = make_manifest(n, start=start)
        if split not in {hash_split(s, config.seed, config.ratios) for s in df["subject_id"]}:
            return df
    raise AssertionError("no such manifest")


@pytest.mark.parametrize("empty", ["val", "test"])
def test_a_split_hashing_leaves_empty_takes_one_new_subject(empty, caplog):
    df = _small_manifest_hashing_leaves_empty(empty)
    config = SplitConfig()
    with caplog.at_level("INFO"):
        out, frozen = assign_splits(df, config)
    assert set(out["split"]) == set(SPLITS)
    moved = frozen[frozen["method"] == "filled"]
    assert list(moved["split"]) == [empty]  # one subject, into the empty split
    rest = frozen[frozen["method"] == "hash"].set_index("subject_id")["split"]
    assert all(rest[s] == hash_split(s, config.seed, config.ratios) for s in rest.index)
    assert f"split {empty} was empty" in caplog.text
    # the same subjects give the same assignment, and the moved subject then stays frozen
    again, _ = assign_splits(df.sample(frac=1, random_state=1), config)
    assert subject_split(again) == subject_split(out)
    grown, _ = assign_splits(pd.concat([df, make_manifest(5, start=900_000)]), config, frozen)
    assert all(subject_split(grown)[s] == subject_split(out)[s] for s in df["subject_id"])


def test_frozen_and_official_subjects_never_fill_an_empty_split(caplog):
    df = make_manifest(6)
    df["official_split"] = "train"  # a release whose every subject is published as train
    out, frozen = assign_splits(df, SplitConfig(mode="official"))
    assert set(out["split"]) == {"train"} and set(frozen["method"]) == {"official"}
    assert "split val is empty and no new subject can move into it" in caplog.text
    frozen_train = frozen.assign(method="hash")
    out, _ = assign_splits(df.drop(columns="official_split"), SplitConfig(), frozen_train)
    assert set(out["split"]) == {"train"}  # frozen subjects keep their split
