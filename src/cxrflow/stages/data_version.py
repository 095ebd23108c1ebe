"""The data-versioning stage: record the dataset directory as a DVC version, log it to MLflow."""

from __future__ import annotations

from pathlib import Path

from cxrflow.manifest import MANIFEST_FILE
from cxrflow.tracking import log_dataset_version, stage_run
from cxrflow.versioning import DataVersion, commit_version


def run_version_stage(
    repo_root: Path, data_dir: Path, *, remote_url: str | None = None, pipeline_run: str = ""
) -> DataVersion:
    """`dvc add` + `dvc push` the data directory; log the version as an MLflow dataset input."""
    version = commit_version(repo_root, data_dir, remote_url or None)
    data_path = data_dir if data_dir.is_absolute() else repo_root / data_dir
    with stage_run("data_version", pipeline_run, tags={"cxrflow.data_version": version.md5}):
        import mlflow

        mlflow.log_params(
            {"data_version": version.md5, "dvc_remote": version.remote, "data_path": version.path}
        )
        mlflow.log_metrics({"data_files": version.files, "data_bytes": version.size})
        log_dataset_version(data_path / MANIFEST_FILE, version.md5, version.remote)
    return version
