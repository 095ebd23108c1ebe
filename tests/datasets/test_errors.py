import pandas as pd
import pytest

from cxrflow.datasets import DatasetFormatError, load_dataset, read_csv_checked
from cxrflow.datasets.common import chexpert_label
from cxrflow.datasets.registry import ADAPTERS, UnknownDatasetError
from cxrflow.datasets.reports import extract_findings
from tests.datasets import fixtures


def test_unknown_dataset_lists_the_known_ones(tmp_path):
    with pytest.raises(UnknownDatasetError) as err:
        load_dataset("mimic", tmp_path)
    message = str(err.value)
    assert "'mimic'" in message
    for name in ADAPTERS:
        assert name in message


def test_read_csv_checked_names_file_and_missing_columns(tmp_path):
    path = fixtures.write_csv(tmp_path / "x.csv", [{"a": 1, "b": 2}])
    with pytest.raises(DatasetFormatError) as err:
        read_csv_checked(path, ["a", "c", "d"])
    assert "x.csv" in str(err.value) and "c, d" in str(err.value)
    assert read_csv_checked(path, ["a"])["a"].tolist() == ["1"]  # ids stay strings


def test_adapter_reports_missing_columns_of_the_metadata_file(tmp_path):
    fixtures.chestxray14(tmp_path)
    df = pd.read_csv(tmp_path / "Data_Entry_2017.csv").drop(columns=["View Position"])
    df.to_csv(tmp_path / "Data_Entry_2017.csv", index=False)
    with pytest.raises(DatasetFormatError, match=r"Data_Entry_2017\.csv.*View Position"):
        load_dataset("chestxray14", tmp_path)


def test_mimic_missing_label_column(tmp_path):
    fixtures.mimic(tmp_path)
    path = tmp_path / "mimic-cxr-2.0.0-chexpert.csv"
    pd.read_csv(path).drop(columns=["Pneumothorax", "Edema"]).to_csv(path, index=False)
    with pytest.raises(DatasetFormatError, match=r"mimic-cxr-2\.0\.0-chexpert\.csv.*Edema"):
        load_dataset("mimic_cxr", tmp_path)


def test_missing_metadata_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"stage_2_train_labels\.csv"):
        load_dataset("rsna_pneumonia", tmp_path)


def test_unexpected_chexpert_values_are_an_error():
    with pytest.raises(DatasetFormatError, match=r"f\.csv column 'X'.*2\.0"):
        chexpert_label(
            pd.Series(["1.0", "2.0"]), uncertain="null", blank="null", where="f.csv column 'X'"
        )


def test_chexpert_label_policies():
    s = pd.Series(["1.0", "0.0", "-1.0", None])
    got = chexpert_label(s, uncertain="null", blank="null", where="w").tolist()
    assert got[:2] == [1, 0] and pd.isna(got[2]) and pd.isna(got[3])
    assert chexpert_label(s, uncertain="positive", blank="negative", where="w").tolist() == [
        1,
        0,
        1,
        0,
    ]


def test_extract_findings():
    assert extract_findings(fixtures.MIMIC_REPORT).startswith("There is a small left")
    assert extract_findings("IMPRESSION: nothing") is None
    assert extract_findings(None) is None
    assert extract_findings("FINDINGS AND IMPRESSION: Clear lungs.") == "Clear lungs."
