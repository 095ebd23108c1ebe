from pathlib import Path

import pandas as pd
import pytest

from cxrflow.datasets import load_dataset
from cxrflow.datasets.registry import ADAPTERS
from cxrflow.manifest import LABEL_COLUMNS, read_manifest, to_table, write_manifest
from tests.datasets import fixtures

BUILDERS = {
    "mimic_cxr": fixtures.mimic,
    "chexpert": fixtures.chexpert,
    "chestxray14": fixtures.chestxray14,
    "padchest": fixtures.padchest,
    "brax": fixtures.brax,
    "vindr_cxr": fixtures.vindr_cxr,
    "vindr_ribcxr": fixtures.vindr_ribcxr,
    "rsna_pneumonia": fixtures.rsna,
    "candid_ptx": fixtures.candid,
    "mimic_lung": fixtures.mimic_lung,
}


def load(name: str, tmp_path: Path, **options) -> pd.DataFrame:
    return load_dataset(name, BUILDERS[name](tmp_path), **options)


def by_id(df: pd.DataFrame) -> pd.DataFrame:
    return df.set_index("image_id")


def labels(row: pd.Series) -> dict:
    """label_<finding> -> 0/1/None of one row."""
    return {
        c.removeprefix("label_"): (None if pd.isna(row[c]) else int(row[c])) for c in LABEL_COLUMNS
    }


def test_every_adapter_has_a_fixture():
    assert set(BUILDERS) == set(ADAPTERS)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_every_adapter_passes_the_schema_check(name, tmp_path):
    df = load(name, tmp_path)
    table = to_table(df)
    assert table.num_rows == len(df) > 0
    write_manifest(df, tmp_path / "manifest.parquet")
    back = read_manifest(tmp_path / "manifest.parquet")
    assert sorted(back["image_id"]) == sorted(df["image_id"])
    assert back["labels_other"].notna().all()
    assert {"official_split", "labels_other"} <= set(df.columns)
    assert (df["source_dataset"] == name).all()
    assert (df["ingest_run"] == f"adapter:{name}").all()
    assert (df["image_sha256"] == "").all()
    assert df["view"].isin(["PA", "AP", "LATERAL", "UNKNOWN"]).all()
    assert df["image_id"].is_unique
    ns = ADAPTERS[name].namespace
    for col in ("image_id", "subject_id", "study_id"):
        assert df[col].str.startswith(f"{ns}:").all(), col
    assert not df["image_path"].str.startswith("/").any()
    assert set(df["official_split"].dropna()) <= {"train", "val", "test"}
    assert (
        df["labels_other"].map(lambda s: s == ";".join(sorted(s.split(";"))) if s else True)
    ).all()


def test_mimic_cxr(tmp_path):
    df = by_id(load("mimic_cxr", tmp_path))
    assert len(df) == 4
    d1, d2, d3, d4 = (df.loc[f"mimic:d{i}"] for i in range(1, 5))
    assert d1["subject_id"] == "mimic:10000032" and d1["study_id"] == "mimic:s50414267"
    assert d1["image_path"] == "files/p10/p10000032/s50414267/d1.jpg"
    assert [d1["view"], d2["view"], d3["view"], d4["view"]] == ["PA", "LATERAL", "AP", "UNKNOWN"]
    assert [d1["official_split"], d3["official_split"], d4["official_split"]] == [
        "train",
        "val",
        "test",
    ]
    assert (d1["width"], d1["height"]) == (2544, 3056)
    assert d1["study_date"] == "2180-05-06"
    # positive, negative, uncertain (null by default), not annotated by the dataset (null)
    lab = labels(d1)
    assert lab["pleural_effusion"] == 1 and lab["pneumothorax"] == 0
    assert lab["cardiomegaly"] is None and lab["lung_opacity"] is None
    assert lab["tuberculosis"] is None and lab["chest_tube"] is None
    assert d1["labels_other"] == "Atelectasis"
    assert d1["labels_uncertain"] == "Cardiomegaly"
    assert labels(d3)["lung_opacity"] == 1 and d3["labels_other"] == "Support Devices"
    # a study without a CheXpert row: nothing annotated
    assert all(v is None for v in labels(d4).values()) and d4["labels_other"] == ""
    # report: the FINDINGS section, shared by the study's images
    assert d1["report"] == (
        "There is a small left pleural effusion. No pneumothorax. The heart size is normal."
    )
    assert d2["report"] == d1["report"]
    assert "IMPRESSION" in d1["report_full"]
    assert d3["report"] is None  # no FINDINGS section
    assert d4["report"] is None  # no report file
    assert pd.isna(d1["sex"])  # demographics need MIMIC-IV patients.csv


