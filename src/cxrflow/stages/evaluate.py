"""The evaluation stage: the paper's tables, fairness and champion comparison for one run."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cxrflow.dataset import Dataset
from cxrflow.evaluation.compare import compare_with_champion
from cxrflow.evaluation.evaluate import EvaluationConfig, EvaluationResult, evaluate
from cxrflow.evaluation.gather import inputs_from_heads_dir
from cxrflow.evaluation.html import write_html
from cxrflow.evaluation.report_results import (
    REPORT_TASK,
    ReportResults,
    report_not_run,
    report_results_from_dict,
)
from cxrflow.registry.runs import client as make_client
from cxrflow.registry.versions import record_metrics
from cxrflow.stages.contract import param
from cxrflow.tags import ENCODER_MODEL, TAG_DATA_VERSION, TAG_SPLIT_DIGEST
from cxrflow.tracking import log_to_pipeline_run, stage_run

log = logging.getLogger(__name__)

HTML_FILE = "evaluation.html"
JSON_FILE = "evaluation.json"
MARKDOWN_FILE = "evaluation.md"


@dataclass(frozen=True)
class Params:
    """Evaluate one pipeline run's heads and report generator; compare with the champion."""

    out_dir: Path = param(help="Where the HTML, JSON and Markdown evaluation go.")
    heads_dir: Path | None = param(None, help="The heads stage's output directory.")
    report_results: Path | None = param(
        None, help="The report stage's report_metrics.json (empty: no report generation)."
    )
    data_dir: Path | None = param(None, help="Dataset directory (its manifest: cohort, strata).")
    data_version: str = param("", help="Data version the run trained on.")
    split_digest: str = param("", help="Digest of the split the run was tested on.")
    encoder_version: str = param(
        "", help="Registered encoder version evaluated; its metrics are recorded on it."
    )
    pipeline_run: str = param("", help="The pipeline run this stage belongs to.")


@dataclass(frozen=True)
class Result:
    """The evaluation, where its files are, and its MLflow run."""

    result: EvaluationResult
    html_path: Path
    json_path: Path
    markdown_path: Path
    mlflow_run_id: str


def _report(
    report: ReportResults | dict | Path | None,
) -> tuple[ReportResults | None, dict[str, str]]:
    """The report results, or none and {task: why} when the report stage did not train."""
    if report is None:
        return None, {}
    if isinstance(report, ReportResults):
        return report, {}
    data = report if isinstance(report, dict) else json.loads(Path(report).read_text())
    why = report_not_run(data)
    if why:
        return None, {REPORT_TASK: why}
    return report_results_from_dict(data), {}


def run(
    params: Params,
    *,
    report: ReportResults | dict | None = None,
    config: EvaluationConfig | None = None,
    client: Any = None,
) -> Result:
    """Evaluate, compare with the encoder's champion, write and log the report.

    The evaluated encoder version receives the metrics as `cxrflow.metric.*` tags, which is
    what the promotion gate compares. `report` (results in memory) replaces
    `params.report_results`.
    """
    import mlflow

    c = client or make_client()
    out_dir = Path(params.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dataset = Dataset(params.data_dir) if params.data_dir else None
    report_results, not_run = _report(report if report is not None else params.report_results)
    inputs = inputs_from_heads_dir(
        params.heads_dir,
        report=report_results,
        not_run=not_run,
        manifest_path=dataset.manifest_path if dataset else None,
        context={
            "pipeline_run": params.pipeline_run,
            "data_version": params.data_version,
            "split_digest": params.split_digest,
        },
    )
    ctx = inputs.context
    comparison = compare_with_champion(
        inputs.heads_metrics | (inputs.report.flat() if inputs.report else {}),
        ENCODER_MODEL,
        data_version=params.data_version,
        split_digest=params.split_digest,
        exclude_version=params.encoder_version,
        client=c,
    )
    model = f"{ENCODER_MODEL}:{params.encoder_version or '?'}"
    result = evaluate(replace(inputs, context=ctx | {"model": model}), config, comparison)
    html_path = write_html(result, out_dir / HTML_FILE, f"Evaluation of {ENCODER_MODEL}")
    json_path = out_dir / JSON_FILE
    json_path.write_text(json.dumps(result.to_dict(), indent=2, default=str) + "\n")
    md_path = out_dir / MARKDOWN_FILE
    md_path.write_text(result.markdown())
    tags = {TAG_DATA_VERSION: params.data_version, TAG_SPLIT_DIGEST: params.split_digest}
    with stage_run(
        "evaluation", params.pipeline_run, tags={k: v for k, v in tags.items() if v}
    ) as mlflow_run:
        mlflow.log_metrics(result.metrics)
        for path in (html_path, json_path, md_path):
            mlflow.log_artifact(str(path), "evaluation")
    # The pipeline run's page opens with the evaluation: its tables as the run's description.
    log_to_pipeline_run(
        params.pipeline_run, [html_path, json_path, md_path], "evaluation", note=result.markdown()
    )
    if params.encoder_version:
        record_metrics(
            ENCODER_MODEL,
            params.encoder_version,
            result.metrics,
            evaluation_run=mlflow_run.info.run_id,
            client=c,
        )
    log.info("evaluation of %s written to %s", params.pipeline_run, html_path)
    return Result(result, html_path, json_path, md_path, mlflow_run.info.run_id)
