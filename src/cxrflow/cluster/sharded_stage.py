"""Sharded ingestion as the pipeline runs it: plan, ingest one shard, merge + log to MLflow."""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

from cxrflow.cluster.merge import merge_shards
from cxrflow.cluster.shards import ingest_shard, list_inbox, shard_of
from cxrflow.deid import DeidOptions
from cxrflow.ingest import IngestConfig
from cxrflow.keys import load_key
from cxrflow.stages.ingest import IngestStageOutput, quarantine_reasons, summary_markdown
from cxrflow.tracking import log_ingest, stage_run

log = logging.getLogger(__name__)


def shard_root(data_dir: Path, work_dir: str, run_tag: str) -> Path:
    """Where one pipeline run's shards live: `<work_dir or <data_dir>.shards>/<run_tag>`."""
    base = Path(work_dir) if work_dir else data_dir.with_name(data_dir.name + ".shards")
    return base / (run_tag or "manual")


def shard_dir(root: Path, shard: int) -> Path:
    """The directory of shard `shard` under a run's shard root."""
    return root / f"shard-{shard:04d}"


def plan_stage(
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


def shard_stage(
    config: IngestConfig,
    shard: int,
    n_shards: int,
    target: Path,
    options: DeidOptions | None = None,
) -> Path:
    """Ingest one shard into `target` with the key from the environment; returns `target`."""
    ingest_shard(config, load_key(), target, shard, n_shards, options)
    return target


def merge_stage(
    shard_dirs: Sequence[Path],
    data_dir: Path,
    *,
    pipeline_run: str = "",
    manifest_out: Path | None = None,
    summary_out: Path | None = None,
    cleanup: bool = True,
) -> IngestStageOutput:
    """Merge the shards into `data_dir` and log it to MLflow as the pipeline's ingest stage."""
    with stage_run("ingest", pipeline_run, tags={"cxrflow.ingest_shards": str(len(shard_dirs))}):
        import mlflow

        result = merge_shards(shard_dirs, data_dir)
        reasons = quarantine_reasons(data_dir, result.run_id)
        log_ingest(result, reasons)
        md = summary_markdown(result, reasons)
        mlflow.log_text(md, "ingest_summary.md")
        mlflow.log_dict(result.to_dict() | {"quarantine_reasons": reasons}, "ingest_result.json")
        run_id = mlflow.active_run().info.run_id
    if manifest_out is not None:
        manifest_out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(result.manifest_path, manifest_out)
    if summary_out is not None:
        summary_out.parent.mkdir(parents=True, exist_ok=True)
        summary_out.write_text(md)
    if cleanup:
        for d in shard_dirs:
            shutil.rmtree(d, ignore_errors=True)
        for parent in {Path(d).parent for d in shard_dirs}:
            _remove_if_empty(parent)
    return IngestStageOutput(result=result, reasons=reasons, mlflow_run_id=run_id)


def _remove_if_empty(path: Path) -> None:
    """Remove a run's shard root once its shards are gone."""
    with contextlib.suppress(OSError):
        path.rmdir()