def test_mimic_cxr_uncertain_policy_and_demographics(tmp_path):
    fixtures.mimic(tmp_path)
    fixtures.write_csv(
        tmp_path / "patients.csv",
        [
            {
                "subject_id": 10000032,
                "gender": "F",
                "anchor_age": 52,
                "anchor_year": 2180,
                "anchor_year_group": "2014 - 2016",
                "dod": None,
            }
        ],
    )
    df = by_id(load_dataset("mimic_cxr", tmp_path, uncertain="positive", blank="negative"))
    lab = labels(df.loc["mimic:d1"])
    assert lab["cardiomegaly"] == 1  # -1 read as positive
    assert lab["lung_opacity"] == 0  # blank read as negative
    assert lab["tuberculosis"] is None  # still not a CheXpert observation
    assert df.loc["mimic:d1", "sex"] == "F"
    assert df.loc["mimic:d1", "age_years"] == pytest.approx(52)
    assert pd.isna(df.loc["mimic:d3", "sex"])
    neg = by_id(load_dataset("mimic_cxr", tmp_path, uncertain="negative"))
    assert labels(neg.loc["mimic:d1"])["cardiomegaly"] == 0


def test_chexpert(tmp_path):
    df = by_id(load("chexpert", tmp_path))
    assert len(df) == 4
    a = df.loc["chexpert:patient00002_study2_view1_frontal"]
    lat = df.loc["chexpert:patient00002_study2_view2_lateral"]
    v = df.loc["chexpert:patient64541_study1_view1_frontal"]
    assert a["subject_id"] == "chexpert:patient00002"
    assert a["study_id"] == lat["study_id"] == "chexpert:patient00002_study2"
    assert a["image_path"] == "train/patient00002/study2/view1_frontal.jpg"
    assert (a["view"], lat["view"], v["view"]) == ("AP", "LATERAL", "PA")
    assert (a["official_split"], v["official_split"]) == ("train", "val")
    assert (a["sex"], v["sex"], a["age_years"]) == ("F", "M", 87)
    lab = labels(a)
    assert lab["lung_opacity"] == 1 and lab["pleural_effusion"] == 0
    assert lab["cardiomegaly"] is None and lab["pneumothorax"] is None
    assert lab["aortic_enlargement"] is None
    assert a["labels_other"] == "Fracture" and a["labels_uncertain"] == "Cardiomegaly"
    assert labels(v)["pneumothorax"] == 1 and labels(v)["cardiomegaly"] == 0
    assert df.loc["chexpert:patient00001_study1_view1_frontal", "labels_other"] == "No Finding"


def test_chestxray14(tmp_path):
    df = by_id(load("chestxray14", tmp_path))
    assert len(df) == 4
    a, b = df.loc["cxr14:00000001_000"], df.loc["cxr14:00000001_001"]
    c, d = df.loc["cxr14:00000003_000"], df.loc["cxr14:00000005_000"]
    assert a["subject_id"] == b["subject_id"] == "cxr14:1"
    assert a["study_id"] != b["study_id"]
    assert a["image_path"] == "images/00000001_000.png"
    assert (a["view"], c["view"]) == ("PA", "AP")
    assert (a["official_split"], c["official_split"]) == ("train", "test")
    assert (a["sex"], c["sex"], a["age_years"]) == ("M", "F", 58)
    assert pd.isna(d["age_years"])  # 412 is an erroneous age
    assert labels(a)["cardiomegaly"] == 1 and labels(a)["pneumothorax"] == 0
    assert labels(a)["lung_opacity"] is None and labels(a)["tuberculosis"] is None
    assert labels(c)["pleural_thickening"] == 1 and c["labels_other"] == "Hernia"
    assert b["labels_other"] == "Emphysema" and d["labels_other"] == "No Finding"


