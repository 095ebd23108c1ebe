"""The data-versioning stage: record the dataset directory as a DVC version, log it to MLflow."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cxrflow.dataset import Dataset
from cxrflow.manifest import read_manifest_column
from cxrflow.provenance import data_source
from cxrflow.stages.contract import param
from cxrflow.tags import TAG_DATA_SOURCE, TAG_DATA_VERSION
from cxrflow.tracking import log_dataset_version, stage_run
from cxrflow.versioning import DataVersion, commit_version


@dataclass(frozen=True)
class Params:
    """Version a dataset directory with DVC and push it to the remote."""

    data_dir: Path = param(help="Dataset directory (relative to repo_root, or absolute).")
    repo_root: Path = param(
        Path("."),
        help="The DVC/git project that tracks the data directory; a data directory outside it"
        " (a shared volume) is tracked by a DVC project in its parent directory.",
    )
    dvc_remote: str = param(
        "",
        help="DVC remote URL (a directory or s3://bucket/prefix); empty: $CXRFLOW_DVC_REMOTE,"
        " else the project's default remote.",
    )
    pipeline_run: str = param("", help="The pipeline run this stage belongs to.")


@dataclass(frozen=True)
class Result:
    """The data version and the dataset it describes."""

    version: DataVersion
    dataset: Dataset
    mlflow_run_id: str


def run(params: Params) -> Result:
    """`dvc add` + `dvc push` the data directory; log the version as an MLflow dataset input."""
    repo_root, data_dir = Path(params.repo_root), Path(params.data_dir)
    version = commit_version(repo_root, data_dir, params.dvc_remote or None)
    dataset = Dataset(data_dir if data_dir.is_absolute() else repo_root / data_dir)
    tags = {TAG_DATA_VERSION: version.md5}
    if dataset.manifest_path.is_file():
        # Synthetic or real, so that the model card never lets phantoms pass for patients.
        source = data_source(read_manifest_column(dataset.manifest_path, "source_dataset"))
        if source:
            tags[TAG_DATA_SOURCE] = source
    with stage_run("data_version", params.pipeline_run, tags=tags) as mlflow_run:
        import mlflow

        mlflow.log_params(
            {"data_version": version.md5, "dvc_remote": version.remote, "data_path": version.path}
        )
        mlflow.log_metrics({"data_files": version.files, "data_bytes": version.size})
        log_dataset_version(dataset.manifest_path, version.md5, version.remote)
    return Result(version=version, dataset=dataset, mlflow_run_id=mlflow_run.info.run_id)
