"""The stage on phantom data: learns past the most-frequent-report baseline, logs, registers."""

import json

import pytest
from mlflow import MlflowClient

from cxrflow.evaluation.report_results import load_report_results
from cxrflow.findings import FINDINGS
from cxrflow.manifest import MANIFEST_FILE, read_manifest
from cxrflow.report.config import ReportConfig
from cxrflow.report.labeler import POSITIVE, label_report
from cxrflow.report.metrics import BootstrapScore, NotComputed
from cxrflow.stages import report as report_stage
from cxrflow.stages.report import METRICS_FILE, REGISTERED_MODEL, TABLE_FILE
from cxrflow.tags import TAG_DATA_VERSION, TAG_ENCODER_VERSION
from tests.report.helpers import make_phantom_dataset


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    return make_phantom_dataset(tmp_path_factory.mktemp("phantom"), subjects=60, seed=3)


def test_labeler_reads_the_phantom_reports_like_their_labels(phantom):
    manifest = read_manifest(phantom / MANIFEST_FILE)
    for report, labels in zip(
        manifest["report"], manifest[[f"label_{f}" for f in FINDINGS]].to_numpy(), strict=True
    ):
        got = label_report(report)
        assert [int(got[f] == POSITIVE) for f in FINDINGS] == list(labels), report


@pytest.mark.slow  # an end-to-end stage run: ~90 s on 2 shared CPU cores
def test_stage_learns_and_logs_and_registers(phantom, encoder_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    # Small version of the tiny preset (bench/report.py and the report give full-size figures).
    config = ReportConfig.named(
        "tiny", max_steps=60, n_bootstrap=100, max_new_tokens=60, sample_table_rows=3
    )
    params = report_stage.Params(
        data_dir=phantom,
        encoder_dir=encoder_dir,
        out_dir=tmp_path / "out",
        data_version="md5-data",
        encoder_version="enc-3",
    )
    out = report_stage.run(params, config=config)
    assert out is not None
    llava, frequent = out.metrics["LLaVA"], out.metrics["Most frequent report"]
    assert out.train.global_step == 60 and out.train.losses[-1][1] < out.train.losses[0][1] / 2
    assert llava.rouge_l.value > frequent.rouge_l.value
    assert isinstance(llava.finding_f1, BootstrapScore)
    assert isinstance(llava.chexbert_f1, NotComputed)
    assert "| LLaVA | 56 x 56 | 16 |" in out.table_markdown
    assert (tmp_path / "out" / TABLE_FILE).read_text() == out.table_markdown
    # What the evaluation reads: Table 2's systems, per-image scores of every test image whose
    # mean is Table 2's ROUGE-L, and a bounded number of samples.
    results = json.loads((tmp_path / "out" / METRICS_FILE).read_text())
    assert results["LLaVA"]["rouge_l"]["value"] == pytest.approx(llava.rouge_l.value)
    per_image = results["per_image"]["rouge_l"]
    assert set(per_image) == set(out.samples["image_id"])
    assert sum(per_image.values()) / len(per_image) == pytest.approx(llava.rouge_l.value)
    assert 0 < len(results["samples"]) <= config.sample_table_rows < len(per_image)
    assert set(results["samples"][0]) >= {"image_id", "reference", "generated"}
    assert set(results["finding_labels"]["reference"]) == set(per_image)
    report = load_report_results(tmp_path / "out" / METRICS_FILE)
    assert report.primary == "LLaVA" and report.per_image["rouge_l"] == per_image

    client = MlflowClient()
    run = client.get_run(out.mlflow_run_id)
    assert run.data.tags[TAG_DATA_VERSION] == "md5-data"
    assert run.data.tags[TAG_ENCODER_VERSION] == "enc-3"
    assert len(client.get_metric_history(out.mlflow_run_id, "train_loss")) == 60
    assert (
        "test_rouge_l_low" in run.data.metrics
        and "baseline_most_frequent_bleu4" in run.data.metrics
    )
    artifacts = {a.path for a in client.list_artifacts(out.mlflow_run_id)}
    assert {TABLE_FILE, METRICS_FILE, "report_samples.json"} <= artifacts
    version = client.get_model_version(REGISTERED_MODEL, out.model_version)
    assert version.tags[TAG_ENCODER_VERSION] == "enc-3"
    assert version.tags[TAG_DATA_VERSION] == "md5-data"


def _without_reports(phantom, tmp_path, keep_split: str | None = None):
    """A copy of the phantom whose reports are gone (all, or all but `keep_split`'s)."""
    import shutil

    from cxrflow.manifest import write_manifest

    data = tmp_path / "data"
    shutil.copytree(phantom, data)
    df = read_manifest(data / MANIFEST_FILE)
    drop = df["split"] != keep_split if keep_split else df["split"].notna()
    df.loc[drop, "report"] = None
    write_manifest(df, data / MANIFEST_FILE)
    return data


def test_data_without_reports_train_nothing_and_say_why(
    phantom, encoder_dir, tmp_path, monkeypatch
):
    import mlflow

    from cxrflow.evaluation.report_results import report_not_run

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    params = report_stage.Params(
        data_dir=_without_reports(phantom, tmp_path),
        encoder_dir=encoder_dir,
        out_dir=tmp_path / "out",
        pipeline_run="run-1",
    )
    out = report_stage.run(params)
    assert isinstance(out, report_stage.NotRun)
    assert out.reason == report_stage.NO_REPORTS
    assert report_not_run(out.results) == report_stage.NO_REPORTS
    assert out.to_json()["model_dir"] == "" and out.to_json()["not_run"] == out.reason
    assert not (tmp_path / "out" / "model").exists()
    run = mlflow.get_run(out.mlflow_run_id)
    assert run.data.tags["cxrflow.not_run.report generation"] == report_stage.NO_REPORTS
    assert run.data.tags["cxrflow.stage"] == "report"
    assert int(run.data.params["excluded_train_no_findings"]) > 0
    assert not MlflowClient().search_registered_models(f"name = '{REGISTERED_MODEL}'")


def test_reports_in_one_split_only_are_an_error(phantom, encoder_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    params = report_stage.Params(
        data_dir=_without_reports(phantom, tmp_path, keep_split="train"),
        encoder_dir=encoder_dir,
        out_dir=tmp_path / "out",
    )
    with pytest.raises(ValueError, match="no frontal image with Findings text in the test split"):
        report_stage.run(params)