def test_chestxray14_nested_image_folders(tmp_path):
    fixtures.chestxray14(tmp_path)
    nested = tmp_path / "images_001" / "images"
    nested.mkdir(parents=True)
    (nested / "00000001_000.png").write_bytes(b"")
    df = by_id(load_dataset("chestxray14", tmp_path))
    assert df.loc["cxr14:00000001_000", "image_path"] == "images_001/images/00000001_000.png"
    assert df.loc["cxr14:00000003_000", "image_path"] == "images/00000003_000.png"


def test_padchest(tmp_path):
    df = by_id(load("padchest", tmp_path))
    assert len(df) == 4
    a1, a2, b1, c1 = (df.loc[f"padchest:{i}"] for i in ("a1", "a2", "b1", "c1"))
    assert a1["subject_id"] == "padchest:pt1" and a1["study_id"] == "padchest:st1"
    assert a1["image_path"] == "0/a1.png" and b1["image_path"] == "12/b1.png"
    assert (a1["view"], a2["view"], b1["view"], c1["view"]) == ("PA", "LATERAL", "AP", "UNKNOWN")
    assert a1["sex"] == "M" and a1["age_years"] == 74 and pd.isna(c1["age_years"])
    assert (a1["width"], a1["height"]) == (1800, 2000)
    assert labels(a1)["pleural_effusion"] == 1 and labels(a1)["cardiomegaly"] == 1
    assert labels(a1)["pneumothorax"] == 0 and labels(a1)["lung_opacity"] is None
    assert labels(b1)["cardiomegaly"] == 0 and b1["labels_other"] == "normal"
    assert all(v is None for v in labels(c1).values())  # no labels at all
    assert df["official_split"].isna().all()
    assert a1["report_full"].startswith("derrame") and pd.isna(a1["report"])


def test_brax(tmp_path):
    df = load("brax", tmp_path)
    assert len(df) == 3
    df = by_id(df)
    a = df.loc["brax:images_id_a_Study_1_Series_1_image-1"]
    lat = df.loc["brax:images_id_a_Study_1_Series_2_image-2"]
    b = df.loc["brax:images_id_b_Study_7_Series_1_image-1"]
    assert a["subject_id"] == "brax:id_a" and a["study_id"] == lat["study_id"] == "brax:id_a_1001"
    assert a["image_path"] == "images/id_a/Study_1/Series_1/image-1.png"
    assert (a["view"], lat["view"], b["view"]) == ("PA", "LATERAL", "AP")
    assert (a["sex"], a["age_years"]) == ("F", 45) and pd.isna(b["age_years"])
    assert labels(a)["pneumothorax"] == 1 and a["labels_other"] == "Pleural Other"
    assert labels(b)["cardiomegaly"] == 0 and labels(b)["pneumothorax"] is None
    assert labels(b)["lung_opacity"] is None and b["labels_uncertain"] == "Pneumothorax"


def test_vindr_cxr(tmp_path):
    df = by_id(load("vindr_cxr", tmp_path))
    assert len(df) == 3  # three raters' rows of one image are one image
    a, b, t = df.loc["vindr_cxr:img_a"], df.loc["vindr_cxr:img_b"], df.loc["vindr_cxr:img_t"]
    assert a["subject_id"] == "vindr_cxr:img_a"  # no patient ids: the image is the subject
    assert a["image_path"] == "train/img_a.dicom" and t["image_path"] == "test/img_t.dicom"
    assert (a["official_split"], t["official_split"]) == ("train", "test")
    # any rater: aortic enlargement marked by one of three is positive
    assert labels(a)["cardiomegaly"] == 1 and labels(a)["aortic_enlargement"] == 1
    assert labels(a)["pleural_effusion"] == 0 and labels(a)["chest_tube"] is None
    assert a["labels_other"] == "Nodule/Mass" and b["labels_other"] == "No finding"
    assert labels(t)["tuberculosis"] == 1 and labels(t)["lung_opacity"] == 1
    assert a["view"] == "UNKNOWN"
    assert '"class":"Cardiomegaly"' in a["boxes"] and pd.isna(b["boxes"])
    majority = by_id(load_dataset("vindr_cxr", tmp_path, vote="majority"))
    assert labels(majority.loc["vindr_cxr:img_a"])["aortic_enlargement"] == 0
    assert labels(majority.loc["vindr_cxr:img_a"])["cardiomegaly"] == 1


