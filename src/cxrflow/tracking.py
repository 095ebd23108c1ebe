"""MLflow tracking for the stages: where runs go and what each stage records.

The embedded default is MLflow's own: `sqlite:///mlflow.db` in the working directory (set
MLFLOW_TRACKING_URI to change it). Nothing logged here is PHI or secret: counts, settings,
pseudonymous tables, the key's public fingerprint.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cxrflow.tags import TAG_DATA_VERSION, TAG_PIPELINE_RUN, TAG_STAGE

log = logging.getLogger(__name__)

EXPERIMENT = os.environ.get("CXRFLOW_EXPERIMENT", "cxrflow")


@contextmanager
def stage_run(
    stage: str, pipeline_run: str = "", tags: dict[str, str] | None = None
) -> Iterator[Any]:
    """An MLflow run for one stage of one pipeline run."""
    import mlflow

    mlflow.set_experiment(EXPERIMENT)
    all_tags = {
        TAG_STAGE: stage,
        **({TAG_PIPELINE_RUN: pipeline_run} if pipeline_run else {}),
        **(tags or {}),
    }
    with mlflow.start_run(run_name=f"{stage}", tags=all_tags) as run:
        yield run


def log_ingest(result: Any, quarantine_reasons: dict[str, int]) -> None:
    """Record an ingestion run's counts and settings in the active MLflow run."""
    import mlflow

    mlflow.log_params(
        {
            "ingest_run": result.run_id,
            "deid_profile": result.profile[:500],
            "key_fingerprint": result.key_fingerprint,
        }
    )
    mlflow.log_metrics(
        {
            "files_found": result.found,
            "files_written": result.written,
            "files_skipped_existing": result.skipped_existing,
            "files_quarantined": result.quarantined,
            **{f"quarantined_{k}": v for k, v in quarantine_reasons.items()},
        }
    )


def log_dataset_version(manifest_path: Path, md5: str, remote: str, name: str = "cxr-deid") -> None:
    """Log the data version as an MLflow dataset input (digest = DVC md5, source = remote)."""
    import mlflow
    import pandas as pd

    df = pd.read_parquet(manifest_path, columns=["image_id", "subject_id", "view"])
    dataset = mlflow.data.from_pandas(df, source=remote, digest=md5[:36], name=name)
    mlflow.log_input(dataset, context="training")
    mlflow.set_tag(TAG_DATA_VERSION, md5)


def git_commit() -> str:
    """The code's commit: $CXRFLOW_GIT_COMMIT (set in images), else `git rev-parse HEAD`."""
    import subprocess

    env = os.environ.get("CXRFLOW_GIT_COMMIT")
    if env:
        return env
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def params_digest(params: dict[str, Any]) -> str:
    """A short digest of a parameter set (stable key order)."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:16]
