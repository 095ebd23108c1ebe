"""Hand-made MLflow states for the registry, lineage, evaluation and model-card tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import pytest

from cxrflow.datasets.importer import IMPORT_DEID_PROFILE
from cxrflow.deid import DeidOptions
from cxrflow.tags import TAG_DATA_VERSION, TAG_GIT_COMMIT, TAG_PIPELINE_RUN, TAG_STAGE

EXPERIMENT = "cxrflow"
SPLIT_TAG = "cxrflow.split_digest"
PROFILE = DeidOptions().describe()


def use_tracking(template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Point MLflow at a fresh copy of the template in `tmp_path`; artefacts under it."""
    db = tmp_path / "mlflow.db"
    shutil.copyfile(template, db)
    uri = f"sqlite:///{db}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)  # the default artifact root is ./mlruns
    mlflow.set_tracking_uri(uri)
    return mlflow.MlflowClient(uri)


def stage(
    name: str,
    pipeline_run: str,
    *,
    tags: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
    metrics: dict[str, float] | None = None,
    artifacts: dict[str, str] | None = None,
) -> str:
    """One finished stage run with the stage tags; returns its run id."""
    mlflow.set_experiment(EXPERIMENT)
    all_tags = {TAG_STAGE: name, TAG_PIPELINE_RUN: pipeline_run, **(tags or {})}
    with mlflow.start_run(run_name=name, tags=all_tags) as run:
        if params:
            mlflow.log_params(params)
        if metrics:
            mlflow.log_metrics(metrics)
        for path, text in (artifacts or {}).items():
            mlflow.log_text(text, path)
    return run.info.run_id


def upstream(
    pipeline_run: str,
    md5: str,
    split_digest: str,
    *,
    found: int = 7,
    quarantined: int = 1,
    entry: str = "ingest",
) -> dict[str, str]:
    """Ingest (or import), split and data-version stage runs as the real stages record them."""
    entry_params = (
        {"deid_profile": PROFILE}
        if entry == "ingest"
        else {"datasets": "chexpert,chestxray14", "deid_profile": IMPORT_DEID_PROFILE}
    )
    return {
        entry: stage(
            entry,
            pipeline_run,
            params={
                "ingest_run": f"ingest-{pipeline_run}",
                "key_fingerprint": "abcdef123456",
                **entry_params,
            },
            metrics={
                "files_found": found,
                "files_written": found - quarantined,
                "files_skipped_existing": 0,
                "files_quarantined": quarantined,
                "quarantined_not_dicom": quarantined,
            },
        ),
        "split": stage(
            "split",
            pipeline_run,
            tags={TAG_DATA_VERSION: md5, SPLIT_TAG: split_digest},
            metrics={"subjects_train": 3, "subjects_val": 1, "subjects_test": 1},
        ),
        "data_version": stage(
            "data_version",
            pipeline_run,
            tags={TAG_DATA_VERSION: md5},
            params={"data_version": md5, "dvc_remote": "remote", "data_path": "data"},
            metrics={"data_files": 4},
        ),
    }


def model_run(stage_name: str, pipeline_run: str, md5: str, **params: str) -> str:
    """A training run holding a stand-in model artifact folder."""
    return stage(
        stage_name,
        pipeline_run,
        tags={TAG_DATA_VERSION: md5, TAG_GIT_COMMIT: "c0ffee" * 6 + "abcd"},
        params=params or {"steps": "10"},
        artifacts={"model/README.txt": "stand-in model"},
    )
