"""MLflow tracking for the stages: where runs go and what each stage records.

The embedded default is MLflow's own: `sqlite:///mlflow.db` in the working directory (set
MLFLOW_TRACKING_URI to change it). Nothing logged here is PHI or secret: counts, settings,
pseudonymous tables, the key's public fingerprint.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from cxrflow.tags import TAG_DATA_VERSION, TAG_PIPELINE_RUN, TAG_STAGE

log = logging.getLogger(__name__)

EXPERIMENT = os.environ.get("CXRFLOW_EXPERIMENT", "cxrflow")


# MLflow's UI opens an experiment on the tab its kind names; without the tag MLflow 3 may infer
# "GenAI" and open on traces, which this project never logs.
EXPERIMENT_KIND_TAG: Final = "mlflow.experimentKind"
EXPERIMENT_KIND: Final = "custom_model_development"
PIPELINE_STAGE: Final = "pipeline"  # the TAG_STAGE value of a pipeline run's parent run
NOTE_LIMIT: Final = 7800  # MLflow refuses tag values over 8000 characters; room for the notice


def use_experiment() -> str:
    """Make EXPERIMENT the active experiment (creating and tagging it once); return its id."""
    import mlflow

    experiment = mlflow.set_experiment(EXPERIMENT)
    if experiment.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
        mlflow.MlflowClient().set_experiment_tag(
            experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND
        )
    return experiment.experiment_id


def pipeline_parent_run(experiment_id: str, pipeline_run: str) -> str:
    """The id of the parent run that groups `pipeline_run`'s stage runs, created on first use.

    Every stage is its own process (a pod on a cluster), so the parent is found by its tags.
    Should two stages create one at the same moment, all keep the oldest and the others are
    deleted, so a pipeline run never shows two parents.
    """
    import mlflow

    client = mlflow.MlflowClient()
    query = (
        f"tags.`{TAG_PIPELINE_RUN}` = '{pipeline_run}' and tags.`{TAG_STAGE}` = '{PIPELINE_STAGE}'"
    )

    def parents() -> list[Any]:
        return client.search_runs(
            [experiment_id], query, order_by=["attributes.start_time ASC", "attributes.run_id ASC"]
        )

    found = parents()
    if found:
        return found[0].info.run_id
    created = client.create_run(
        experiment_id,
        run_name=pipeline_run,
        tags={TAG_STAGE: PIPELINE_STAGE, TAG_PIPELINE_RUN: pipeline_run},
    )
    oldest = parents()[0].info.run_id
    if oldest != created.info.run_id:
        client.delete_run(created.info.run_id)
    log.info("MLflow parent run %s groups the stages of %s", oldest, pipeline_run)
    return oldest


@contextmanager
def stage_run(
    stage: str, pipeline_run: str = "", tags: dict[str, str] | None = None
) -> Iterator[Any]:
    """An MLflow run for one stage; a child of the pipeline run's parent run when one is named.

    The parent's end time follows its latest child; a failed stage marks the parent failed.
    """
    import mlflow

    experiment_id = use_experiment()
    all_tags = {
        TAG_STAGE: stage,
        **({TAG_PIPELINE_RUN: pipeline_run} if pipeline_run else {}),
        **(tags or {}),
    }
    parent = pipeline_parent_run(experiment_id, pipeline_run) if pipeline_run else None
    status = "FAILED"
    try:
        with mlflow.start_run(run_name=stage, tags=all_tags, parent_run_id=parent) as run:
            yield run
        status = "FINISHED"
    finally:
        if parent is not None:
            client = mlflow.MlflowClient()
            if client.get_run(parent).info.status == "FAILED":
                status = "FAILED"  # an earlier stage failed: the pipeline run stays failed
            client.set_terminated(parent, status)


def log_to_pipeline_run(
    pipeline_run: str, paths: list[Path], artifact_dir: str, note: str = ""
) -> None:
    """Also log files (and a Markdown note, its page's description) to the parent run."""
    import mlflow

    if not pipeline_run:
        return
    client = mlflow.MlflowClient()
    parent = pipeline_parent_run(use_experiment(), pipeline_run)
    for path in paths:
        client.log_artifact(parent, str(path), artifact_dir)
    if note:
        if len(note) > NOTE_LIMIT:
            cut = note[:NOTE_LIMIT].rsplit("\n", 1)[0]
            note = f"{cut}\n\n(cut at {NOTE_LIMIT} characters: the artifacts hold all of it)"
        client.set_tag(parent, "mlflow.note.content", note)


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
    with warnings.catch_warnings():
        # A local remote's path matches MLflow's local-artifact source twice over (a warning
        # per run that says nothing); it resolves to that source either way.
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
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
