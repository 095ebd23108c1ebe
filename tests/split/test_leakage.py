import pandas as pd
import pytest

from cxrflow.split import LeakageError, check_leakage, leaking_subjects


def _manifest(rows: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "image_id": [f"img-{i}" for i in range(len(rows))],
            "subject_id": [s for s, _ in rows],
            "split": [p for _, p in rows],
        }
    )


def test_a_clean_manifest_passes():
    check_leakage(_manifest([("a", "train"), ("a", "train"), ("b", "test"), ("c", "val")]))


def test_a_leaking_manifest_raises_naming_the_count_and_examples():
    df = _manifest(
        [("a", "train"), ("a", "test"), ("b", "val"), ("c", "val"), ("c", "train"), ("d", "val")]
    )
    with pytest.raises(LeakageError, match=r"2 subjects have images in more than one") as err:
        check_leakage(df)
    assert "a, c" in str(err.value)
    assert err.value.subjects == ["a", "c"]


def test_at_most_five_examples_are_named():
    rows = [(f"s{i}", split) for i in range(8) for split in ("train", "val")]
    with pytest.raises(LeakageError, match="8 subjects") as err:
        check_leakage(_manifest(rows))
    message = str(err.value)
    assert "s0, s1, s2, s3, s4 and 3 more" in message and "s5" not in message
    assert leaking_subjects(_manifest(rows)) == [f"s{i}" for i in range(8)]


def test_a_missing_column_is_named():
    with pytest.raises(KeyError, match="split"):
        check_leakage(pd.DataFrame({"subject_id": ["a"]}))
