"""Bad configuration and bad inputs get a clear message, not a crash in a tensor op."""

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cxrflow.heads import train_heads
from cxrflow.heads.config import (
    ClassificationConfig,
    DemographicsConfig,
    HeadsConfig,
    HeadsConfigError,
    SegmentationConfig,
    preset,
)
from cxrflow.heads.data import EmptySplitError, split_frame
from cxrflow.heads.demographics import bin_labels, binned, run_demographics
from cxrflow.manifest import MANIFEST_FILE, read_manifest, write_manifest

ONLY_CLS = HeadsConfig(
    classification=ClassificationConfig(epochs=2, repeats=1),
    segmentation=SegmentationConfig(enabled=False),
    demographics=DemographicsConfig(enabled=False),
)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ClassificationConfig(findings=("flu",)), "unknown findings"),
        (lambda: ClassificationConfig(lr=0), "classification.lr must be a positive"),
        (lambda: ClassificationConfig(protocol="folds", repeats=1), "repeats must be >= 2"),
        (lambda: SegmentationConfig(decoders=("unet",)), "segmentation.decoders must be one of"),
        (lambda: SegmentationConfig(layers=(1, 2)), "4 block indices"),
        (lambda: SegmentationConfig(structures=("heart",)), "unknown structures"),
        (lambda: SegmentationConfig(linear_lr=0.0), "segmentation.linear_lr"),
        (lambda: DemographicsConfig(targets=("height",)), "demographics.targets"),
        (lambda: HeadsConfig(fit="stretch"), "fit must be one of"),
        (lambda: preset("huge"), "unknown heads preset"),
    ],
)
def test_invalid_settings_are_refused(make, message):
    with pytest.raises(HeadsConfigError, match=message):
        make()


def test_empty_split_is_named(manifest):
    with pytest.raises(EmptySplitError, match=r"split val has no images.*split sizes"):
        split_frame(manifest.assign(split="train"), "val")


def test_patch_grid_mismatch_is_caught_before_any_tensor_op(dataset_dir, encoder_dir, tmp_path):
    bad = tmp_path / "encoder"
    shutil.copytree(encoder_dir, bad)
    conf_path = bad / "preprocessor_config.json"
    conf = json.loads(conf_path.read_text())
    conf["crop_size"] = {"height": 100, "width": 100}
    conf_path.write_text(json.dumps(conf))
    with pytest.raises(HeadsConfigError, match=r"input size 100 is not a multiple of .* 14"):
        train_heads(dataset_dir, bad, config=ONLY_CLS, out_dir=tmp_path / "out")


def test_missing_split_column_and_empty_test(dataset_dir, encoder_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(dataset_dir, data)
    df = read_manifest(data / MANIFEST_FILE)
    write_manifest(df.assign(split=df["split"].replace("test", "val")), data / MANIFEST_FILE)
    with pytest.raises(EmptySplitError, match="split test has no images"):
        train_heads(data, encoder_dir, config=ONLY_CLS, out_dir=tmp_path / "out")
    write_manifest(df.drop(columns="split"), data / MANIFEST_FILE)
    with pytest.raises(HeadsConfigError, match="run the split stage first"):
        train_heads(data, encoder_dir, config=ONLY_CLS, out_dir=tmp_path / "out")


def test_paper_preset_refuses_findings_without_positives(dataset_dir, encoder_dir, tmp_path):
    config = ONLY_CLS.replace(classification=preset("paper").classification)
    with pytest.raises(HeadsConfigError, match="findings without both classes in the train"):
        train_heads(dataset_dir, encoder_dir, config=config, out_dir=tmp_path / "out")


def _segmentation_only(structure: str) -> HeadsConfig:
    return ONLY_CLS.replace(
        classification=ClassificationConfig(enabled=False),
        segmentation=SegmentationConfig(structures=(structure,), epochs=1),
    )


def _edited_copy(dataset_dir: Path, tmp_path: Path, edit: Callable) -> Path:
    """A copy of the dataset whose manifest is `edit(manifest)`."""
    data = tmp_path / "data"
    shutil.copytree(dataset_dir, data)
    write_manifest(edit(read_manifest(data / MANIFEST_FILE)), data / MANIFEST_FILE)
    return data


def test_segmentation_without_masks_for_a_structure(dataset_dir, encoder_dir, tmp_path):
    data = _edited_copy(  # without the train images that carry a pneumothorax
        dataset_dir,
        tmp_path,
        lambda df: df[~((df["split"] == "train") & (df["label_pneumothorax"] == 1))],
    )
    with pytest.raises(HeadsConfigError, match="no train mask has pixels of"):
        train_heads(data, encoder_dir, config=_segmentation_only("pneumothorax"), out_dir=tmp_path)


def test_data_without_any_mask_skip_segmentation_and_say_why(dataset_dir, encoder_dir, tmp_path):
    config = ONLY_CLS.replace(segmentation=SegmentationConfig(structures=("left_lung",), epochs=1))
    # a public release's labels: no image has a mask
    data = _edited_copy(dataset_dir, tmp_path, lambda df: df.assign(mask_path=None))
    result = train_heads(data, encoder_dir, config=config, out_dir=tmp_path / "out")
    assert result.not_run == {"segmentation": "no image in the data has a mask"}
    assert result.classification is not None and not result.segmentation
    assert not any(k.startswith("seg.") for k in result.metrics())
    assert "## Segmentation\n\nNot trained: no image in the data has a mask." in result.markdown
    assert not any(name.startswith("segmentation") for name in result.exported)


def test_an_unlabelled_inbox_skips_classification_and_says_why(dataset_dir, encoder_dir, tmp_path):
    def unlabelled(df):
        return df.assign(**{c: None for c in df.columns if c.startswith("label_")})

    config = ONLY_CLS.replace(demographics=DemographicsConfig(targets=("sex",), folds=2))
    data = _edited_copy(dataset_dir, tmp_path, unlabelled)
    result = train_heads(data, encoder_dir, config=config, out_dir=tmp_path / "out")
    assert result.not_run == {"classification": "no image in the data has a finding label"}
    assert result.classification is None and "demo.accuracy.sex" in result.metrics()
    assert not any(k.startswith("cls.") for k in result.metrics())
    assert "## Classification\n\nNot trained: no image in the data has a finding" in result.markdown


def test_masks_missing_from_one_split_are_still_an_error(dataset_dir, encoder_dir, tmp_path):
    def drop_test_masks(df):
        return df.assign(mask_path=df["mask_path"].where(df["split"] != "test", None))

    data = _edited_copy(dataset_dir, tmp_path, drop_test_masks)
    with pytest.raises(HeadsConfigError, match="split test has no image with a mask"):
        train_heads(data, encoder_dir, config=_segmentation_only("left_lung"), out_dir=tmp_path)


def test_demographics_bins_and_missing_targets(manifest):
    assert bin_labels((20.0, 40.0, 60.0, 80.0)) == ["<20", "20-40", "40-60", "60-80", ">80"]
    values = pd.Series([19.9, 20.0, 59.0, 80.0, None])
    got = binned(values, (20.0, 40.0, 60.0, 80.0))
    assert got.tolist()[:4] == [0, 1, 2, 4] and np.isnan(got.iloc[4])
    df = manifest.assign(weight_kg=np.nan)
    x = np.random.default_rng(0).normal(size=(len(df), 8))
    res = run_demographics(x, df, DemographicsConfig(targets=("sex", "weight", "bmi"), folds=3))
    assert set(res.scores) == {"sex"}
    assert "weight_kg" in res.skipped["weight"] and "weight_kg" in res.skipped["bmi"]