def test_vindr_ribcxr(tmp_path):
    df = by_id(load("vindr_ribcxr", tmp_path))
    assert len(df) == 3
    r = df.loc["vindr_rib:VinDr_RibCXR_train_000"]
    assert r["subject_id"] == "vindr_rib:VinDr_RibCXR_train_000"
    assert r["image_path"] == "data/train/img/VinDr_RibCXR_train_000.png"
    assert df.loc["vindr_rib:VinDr_RibCXR_val_000", "official_split"] == "val"
    assert r["ribs_annotated"] == "L1;R1"
    assert all(v is None for v in labels(r).values())


def test_rsna_pneumonia(tmp_path):
    df = by_id(load("rsna_pneumonia", tmp_path))
    assert len(df) == 3
    pos, neg, nn = df.loc["rsna:p-pos"], df.loc["rsna:p-neg"], df.loc["rsna:p-nn"]
    assert pos["subject_id"] == "rsna:p-pos"
    assert pos["image_path"] == "stage_2_train_images/p-pos.dcm"
    assert labels(pos)["lung_opacity"] == 1 and labels(neg)["lung_opacity"] == 0
    assert labels(pos)["pneumothorax"] is None
    assert nn["labels_other"] == "No Lung Opacity / Not Normal" and pos["labels_other"] == ""
    assert pos["boxes"].count("Lung Opacity") == 2 and pd.isna(neg["boxes"])
    assert df["official_split"].isna().all()


def test_candid_ptx(tmp_path):
    df = by_id(load("candid_ptx", tmp_path))
    assert len(df) == 3  # two rows of one image are two regions of one image
    a, b, c = (df.loc[f"candid:1.2.3.{i}"] for i in (1, 2, 3))
    assert a["subject_id"] == c["subject_id"] == "candid:P101"
    assert b["subject_id"] == "candid:P102"
    assert a["image_path"] == "dataset/1.2.3.1.dcm"
    assert labels(a)["pneumothorax"] == 1 and labels(b)["pneumothorax"] == 0
    assert labels(c)["chest_tube"] == 1 and labels(a)["chest_tube"] == 0
    assert labels(b)["rib_fracture"] == 1 and labels(a)["rib_fracture"] == 0
    assert labels(a)["cardiomegaly"] is None
    assert a["report"] == "Large right pneumothorax." and pd.isna(b["report"])
    assert b["report_full"] == "No acute abnormality."
    assert c["report"] == "Chest tube in situ."


def test_candid_ptx_without_tube_file_leaves_tubes_unannotated(tmp_path):
    fixtures.candid(tmp_path)
    (tmp_path / "chest_tube.csv").unlink()
    df = load_dataset("candid_ptx", tmp_path)
    assert df["label_chest_tube"].isna().all()
    assert df["label_rib_fracture"].notna().all()


def test_mimic_lung(tmp_path):
    df = by_id(load("mimic_lung", tmp_path))
    assert list(df.index) == ["mimic:d1", "mimic:d3"]
    d1 = df.loc["mimic:d1"]
    # the same ids as MIMIC-CXR, so its subjects are recognised there
    assert d1["subject_id"] == "mimic:10000032" and d1["study_id"] == "mimic:s50414267"
    assert d1["image_path"] == "files/p10/p10000032/s50414267/d1.jpg"
    assert (d1["width"], d1["height"]) == (12, 8) and d1["official_split"] == "train"
    assert d1["view"] == "PA"
    only_good = load_dataset("mimic_lung", tmp_path, min_dice=0.7)
    assert list(only_good["image_id"]) == ["mimic:d1"]
