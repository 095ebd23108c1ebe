import logging

import pytest

from cxrflow.datasets import MULTI_CXR, build_pretraining_manifest, load_dataset
from cxrflow.manifest import to_table
from tests.datasets import fixtures


def test_recipe_lists_the_papers_sources():
    names = [s.dataset for s in MULTI_CXR]
    assert names == ["brax", "chexpert", "mimic_cxr", "chestxray14", "padchest"]
    mimic = next(s for s in MULTI_CXR if s.dataset == "mimic_cxr")
    assert mimic.official_splits == ("train",) and set(mimic.views) == {"PA", "AP"}
    # Table D.1's subject total (439,177) less the private set; its image total (838,336) is
    # 360 below the sum of its rows, so the rows are kept as printed
    assert sum(s.paper_subjects for s in MULTI_CXR) == 439_177 - 66_323


def test_evaluation_subjects_are_excluded(tmp_path, caplog):
    mimic = load_dataset("mimic_cxr", fixtures.mimic(tmp_path / "mimic"))
    chexpert = load_dataset("chexpert", fixtures.chexpert(tmp_path / "chexpert"))
    lung = load_dataset("mimic_lung", fixtures.mimic_lung(tmp_path / "lung"))
    lung = lung[lung["image_id"] == "mimic:d1"]  # evaluation images of subject 10000032
    # an evaluation set that holds one CheXpert image (matched by subject) and a VinDr image
    vindr = load_dataset("vindr_cxr", fixtures.vindr_cxr(tmp_path / "vindr"))
    chex_eval = chexpert[chexpert["subject_id"] == "chexpert:patient00002"].head(1)
    with caplog.at_level(logging.INFO, logger="cxrflow.datasets.multi_cxr"):
        out = build_pretraining_manifest(
            {"mimic_cxr": mimic, "chexpert": chexpert}, [lung, chex_eval, vindr]
        )
    # MIMIC: d1, d2 (subject in the lung set) excluded; d3 is "validate", d4 "test": not train
    assert not out["image_id"].str.startswith("mimic:").any()
    # CheXpert: both images of patient00002 go, although only one was in the evaluation set
    assert set(out["image_id"]) == {
        "chexpert:patient00001_study1_view1_frontal",
        "chexpert:patient64541_study1_view1_frontal",
    }
    assert "excluded" in caplog.text
    to_table(out)


def test_image_ids_are_matched_for_datasets_without_patients(tmp_path):
    vindr = load_dataset("vindr_cxr", fixtures.vindr_cxr(tmp_path))
    evaluation = vindr[vindr["image_id"] == "vindr_cxr:img_a"].assign(subject_id="other:1")
    out = build_pretraining_manifest({"vindr_cxr": vindr}, [evaluation], recipe=None)
    assert "vindr_cxr:img_a" not in set(out["image_id"]) and len(out) == 2


def test_mimic_recipe_keeps_frontal_train_images(tmp_path):
    mimic = load_dataset("mimic_cxr", fixtures.mimic(tmp_path))
    out = build_pretraining_manifest({"mimic_cxr": mimic}, [])
    assert list(out["image_id"]) == ["mimic:d1"]  # d2 lateral, d3 val, d4 test


def test_no_sources_is_an_error():
    with pytest.raises(ValueError, match="no pre-training sources"):
        build_pretraining_manifest({}, [])
