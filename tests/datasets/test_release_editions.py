"""PadChest through its label hierarchy; VinDr-CXR and RSNA releases that lack a label file."""

import logging

import pandas as pd
import pytest

from cxrflow.datasets import load_dataset
from cxrflow.datasets.common import notes
from cxrflow.datasets.padchest import (
    TERM_TO_FINDING,
    close_terms,
    hierarchy,
    parse_labels,
    parse_tree,
)
from cxrflow.findings import FINDINGS, label_column
from tests.datasets import fixtures


def test_padchest_tree_is_package_data_with_the_published_parents():
    tree = hierarchy()
    assert tree["callus rib fracture"] == {"rib fracture", "fracture"}
    assert tree["hydropneumothorax"] == {"pneumothorax", "pleural effusion"}
    assert {"aortic elongation", "superior mediastinal enlargement"} <= tree[
        "supra aortic elongation"
    ]
    assert "pleural thickening" in tree["calcified pleural thickening"]
    assert tree["loculated pleural effusion"] == {"pleural effusion"}
    assert tree["normal"] == frozenset() and tree["cardiomegaly"] == frozenset()
    # the trees' own names are containers, not labels
    assert "radiological finding" not in tree and "differential diagnosis" not in tree
    # every mapped term is in the tree
    assert set(TERM_TO_FINDING) <= set(tree)


def test_tree_parser_reads_a_dag_and_refuses_odd_indentation():
    parents = parse_tree(["[t]", "  a", "    b", "  c", "    b", "# comment", ""])
    assert parents == {"a": frozenset(), "b": {"a", "c"}, "c": frozenset()}
    with pytest.raises(ValueError, match="odd indentation"):
        parse_tree(["a", "   b"])


def test_close_terms_adds_ancestors_and_keeps_unknown_terms():
    terms, added, unknown = close_terms(["callus rib fracture", "not a padchest term"])
    assert terms[:2] == ["callus rib fracture", "not a padchest term"]
    assert sorted(added) == ["fracture", "rib fracture"] and unknown == {"not a padchest term"}


def test_padchest_specific_terms_reach_their_parent_finding(tmp_path, caplog):
    root = fixtures.padchest_specific(tmp_path)
    df = load_dataset("padchest", root).set_index("image_id")
    csv = pd.read_csv(root / fixtures.PADCHEST_CSV)
    assert list(csv.columns) == fixtures.PADCHEST_COLUMNS  # the published header
    recovered = 0
    for image, _, labels, expected in fixtures.PADCHEST_SPECIFIC:
        row = df.loc["padchest:" + image.removesuffix(".png")]
        flat = {TERM_TO_FINDING[t] for t in parse_labels(labels) if t in TERM_TO_FINDING}
        for finding in FINDINGS:
            value = row[label_column(finding)]
            if finding == "lung_opacity":
                assert pd.isna(value)  # not mapped for PadChest
                continue
            assert value == int(finding in expected or finding in flat), (image, finding)
        recovered += len(expected - flat)
    # 8 image labels that a flat reading of these 8 rows sets to 0
    assert recovered == 8
    s1 = df.loc["padchest:s1"]
    assert s1["labels_implied"] == "fracture;rib fracture"
    assert "fracture" in s1["labels_other"].split(";")
    s7 = df.loc["padchest:s7"]  # the release's capitals (COPD signs, NSG tube) are matched
    assert s7["label_rib_fracture"] == 1 and "copd signs" in s7["labels_other"]
    assert df.loc["padchest:s8", "labels_implied"] == ""


def test_padchest_unknown_terms_are_logged(tmp_path, caplog):
    root = fixtures.padchest_specific(tmp_path)
    path = root / fixtures.PADCHEST_CSV
    csv = pd.read_csv(path)
    csv.loc[0, "Labels"] = "['callus rib fracture', ' brand new term']"
    csv.to_csv(path, index=False)
    with caplog.at_level(logging.WARNING, logger="cxrflow.datasets.padchest"):
        df = load_dataset("padchest", root).set_index("image_id")
    assert "brand new term" in caplog.text
    assert "brand new term" in df.loc["padchest:s1", "labels_other"]


