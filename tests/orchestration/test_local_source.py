"""A pipeline run that starts from a public dataset release instead of a DICOM inbox."""

import hashlib
import subprocess

import mlflow
import pytest
from mlflow import MlflowClient

from cxrflow.keys import KEY_FILE_ENV_VAR
from cxrflow.orchestration.local import LocalSettings, run_pipeline_locally
from cxrflow.registry.runs import stage_runs
from cxrflow.tags import ENCODER_MODEL, REPORT_MODEL, TAG_PIPELINE_RUN
from tests.datasets.fixtures import chexpert_release


@pytest.mark.slow  # the whole pipeline once: ~3 min on 2 CPU cores
def test_a_run_from_chexpert_trains_what_the_release_allows_and_says_what_it_did_not(
    tmp_path, monkeypatch
):
    root = tmp_path / "project"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    key = tmp_path / "secret.key"
    key.write_bytes(hashlib.sha256(b"source-run key").hexdigest().encode() + b"\n")
    key.chmod(0o600)
    monkeypatch.setenv(KEY_FILE_ENV_VAR, str(key))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(root)
    release = chexpert_release(tmp_path / "CheXpert-v1.0-small", patients=24)
    settings = LocalSettings(root, root / ".cxrflow" / "kfp", uri)
    params = {
        "inbox": str(root / "inbox"),  # not read: `source` replaces the inbox
        "data_dir": str(root / "data"),
        "source": f"chexpert={release}",
        "max_side": 64,
        "pretrain_steps": 2,
        "pretrain_batch_size": 2,
        "report_steps": 2,
    }
    run_pipeline_locally(settings, params)

    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    (encoder,) = client.search_model_versions(f"name = '{ENCODER_MODEL}'")
    assert client.get_registered_model(ENCODER_MODEL).aliases["champion"] == encoder.version
    runs = stage_runs(client, encoder.tags[TAG_PIPELINE_RUN])
    assert {"import", "split", "data_version", "pretrain", "heads", "report", "evaluation"} <= set(
        runs
    )
    assert "ingest" not in runs
    assert runs["import"].data.metrics["chexpert/written"] == 60  # 24 x 2 train + 6 x 2 valid
    assert runs["data_version"].data.tags["cxrflow.data_source"] == "real:chexpert"
    assert runs["pretrain"].data.tags["cxrflow.device"] == "cpu"
    # CheXpert has labels but no masks and no reports: those heads say why they did not run.
    heads, report = runs["heads"].data, runs["report"].data
    assert heads.tags["cxrflow.not_run.segmentation"] == "no image in the data has a mask"
    assert "cls.auroc.macro" in heads.metrics and "demo.accuracy.sex" in heads.metrics
    assert "Findings text" in report.tags["cxrflow.not_run.report generation"]
    assert not client.search_registered_models(f"name = '{REPORT_MODEL}'")
    card = mlflow.artifacts.load_text(encoder.tags["cxrflow.model_card"])  # the full card
    assert "real, de-identified chest radiographs (chexpert)" in card
    assert "segmentation not evaluated: no image in the data has a mask" in card
    assert "report generation not evaluated" in card
    assert "- Device: cpu" in card
