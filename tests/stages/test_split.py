import mlflow
import pandas as pd
import pytest

from cxrflow.manifest import MANIFEST_FILE, read_manifest, write_manifest
from cxrflow.split import (
    SPLITS,
    SPLITS_FILE,
    LeakageError,
    read_splits,
    split_digest,
)
from cxrflow.stages import split as split_stage
from cxrflow.tags import TAG_SPLIT_DIGEST
from tests.split.helpers import make_manifest, subject_split


@pytest.fixture
def tracking(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)  # the default artifact root is ./mlruns
    return mlflow.MlflowClient()


def test_stage_end_to_end(tmp_path, tracking):
    data = tmp_path / "data"
    data.mkdir()
    base = make_manifest(120, seed=1)
    write_manifest(base, data / MANIFEST_FILE)
    out = split_stage.run(
        split_stage.Params(
            data_dir=data, mode="stratified", data_version="md5-abc", pipeline_run="kfp-run-1"
        )
    )

    manifest = read_manifest(data / MANIFEST_FILE)
    assert "split" in manifest.columns and manifest["split"].notna().all()
    assert split_digest(manifest) == out.digest
    frozen = read_splits(data / SPLITS_FILE)
    assert len(frozen) == 120 and set(frozen["method"]) == {"stratified"}
    assert sum(out.subjects.values()) == 120 and sum(out.images.values()) == len(base)
    assert out.new_subjects == 120
    assert out.digest in out.report_markdown

    run = tracking.get_run(out.mlflow_run_id)
    assert run.data.tags[TAG_SPLIT_DIGEST] == out.digest
    assert run.data.tags["cxrflow.data_version"] == "md5-abc"
    assert run.data.tags["cxrflow.pipeline_run"] == "kfp-run-1"
    assert run.data.params == {
        "ratios": "0.7,0.15,0.15",
        "seed": "cxrflow-split-v1",
        "mode": "stratified",
    }
    for split in SPLITS:
        assert run.data.metrics[f"subjects_{split}"] == out.subjects[split]
        assert run.data.metrics[f"images_{split}"] == out.images[split]
    artifacts = [a.path for a in tracking.list_artifacts(out.mlflow_run_id)]
    assert "split_report.md" in artifacts
    text = mlflow.artifacts.load_text(f"runs:/{out.mlflow_run_id}/split_report.md")
    assert text == out.report_markdown

    # A later ingest adds subjects and images: known subjects keep their split.
    before = subject_split(manifest)
    more = make_manifest(60, start=120, seed=2, ingest_run="ingest-0002")
    grown = pd.concat([manifest, more.assign(split=None)], ignore_index=True)
    write_manifest(grown, data / MANIFEST_FILE)
    again = split_stage.run(split_stage.Params(data_dir=data, mode="stratified"))
    after = subject_split(read_manifest(data / MANIFEST_FILE))
    assert {s: after[s] for s in before} == before
    assert again.new_subjects == 60 and again.digest != out.digest
    assert len(read_splits(data / SPLITS_FILE)) == 180

    # Re-running on unchanged data changes nothing.
    bytes_before = (data / SPLITS_FILE).read_bytes()
    assert split_stage.run(split_stage.Params(data_dir=data)).digest == again.digest
    assert (data / SPLITS_FILE).read_bytes() == bytes_before


def test_stage_fails_loudly_on_leakage_and_writes_nothing(tmp_path, tracking, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    write_manifest(make_manifest(20), data / MANIFEST_FILE)

    def leaky(manifest, config, frozen):
        out = manifest.assign(split="train")
        out.loc[out.index[0], "split"] = "test"
        out.loc[out.index[1:3], "subject_id"] = out.loc[out.index[0], "subject_id"]
        return out, frozen

    monkeypatch.setattr("cxrflow.stages.split.assign_splits", leaky)
    with pytest.raises(LeakageError, match="1 subjects"):
        split_stage.run(split_stage.Params(data_dir=data))
    assert not (data / SPLITS_FILE).exists()
    assert "split" not in read_manifest(data / MANIFEST_FILE).columns
    runs = tracking.search_runs([tracking.get_experiment_by_name("cxrflow").experiment_id])
    assert runs[0].info.status == "FAILED"
