"""The pipeline function run end to end with kfp.local, MLflow on SQLite and DVC."""

import hashlib
import subprocess

import mlflow
import pytest

from cxrflow.keys import KEY_FILE_ENV_VAR
from cxrflow.orchestration.local import LocalSettings, run_pipeline_locally
from cxrflow.phantom import GROUND_TRUTH_NAME, generate_phantom
from cxrflow.versioning import checkout_version, dvc_file_for, read_version, version_history
from tests.factory import make_dataset, write


@pytest.fixture
def project(tmp_path, monkeypatch):
    root = tmp_path / "project"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    key = tmp_path / "secret.key"
    key.write_bytes(hashlib.sha256(b"local-run key").hexdigest().encode() + b"\n")
    monkeypatch.setenv(KEY_FILE_ENV_VAR, str(key))
    monkeypatch.setenv("PATH", __import__("os").environ["PATH"])
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(root)
    inbox = root / "inbox"
    summary = generate_phantom(
        inbox, 16, seed=3, min_side=96, max_side=128, include_faulty=False, progress=False
    )
    (inbox / GROUND_TRUTH_NAME).rename(root / GROUND_TRUTH_NAME)
    (inbox / "notes.txt").write_text("not DICOM")
    return root, inbox, LocalSettings(root, root / ".cxrflow" / "kfp", uri), summary.n_images


def _run(settings, inbox, data):
    params = {"inbox": str(inbox), "data_dir": str(data), "max_side": 112}
    params["ground_truth"] = str(settings.repo_root / GROUND_TRUTH_NAME)
    # The smallest pre-training that still runs every part of the stage.
    params.update(pretrain_steps=2, pretrain_batch_size=2, report_steps=2)
    run_pipeline_locally(settings, params)


def test_local_pipeline_ingests_versions_and_tracks(project):
    root, inbox, settings, n_images = project
    data = root / "data"
    _run(settings, inbox, data)
    v1 = read_version(dvc_file_for(root, data))
    assert (root / "data.dvc").is_file() and (data / "manifest.parquet").is_file()

    mlflow.set_tracking_uri(settings.tracking_uri)
    runs = mlflow.search_runs(experiment_names=["cxrflow"])
    stages = dict(zip(runs["tags.cxrflow.stage"], runs.index, strict=True))
    # One parent run for the pipeline run; every stage run is its child.
    assert set(stages) == {
        "pipeline",
        "ingest",
        "split",
        "data_version",
        "pretrain",
        "heads",
        "report",
        "evaluation",
    }
    assert runs["tags.cxrflow.pipeline_run"].nunique() == 1
    parent_id = runs.loc[stages["pipeline"], "run_id"]
    children = runs.drop(index=stages["pipeline"])
    assert (children["tags.mlflow.parentRunId"] == parent_id).all()
    ingest = runs.loc[stages["ingest"]]
    assert (ingest["metrics.files_found"], ingest["metrics.files_written"]) == (
        n_images + 1,
        n_images,
    )
    assert ingest["metrics.quarantined_not_dicom"] == 1
    version_run = mlflow.get_run(runs.loc[stages["data_version"], "run_id"])
    assert version_run.data.tags["cxrflow.data_version"] == v1.md5
    assert version_run.data.tags["cxrflow.data_source"] == "synthetic:cxrflow-phantom"
    inputs = version_run.inputs.dataset_inputs
    assert inputs and inputs[0].dataset.digest == v1.md5
    pretrain_run = mlflow.get_run(runs.loc[stages["pretrain"], "run_id"])
    assert pretrain_run.data.tags["cxrflow.data_version"] == v1.md5
    assert {"dino_loss", "ibot_loss", "koleo_loss", "lr", "teacher_temp"} <= set(
        pretrain_run.data.metrics
    )
    client = mlflow.MlflowClient(settings.tracking_uri)
    encoder = client.get_model_version("cxrflow-encoder", "1")
    assert encoder.tags["cxrflow.data_version"] == v1.md5
    heads_run = mlflow.get_run(runs.loc[stages["heads"], "run_id"])
    assert heads_run.data.tags["cxrflow.encoder_version"] == "1"
    assert any(k.startswith("seg.") for k in heads_run.data.metrics)
    assert any(k.startswith("cls.auprc") for k in heads_run.data.metrics)
    # The first candidate becomes the champion; its model card is attached.
    champion = client.get_model_version_by_alias("cxrflow-encoder", "champion")
    assert str(champion.version) == "1" and "cxrflow.model_card" in champion.tags
    assert champion.tags["cxrflow.gate.decision"] == "promoted"
    report_version = client.get_model_version("cxrflow-report-generator", "1")
    assert report_version.tags["cxrflow.encoder_version"] == "1"

    # New images arrive: a new version; the old one stays restorable from the remote.
    write(make_dataset(sop_uid="1.2.840.99999.77.50", PatientID="NEW-P9"), inbox / "new" / "IM")
    _run(settings, inbox, data)
    v2 = read_version(dvc_file_for(root, data))
    assert v2.md5 != v1.md5 and v2.files == v1.files + 2  # one image, one run record
    assert version_history(root, v2.md5) == [v2.md5, v1.md5]
    # Scheduled retraining continues from the champion: encoder 2 started from encoder 1.
    assert encoder.tags["cxrflow.init_from"] == "champion"
    assert encoder.tags["cxrflow.init.source"] == "random"  # no champion before run 1
    second = client.get_model_version("cxrflow-encoder", "2")
    assert second.tags["cxrflow.init_from"] == "champion"
    assert second.tags["cxrflow.init.model"] == "cxrflow-encoder:1"
    assert second.tags["cxrflow.parent_models"] == "cxrflow-encoder:1"
    assert len(second.tags["cxrflow.init.sha256"]) == 64
    from cxrflow.lineage.model import model_lineage

    tree = model_lineage("cxrflow-encoder", "2", client=client)
    assert "cxrflow-encoder:1" in [n.label for n in tree.children]
    import pandas as pd

    m = pd.read_parquet(data / "manifest.parquet")
    assert m["split"].notna().all() and m["ingest_run"].nunique() == 2
    # Nothing new: same data version, no new DVC object.
    _run(settings, inbox, data)
    assert read_version(dvc_file_for(root, data)).md5 == v2.md5
    restored = checkout_version(root, v1.md5, data)
    assert restored.md5 == v1.md5
    assert len(pd.read_parquet(data / "manifest.parquet")) == n_images
