"""The stage end to end on the phantom: tables, MLflow metrics/artefacts, registered heads."""

import logging

import pandas as pd
import pytest
import torch

from cxrflow.findings import label_column
from cxrflow.heads.config import (
    ClassificationConfig,
    DemographicsConfig,
    SegmentationConfig,
    preset,
)
from cxrflow.heads.data import ImageDataset, split_frame
from cxrflow.heads.features import FeatureCache, extract_features
from cxrflow.heads.train import head_metrics
from cxrflow.models import load_encoder
from cxrflow.stages import heads as heads_stage


@pytest.fixture
def mlflow_uri(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    import mlflow

    mlflow.set_tracking_uri(uri)
    yield uri
    mlflow.set_tracking_uri(None)


def test_stage_logs_tables_metrics_and_registers_heads(
    dataset_dir, encoder_dir, manifest, tmp_path, mlflow_uri
):
    import mlflow
    from mlflow import MlflowClient

    tiny = preset("tiny")
    config = tiny.replace(
        classification=ClassificationConfig(
            lr=tiny.classification.lr, epochs=10, repeats=2, features="cls+mean_patch"
        ),
        segmentation=SegmentationConfig(
            decoders=("linear",), structures=("left_lung", "right_lung"), epochs=2, batch_size=8
        ),
        demographics=DemographicsConfig(targets=("sex", "age"), folds=3),
    )
    params = heads_stage.Params(
        data_dir=dataset_dir,
        encoder_dir=encoder_dir,
        out_dir=tmp_path / "out",
        data_version="md5-abc",
        encoder_version="enc-3",
        pipeline_run="run-1",
    )
    out = heads_stage.run(params, config=config)
    md = out.result.markdown
    assert "| **macro** |" in md and "| linear |" in md and "| sex |" in md
    run = mlflow.get_run(out.mlflow_run_id)
    assert run.data.tags["cxrflow.data_version"] == "md5-abc"
    assert run.data.tags["cxrflow.encoder_version"] == "enc-3"
    assert "cls.auprc.macro" in run.data.metrics
    assert "seg.linear.dice.left_lung" in run.data.metrics
    assert "demo.accuracy.sex" in run.data.metrics
    # The counts the model card needs to flag small n and to compare with guessing.
    m = run.data.metrics
    sexes = manifest["sex"].astype("string").str.upper().isin(["M", "F"])
    assert m["demo.images.sex"] == sexes.sum()
    top = manifest.loc[sexes, "sex"].str.upper().value_counts().max()
    assert m["demo.majority.sex"] == pytest.approx(top / sexes.sum())
    test_frame = manifest[manifest["split"] == "test"]
    scored = [k.removeprefix("cls.auroc.") for k in m if k.startswith("cls.auroc.")]
    for f in set(scored) - {"macro"}:
        column = pd.to_numeric(test_frame[label_column(f)], errors="coerce")
        assert m[f"cls.positives.{f}"] == (column == 1).sum()
        assert m[f"cls.labelled.{f}"] == column.notna().sum()
    artifacts = {a.path for a in MlflowClient().list_artifacts(out.mlflow_run_id, "heads")}
    assert "heads/classification_pr_curves.png" in artifacts
    assert "heads/segmentation_linear_overlays.png" in artifacts
    names = {
        "cxrflow-head-classification",
        "cxrflow-head-segmentation-linear",
        "cxrflow-head-demographics-sex",
        "cxrflow-head-demographics-age",
    }
    assert set(out.registered) == names
    client = MlflowClient()
    version = client.get_model_version(
        "cxrflow-head-classification", out.registered["cxrflow-head-classification"]
    )
    assert version.tags["cxrflow.encoder_version"] == "enc-3"
    assert version.tags["cxrflow.data_version"] == "md5-abc"
    model = mlflow.pytorch.load_model(
        f"models:/cxrflow-head-segmentation-linear/{out.registered['cxrflow-head-segmentation-linear']}"
    )
    assert model(torch.zeros(1, 4, 192, 8, 8)).shape == (1, 2, 112, 112)
    # Each head's logged model carries its own scores, and only those.
    (logged,) = mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"source_run_id = '{out.mlflow_run_id}' AND name = 'classification'",
        output_format="list",
    )
    linked = {metric.key: metric.value for metric in logged.metrics or []}
    assert linked == head_metrics(out.result.metrics(), "classification")
    assert linked and all(k.startswith("cls.") for k in linked)
    assert linked["cls.auprc.macro"] == m["cls.auprc.macro"]


def test_feature_cache_is_reused(dataset_dir, encoder_dir, manifest, tmp_path, monkeypatch, caplog):
    encoder, prep = load_encoder(encoder_dir)
    ds = ImageDataset(dataset_dir, split_frame(manifest, "test"), prep)
    cache = FeatureCache(tmp_path / "cache")
    key = cache.key("enc", "data", prep.image_size, "crop")
    first = cache.get(key, encoder, ds)
    calls = []
    monkeypatch.setattr(
        "cxrflow.heads.features.extract_features", lambda *a, **k: calls.append(1) or {}
    )
    with caplog.at_level(logging.INFO):
        again = cache.get(key, encoder, ds)
    assert not calls and "cache hit" in caplog.text
    for k in first:
        assert (first[k] == again[k]).all()
    assert cache.key("enc2", "data", prep.image_size, "crop") != key
    assert cache.key("enc", "data", prep.image_size, "crop", (0, 1, 2, 3)) != key
    monkeypatch.undo()
    fresh = extract_features(encoder, ds)
    assert (fresh["cls"] == first["cls"]).all()


def test_stage_records_a_head_it_could_not_train(dataset_dir, encoder_dir, tmp_path, mlflow_uri):
    import json
    import shutil

    import mlflow

    from cxrflow.evaluation.gather import HEADS_METRICS_FILE
    from cxrflow.manifest import MANIFEST_FILE, read_manifest, write_manifest

    data = tmp_path / "data"
    shutil.copytree(dataset_dir, data)
    df = read_manifest(data / MANIFEST_FILE)
    write_manifest(df.assign(mask_path=None), data / MANIFEST_FILE)
    tiny = preset("tiny")
    config = tiny.replace(
        classification=ClassificationConfig(lr=tiny.classification.lr, epochs=2, repeats=1),
        segmentation=SegmentationConfig(decoders=("linear",), epochs=1),
        demographics=DemographicsConfig(enabled=False),
        register=False,
    )
    params = heads_stage.Params(data_dir=data, encoder_dir=encoder_dir, out_dir=tmp_path / "out")
    out = heads_stage.run(params, config=config)
    run = mlflow.get_run(out.mlflow_run_id)
    assert run.data.tags["cxrflow.not_run.segmentation"] == "no image in the data has a mask"
    assert "cls.auroc.macro" in run.data.metrics
    written = json.loads((tmp_path / "out" / HEADS_METRICS_FILE).read_text())
    assert written["not_run"] == {"segmentation": "no image in the data has a mask"}
