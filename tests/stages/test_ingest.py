"""The ingestion stage: de-identify an inbox into a dataset, log it, summarise it."""

import mlflow
from mlflow import MlflowClient

from cxrflow.keys import KEY_ENV_VAR
from cxrflow.stages import ingest as stage
from tests.ingest.conftest import KEY, build_inbox


def test_stage_writes_the_dataset_and_logs_reconciled_counts(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv(KEY_ENV_VAR, KEY.value.decode())
    monkeypatch.chdir(tmp_path)  # the default artifact root is ./mlruns
    expected = build_inbox(tmp_path / "inbox")

    params = stage.Params(
        inbox=tmp_path / "inbox", data_dir=tmp_path / "data", max_side=64, pipeline_run="run-1"
    )
    out = stage.run(params)

    r = out.result
    assert r.found == len(expected) and r.reconciles
    assert r.written == sum(v == "written" for v in expected.values())
    assert sum(out.reasons.values()) == r.quarantined
    assert out.dataset.manifest_path.is_file() and len(out.dataset.manifest()) == r.written
    assert "Counts reconcile: **yes**" in out.summary_markdown
    run = MlflowClient().get_run(out.mlflow_run_id)
    assert run.data.tags["cxrflow.stage"] == "ingest"
    assert run.data.tags["cxrflow.pipeline_run"] == "run-1"
    text = mlflow.artifacts.load_text(f"runs:/{out.mlflow_run_id}/{stage.SUMMARY_ARTIFACT}")
    assert text == out.summary_markdown

    again = stage.run(params)  # nothing new: every file is already ingested or quarantined
    assert again.result.written == 0 and again.result.reconciles
