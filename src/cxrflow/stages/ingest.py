"""The ingestion stage: de-identify an inbox of DICOM files into a dataset, log it to MLflow.

One pod (`run`), or sharded over many pods: `plan` lists the shards that hold files,
`run_shard` de-identifies one shard into a private directory, and `merge` writes the dataset a
single-pod run would have written. The key comes from the environment (`cxrflow.keys`), never
from a parameter.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cxrflow.dataset import Dataset
from cxrflow.deid import DeidOptions
from cxrflow.ingest import IngestConfig, IngestResult, run_ingest
from cxrflow.ingest.merge import merge_shards
from cxrflow.ingest.run import QUARANTINE_FILE
from cxrflow.ingest.shards import ingest_shard, list_inbox, shard_of
from cxrflow.keys import SecretKey, check_key_location, load_key, repository_root
from cxrflow.stages.contract import param
from cxrflow.tags import INGEST_STAGE, TAG_INGEST_SHARDS
from cxrflow.tracking import log_ingest, stage_run

log = logging.getLogger(__name__)

SUMMARY_ARTIFACT = "ingest_summary.md"
RESULT_ARTIFACT = "ingest_result.json"


@dataclass(frozen=True)
class Params:
    """De-identify the DICOM files of an inbox into a dataset directory."""

    inbox: Path = param(help="Folder of DICOM files to ingest (searched recursively).")
    data_dir: Path = param(help="Dataset directory the de-identified images and tables go to.")
    ground_truth: Path | None = param(
        None, help="Phantom ground-truth table (labels, masks, reports) to join; optional."
    )
    max_side: int = param(1024, help="Longest side of the written PNGs, in pixels.")
    png_bits: int = param(16, help="Bit depth of the written PNGs (8 or 16).")
    write_dicom: bool = param(False, help="Also write the de-identified DICOM files.")
    workers: int = param(1, help="Worker processes that read and decode files.")
    retain_patient_characteristics: bool = param(
        True, help="PS3.15 option: keep age, sex, size and weight."
    )
    retain_longitudinal_modified_dates: bool = param(
        True, help="PS3.15 option: shift dates by a per-patient offset instead of removing them."
    )
    clean_descriptors: bool = param(
        True, help="PS3.15 option: keep descriptions after removing identifying text."
    )
    pipeline_run: str = param("", help="The pipeline run this stage belongs to.")

    def config(self, *, show_progress: bool = True) -> IngestConfig:
        """The validated ingestion configuration."""
        return IngestConfig(
            input_dir=Path(self.inbox),
            output_dir=Path(self.data_dir),
            ground_truth=Path(self.ground_truth) if self.ground_truth else None,
            max_side=self.max_side,
            png_bits=self.png_bits,  # type: ignore[arg-type]
            write_dicom=self.write_dicom,
            workers=self.workers,
            show_progress=show_progress,
        )

    def deid_options(self) -> DeidOptions:
        """The de-identification profile options in force."""
        return DeidOptions(
            retain_patient_characteristics=self.retain_patient_characteristics,
            retain_longitudinal_modified_dates=self.retain_longitudinal_modified_dates,
            clean_descriptors=self.clean_descriptors,
        )


@dataclass(frozen=True)
class Result:
    """The ingestion's counts, the dataset it wrote to and its PHI-free summary."""

    result: IngestResult
    reasons: dict[str, int]
    mlflow_run_id: str
    dataset: Dataset
    summary_markdown: str

    def to_json(self) -> str:
        """Counts and quarantine reasons as one JSON object."""
        return json.dumps(self.result.to_dict() | {"quarantine_reasons": self.reasons})


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


def _record(result: IngestResult, data_dir: Path) -> tuple[dict[str, int], str]:
    """Log the run's counts, summary and result to the active MLflow run."""
    import mlflow

    reasons = quarantine_reasons(data_dir, result.run_id)
    log_ingest(result, reasons)
    md = summary_markdown(result, reasons)
    mlflow.log_text(md, SUMMARY_ARTIFACT)
    mlflow.log_dict(result.to_dict() | {"quarantine_reasons": reasons}, RESULT_ARTIFACT)
    return reasons, md


def _ingestion_key(params: Params) -> SecretKey:
    """The key from the environment, refused inside the inbox, data or repository tree."""
    key = load_key()
    check_key_location(None, params.inbox, params.data_dir, repository=repository_root())
    return key


def run(params: Params) -> Result:
    """Ingest the inbox into the dataset with the key from the environment; log to MLflow."""
    key = _ingestion_key(params)
    config = params.config()
    with stage_run(INGEST_STAGE, params.pipeline_run) as mlflow_run:
        result = run_ingest(config, key, params.deid_options())
        reasons, md = _record(result, config.output_dir)
    return Result(result, reasons, mlflow_run.info.run_id, Dataset(config.output_dir), md)


# Sharded ingestion ------------------------------------------------------------------------


def shard_root(data_dir: Path, work_dir: str, run_tag: str) -> Path:
    """Where one pipeline run's shards live: `<work_dir or <data_dir>.shards>/<run_tag>`."""
    base = Path(work_dir) if work_dir else data_dir.with_name(data_dir.name + ".shards")
    return base / (run_tag or "manual")


def shard_dir(root: Path, shard: int) -> Path:
    """The directory of shard `shard` under a run's shard root."""
    return root / f"shard-{shard:04d}"


def plan(
    inbox: Path, n_shards: int, root: Path, ground_truth: Path | None = None
) -> list[dict[str, int | str]]:
    """`{"shard": index, "dir": shard directory}` of the shards that hold at least one file.

    An empty inbox still gets shard 0 (the merge then records an empty dataset). A file's shard
    depends on its key only, so shards that list the inbox a little later still agree.
    """
    key = load_key()
    files = list_inbox(inbox, key, [ground_truth] if ground_truth else [])
    used = sorted({shard_of(f.file_key, n_shards) for f in files}) or [0]
    log.info("%d files in %d of %d shards", len(files), len(used), n_shards)
    return [{"shard": i, "dir": str(shard_dir(root, i))} for i in used]


def run_shard(params: Params, shard: int, n_shards: int, target: Path) -> Path:
    """Ingest one shard into `target` with the key from the environment; returns `target`.

    The dataset `params.data_dir` is only read (to skip files it already holds).
    """
    config = params.config(show_progress=False)
    ingest_shard(config, _ingestion_key(params), target, shard, n_shards, params.deid_options())
    return target


def merge(
    shard_dirs: Sequence[Path], data_dir: Path, *, pipeline_run: str = "", cleanup: bool = True
) -> Result:
    """Merge the shards into `data_dir` and log it to MLflow as the pipeline's ingest stage."""
    tags = {TAG_INGEST_SHARDS: str(len(shard_dirs))}
    with stage_run(INGEST_STAGE, pipeline_run, tags=tags) as mlflow_run:
        result = merge_shards(shard_dirs, data_dir)
        reasons, md = _record(result, data_dir)
    if cleanup:
        for d in shard_dirs:
            shutil.rmtree(d, ignore_errors=True)
        for parent in {Path(d).parent for d in shard_dirs}:
            with contextlib.suppress(OSError):  # the run's shard root, once its shards are gone
                parent.rmdir()
    return Result(result, reasons, mlflow_run.info.run_id, Dataset(data_dir), md)
