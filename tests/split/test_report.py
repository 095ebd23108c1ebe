import numpy as np
import pandas as pd

from cxrflow.split import SplitConfig, assign_splits, report_markdown, split_digest, split_report
from tests.split.helpers import make_manifest


def _tiny() -> pd.DataFrame:
    df = make_manifest(4, images=(2, 2), prevalence=())
    df["split"] = np.repeat(["train", "train", "val", "test"], 2)
    df["label_cardiomegaly"] = pd.array([1, 0, 1, pd.NA, pd.NA, pd.NA, 0, 0], dtype="Int8")
    return df


def test_report_counts_and_prevalence_over_annotated():
    report = split_report(_tiny())
    assert list(report.index) == ["train", "val", "test", "all"]
    assert report.loc["train", "subjects"] == 2 and report.loc["train", "images"] == 4
    assert report.loc["all", "images"] == 8
    assert report.loc["train", "cardiomegaly_prevalence"] == 2 / 3  # the null is not negative
    assert np.isnan(report.loc["val", "cardiomegaly_prevalence"])
    assert report.loc["test", "cardiomegaly_prevalence"] == 0.0
    assert report.loc["all", "cardiomegaly_positives"] == 2
    assert report.loc["all", "cardiomegaly_annotated"] == 5


def test_markdown_has_counts_prevalence_and_digest():
    df = _tiny()
    md = report_markdown(df, config=SplitConfig(), new_subjects=4)
    assert md.startswith("# Split by subject")
    assert f"`{split_digest(df)}`" in md
    assert "| train | 2 | 4 | 50.0% | 50.0% |" in md
    assert "| cardiomegaly | 66.7% (2/3) | n/a (0/0) | 0.0% (0/2) | 40.0% (2/5) |" in md
    assert "0.7,0.15,0.15" in md and "New subjects assigned in this run: 4." in md


def test_digest_identifies_the_assignment_not_the_rows():
    df, _ = assign_splits(make_manifest(200), SplitConfig())
    digest = split_digest(df)
    assert len(digest) == 16 and int(digest, 16) >= 0
    assert split_digest(df.sample(frac=1.0, random_state=1)) == digest
    assert split_digest(pd.concat([df, df.iloc[:5]])) == digest  # more images, same pairs
    moved = df.copy()
    first = moved["subject_id"] == moved["subject_id"].iloc[0]
    moved.loc[first, "split"] = "test" if moved.loc[first, "split"].iloc[0] != "test" else "val"
    assert split_digest(moved) != digest
    other, _ = assign_splits(make_manifest(200), SplitConfig(seed="other"))
    assert split_digest(other) != digest