def test_vindr_kaggle_edition_derives_labels_from_boxes(tmp_path, caplog):
    root = fixtures.vindr_kaggle(tmp_path)
    with caplog.at_level(logging.WARNING, logger="cxrflow.datasets.vindr_cxr"):
        df = load_dataset("vindr_cxr", root).set_index("image_id")
    a, b = df.loc[f"vindr_cxr:{fixtures.KAGGLE_A}"], df.loc[f"vindr_cxr:{fixtures.KAGGLE_B}"]
    assert a["image_path"] == f"train/{fixtures.KAGGLE_A}.dicom"
    assert a["official_split"] == "train" and len(df) == 2  # Kaggle's test has no labels
    assert a["label_cardiomegaly"] == 1 and a["label_aortic_enlargement"] == 1
    assert a["label_pleural_effusion"] == 0 and b["label_cardiomegaly"] == 0
    # not drawn as boxes in the Kaggle edition: unknown, not negative
    assert pd.isna(a["label_tuberculosis"]) and pd.isna(a["label_rib_fracture"])
    assert b["labels_other"] == "No finding"
    assert a["labels_other"] == "No finding"  # R8 saw nothing: "any" keeps its vote too
    assert '"class":"Cardiomegaly"' in a["boxes"]
    (note,) = notes(df)
    assert "image_labels_train.csv" in note and "train.csv" in note
    assert "rib_fracture, tuberculosis" in note
    assert "image_labels_train.csv" in caplog.text
    # majority: aortic enlargement drawn by one of three raters of image A
    majority = load_dataset("vindr_cxr", root, vote="majority").set_index("image_id")
    row = majority.loc[f"vindr_cxr:{fixtures.KAGGLE_A}"]
    assert row["label_aortic_enlargement"] == 0 and row["label_cardiomegaly"] == 1


def test_vindr_physionet_without_image_labels_uses_its_boxes(tmp_path):
    root = fixtures.vindr_cxr(tmp_path)
    (root / "annotations" / "image_labels_train.csv").unlink()
    (root / "annotations" / "image_labels_test.csv").unlink()
    df = load_dataset("vindr_cxr", root).set_index("image_id")
    assert sorted(df.index) == ["vindr_cxr:img_a", "vindr_cxr:img_b"]  # no test labels at all
    a = df.loc["vindr_cxr:img_a"]
    assert a["label_cardiomegaly"] == 1
    assert a["label_rib_fracture"] == 0  # Rib fracture is drawn as boxes in PhysioNet's release
    assert pd.isna(a["label_tuberculosis"])
    (note,) = notes(df)
    assert "annotations_train.csv" in note and "tuberculosis" in note


def test_vindr_rater_column_spelled_rad_ID(tmp_path):
    root = fixtures.vindr_cxr(tmp_path)
    path = root / "annotations" / "image_labels_train.csv"
    pd.read_csv(path).rename(columns={"rad_id": "rad_ID"}).to_csv(path, index=False)
    df = load_dataset("vindr_cxr", root, vote="majority").set_index("image_id")
    assert df.loc["vindr_cxr:img_a", "label_aortic_enlargement"] == 0


def test_vindr_without_any_label_file_is_refused_by_name(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(FileNotFoundError, match=r"image_labels_train\.csv.*annotations_train"):
        load_dataset("vindr_cxr", tmp_path)


def test_vindr_unknown_box_class_is_named(tmp_path):
    root = fixtures.vindr_kaggle(tmp_path)
    path = root / "train.csv"
    csv = pd.read_csv(path)
    csv.loc[0, "class_name"] = "Tuberculosis"  # not a class of the Kaggle edition
    csv.to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"train\.csv.*Tuberculosis"):
        load_dataset("vindr_cxr", root)


def test_rsna_without_class_info_keeps_target_and_says_so(tmp_path):
    root = fixtures.rsna(tmp_path)
    (root / "stage_2_detailed_class_info.csv").unlink()
    df = load_dataset("rsna_pneumonia", root).set_index("image_id")
    assert df.loc["rsna:p-pos", "label_lung_opacity"] == 1
    assert df.loc["rsna:p-neg", "label_lung_opacity"] == 0
    assert df["labels_other"].isna().all()  # unknown, not "no other label"
    (note,) = notes(df)
    assert "stage_2_detailed_class_info.csv" in note and "Target" in note
    with_classes = load_dataset("rsna_pneumonia", fixtures.rsna(tmp_path / "full"))
    assert notes(with_classes) == []
