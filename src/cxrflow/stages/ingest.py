"""The ingestion stage as the pipeline runs it: ingest, log to MLflow, summarise."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cxrflow.deid import DeidOptions
from cxrflow.ingest import IngestConfig, IngestResult, run_ingest
from cxrflow.ingest.stage import QUARANTINE_FILE
from cxrflow.keys import load_key
from cxrflow.tracking import log_ingest, stage_run


@dataclass(frozen=True)
class IngestStageOutput:
    result: IngestResult
    reasons: dict[str, int]
    mlflow_run_id: str


def quarantine_reasons(output_dir: Path, run_id: str) -> dict[str, int]:
    """Counts of this run's quarantined files by reason class."""
    path = output_dir / QUARANTINE_FILE
    if not path.is_file():
        return {}
    q = pd.read_parquet(path)
    q = q[q["ingest_run"] == run_id]
    return {str(k): int(v) for k, v in q["reason_class"].value_counts().sort_index().items()}


def summary_markdown(result: IngestResult, reasons: dict[str, int]) -> str:
    """A PHI-free Markdown summary of an ingestion run (KFP UI and MLflow)."""
    lines = [
        f"# Ingestion {result.run_id}",
        "",
        "| files | count |",
        "| --- | ---: |",
        f"| found | {result.found} |",
        f"| written | {result.written} |",
        f"| already ingested | {result.skipped_existing} |",
        f"| quarantined | {result.quarantined} |",
        "",
        f"Counts reconcile: **{'yes' if result.reconciles else 'NO'}** "
        f"(found = written + already ingested + quarantined).",
        "",
        f"De-identification: {result.profile}. Key fingerprint `{result.key_fingerprint}`.",
    ]
    if reasons:
        lines += ["", "| quarantine reason | files |", "| --- | ---: |"]
        lines += [f"| {k} | {v} |" for k, v in reasons.items()]
    return "\n".join(lines) + "\n"


def run_ingest_stage(
    inbox: Path,
    data_dir: Path,
    *,
    ground_truth: Path | None = None,
    max_side: int = 1024,
    png_bits: int = 16,
    write_dicom: bool = False,
    workers: int = 1,
    options: DeidOptions | None = None,
    pipeline_run: str = "",
    manifest_out: Path | None = None,
    summary_out: Path | None = None,
) -> IngestStageOutput:
    """Ingest `inbox` into `data_dir` with the key from the environment; log it to MLflow."""
    key = load_key()
    config = IngestConfig(
        input_dir=inbox,
        output_dir=data_dir,
        ground_truth=ground_truth,
        max_side=max_side,
        png_bits=png_bits,  # type: ignore[arg-type]
        write_dicom=write_dicom,
        workers=workers,
        show_progress=True,
    )
    options = options or DeidOptions()
    with stage_run("ingest", pipeline_run) as run:
        result = run_ingest(config, key, options)
        reasons = quarantine_reasons(data_dir, result.run_id)
        log_ingest(result, reasons)
        md = summary_markdown(result, reasons)
        import mlflow

        mlflow.log_text(md, "ingest_summary.md")
        mlflow.log_dict(result.to_dict() | {"quarantine_reasons": reasons}, "ingest_result.json")
    if manifest_out is not None:
        manifest_out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(result.manifest_path, manifest_out)
    if summary_out is not None:
        summary_out.parent.mkdir(parents=True, exist_ok=True)
        summary_out.write_text(md)
    return IngestStageOutput(result=result, reasons=reasons, mlflow_run_id=run.info.run_id)


def result_json(out: IngestStageOutput) -> str:
    return json.dumps(out.result.to_dict() | {"quarantine_reasons": out.reasons})
