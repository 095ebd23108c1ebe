"""The evaluation stage as the pipeline runs it: gather, evaluate, write, log to MLflow."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cxrflow.evaluation.compare import compare_with_champion
from cxrflow.evaluation.evaluate import EvaluationConfig, EvaluationResult, evaluate
from cxrflow.evaluation.gather import inputs_from_mlflow
from cxrflow.evaluation.html import write_html
from cxrflow.evaluation.report_results import (
    ReportResults,
    load_report_results,
    report_results_from_dict,
)
from cxrflow.registry.runs import client as make_client
from cxrflow.registry.tags import ENCODER_MODEL, TAG_SPLIT_DIGEST
from cxrflow.registry.versions import record_metrics
from cxrflow.tracking import TAG_DATA_VERSION, stage_run

log = logging.getLogger(__name__)

HTML_FILE = "evaluation.html"
JSON_FILE = "evaluation.json"
MARKDOWN_FILE = "evaluation.md"


@dataclass(frozen=True)
class EvaluationStageOutput:
    """The evaluation, where its files are, and its MLflow run."""

    result: EvaluationResult
    html_path: Path
    json_path: Path
    markdown_path: Path
    mlflow_run_id: str


def _report(report: ReportResults | dict | Path | str | None) -> ReportResults | None:
    if report is None or report == "":
        return None
    if isinstance(report, ReportResults):
        return report
    if isinstance(report, dict):
        return report_results_from_dict(report)
    return load_report_results(Path(report))


def run_evaluation_stage(
    pipeline_run: str,
    out_dir: Path,
    *,
    manifest_path: Path | None = None,
    report: ReportResults | dict | Path | str | None = None,
    config: EvaluationConfig | None = None,
    model: str = ENCODER_MODEL,
    model_version: str = "",
    record_on: dict[str, str] | None = None,
    client: Any = None,
) -> EvaluationStageOutput:
    """Evaluate `pipeline_run`, compare with `model`'s champion, write and log the report.

    `record_on` (registered name -> version) receives the metrics as `cxrflow.metric.*`
    tags, which is what the promotion gate compares.
    """
    import mlflow

    c = client or make_client()
    out_dir.mkdir(parents=True, exist_ok=True)
    inputs = inputs_from_mlflow(
        pipeline_run,
        report=_report(report),
        manifest_path=manifest_path,
        client=c,
        work_dir=out_dir / "inputs",
    )
    ctx = inputs.context
    comparison = compare_with_champion(
        inputs.heads_metrics | (inputs.report.flat() if inputs.report else {}),
        model,
        data_version=ctx.get("data_version", ""),
        split_digest=ctx.get("split_digest", ""),
        exclude_version=model_version,
        client=c,
    )
    result = evaluate(
        replace(inputs, context=ctx | {"model": f"{model}:{model_version or '?'}"}),
        config,
        comparison,
    )
    html_path = write_html(result, out_dir / HTML_FILE, f"Evaluation of {model}")
    json_path = out_dir / JSON_FILE
    json_path.write_text(json.dumps(result.to_dict(), indent=2, default=str) + "\n")
    md_path = out_dir / MARKDOWN_FILE
    md_path.write_text(result.markdown())
    tags = {
        TAG_DATA_VERSION: ctx.get("data_version", ""),
        TAG_SPLIT_DIGEST: ctx.get("split_digest", ""),
    }
    with stage_run("evaluation", pipeline_run, tags={k: v for k, v in tags.items() if v}) as run:
        mlflow.log_metrics(result.metrics)
        for path in (html_path, json_path, md_path):
            mlflow.log_artifact(str(path), "evaluation")
    for name, version in (record_on or {}).items():
        record_metrics(name, version, result.metrics, evaluation_run=run.info.run_id, client=c)
    log.info("evaluation of %s written to %s", pipeline_run, html_path)
    return EvaluationStageOutput(result, html_path, json_path, md_path, run.info.run_id)
