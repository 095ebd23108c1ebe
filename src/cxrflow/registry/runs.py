"""Finding the MLflow runs of one pipeline run, and what the upstream stages recorded there."""

from __future__ import annotations

import itertools
import json
import logging
from dataclasses import dataclass, fields
from typing import Any

from cxrflow.deid import DeidOptions
from cxrflow.tags import (
    ENTRY_STAGES,
    TAG_DATA_VERSION,
    TAG_PIPELINE_RUN,
    TAG_SPLIT_DIGEST,
    TAG_STAGE,
)

log = logging.getLogger(__name__)


def client(tracking_uri: str | None = None) -> Any:
    """An MlflowClient (MLflow imported lazily: it is slow to import)."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri) if tracking_uri else MlflowClient()


def _quote(value: str) -> str:
    # MLflow's filter grammar has no escapes: refuse quotes rather than build a broken filter
    if "'" in value:
        raise ValueError(f"value {value!r} contains a quote and cannot be searched for")
    return f"'{value}'"


def search_runs(mlflow_client: Any, filter_string: str) -> list[Any]:
    """Runs of every experiment matching `filter_string`, newest first."""
    experiments = [e.experiment_id for e in mlflow_client.search_experiments()]
    if not experiments:
        return []
    return list(
        mlflow_client.search_runs(
            experiments, filter_string, order_by=["attributes.start_time DESC"], max_results=1000
        )
    )


def stage_runs(mlflow_client: Any, pipeline_run: str) -> dict[str, Any]:
    """stage name -> the newest MLflow run of that stage in `pipeline_run`."""
    out: dict[str, Any] = {}
    runs = search_runs(mlflow_client, f"tags.`{TAG_PIPELINE_RUN}` = {_quote(pipeline_run)}")
    for run in runs:
        stage = run.data.tags.get(TAG_STAGE, "")
        if stage and stage not in out:
            out[stage] = run
    return out


def entry_run(runs: dict[str, Any]) -> Any | None:
    """The run through which the images entered: the ingest or the import stage's, or None."""
    return next((runs[s] for s in ENTRY_STAGES if s in runs), None)


def ingest_runs_for_data_version(mlflow_client: Any, data_version: str) -> list[Any]:
    """Ingest (or import) runs of every pipeline run that produced (or reused) `data_version`."""
    versioned = search_runs(mlflow_client, f"tags.`{TAG_DATA_VERSION}` = {_quote(data_version)}")
    pipeline_runs = {r.data.tags.get(TAG_PIPELINE_RUN) for r in versioned} - {None, ""}
    out = []
    for p in sorted(pipeline_runs):
        run = entry_run(stage_runs(mlflow_client, p))
        if run is not None:
            out.append(run)
    return out


def options_from_profile(profile: str) -> dict[str, bool]:
    """The de-identification options whose description is `profile` ({} if none matches)."""
    names = [f.name for f in fields(DeidOptions)]
    for combo in itertools.product((True, False), repeat=len(names)):
        options = DeidOptions(**dict(zip(names, combo, strict=True)))
        if options.describe() == profile:
            return dict(zip(names, combo, strict=True))
    return {}


@dataclass(frozen=True)
class PipelineContext:
    """What the upstream stages of one pipeline run recorded (empty strings when unknown)."""

    pipeline_run: str
    data_version: str = ""
    split_digest: str = ""
    deid_profile: str = ""
    deid_options: dict[str, bool] | None = None
    ingest_run_id: str = ""
    stage_run_ids: dict[str, str] | None = None


def pipeline_context(mlflow_client: Any, pipeline_run: str) -> PipelineContext:
    """Read the data version, split digest and de-identification settings of a pipeline run."""
    runs = stage_runs(mlflow_client, pipeline_run)
    ingest = entry_run(runs)
    profile = ingest.data.params.get("deid_profile", "") if ingest else ""
    options: dict[str, bool] = {}
    if ingest is not None:
        raw = ingest.data.params.get("deid_options", "")
        options = json.loads(raw) if raw else options_from_profile(profile)
    data_version = ""
    for stage in ("data_version", "pretrain", "heads", "split"):
        if stage in runs and runs[stage].data.tags.get(TAG_DATA_VERSION):
            data_version = runs[stage].data.tags[TAG_DATA_VERSION]
            break
    split = runs["split"].data.tags.get(TAG_SPLIT_DIGEST, "") if "split" in runs else ""
    return PipelineContext(
        pipeline_run=pipeline_run,
        data_version=data_version,
        split_digest=split,
        deid_profile=profile,
        deid_options=options,
        ingest_run_id=ingest.info.run_id if ingest else "",
        stage_run_ids={s: r.info.run_id for s, r in runs.items()},
    )
