"""Collecting one pipeline run's measurements: from MLflow, or from the heads' result object."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from cxrflow.evaluation.evaluate import EvaluationInputs
from cxrflow.evaluation.report_results import ReportResults
from cxrflow.evaluation.segmentation import PER_IMAGE_FILE
from cxrflow.manifest import read_manifest
from cxrflow.registry.runs import client as make_client
from cxrflow.registry.runs import pipeline_context, stage_runs
from cxrflow.tracking import TAG_ENCODER_VERSION, TAG_GIT_COMMIT

log = logging.getLogger(__name__)

HEADS_PREFIXES = ("cls.", "seg.", "demo.")
CURVES_FILE = "classification_curves.json"


def _decoder_of(file_name: str) -> str:
    """`segmentation_<decoder>_overlays.png` -> decoder."""
    return file_name.removesuffix("_overlays.png").removeprefix("segmentation_")


def _heads_artifacts(c: Any, run_id: str, dst: Path) -> dict[str, Path]:
    """name -> local path of the heads run's curves, overlays and per-image Dice files."""
    wanted: dict[str, Path] = {}
    for info in c.list_artifacts(run_id, "heads"):
        base = Path(info.path).name
        if base in (CURVES_FILE, PER_IMAGE_FILE) or base.endswith("_overlays.png"):
            wanted[base] = Path(c.download_artifacts(run_id, info.path, str(dst)))
    return wanted


def inputs_from_mlflow(
    pipeline_run: str,
    *,
    report: ReportResults | None = None,
    manifest_path: Path | None = None,
    client: Any = None,
    work_dir: Path | None = None,
) -> EvaluationInputs:
    """The heads' metrics and files of `pipeline_run` from MLflow, plus report and manifest."""
    c = client or make_client()
    runs = stage_runs(c, pipeline_run)
    ctx = pipeline_context(c, pipeline_run)
    context = {
        "pipeline_run": pipeline_run,
        "data_version": ctx.data_version,
        "split_digest": ctx.split_digest,
    }
    metrics: dict[str, float] = {}
    curves: tuple[dict, ...] = ()
    per_image = None
    overlays: dict[str, bytes] = {}
    heads = runs.get("heads")
    if heads is None:
        log.warning("pipeline run %s has no heads run in MLflow", pipeline_run)
    else:
        metrics = {k: v for k, v in heads.data.metrics.items() if k.startswith(HEADS_PREFIXES)}
        for tag, key in ((TAG_ENCODER_VERSION, "encoder_version"), (TAG_GIT_COMMIT, "git_commit")):
            if heads.data.tags.get(tag):
                context[key] = heads.data.tags[tag]
        dst = Path(work_dir or tempfile.mkdtemp(prefix="cxrflow-eval-"))
        files = _heads_artifacts(c, heads.info.run_id, dst)
        if CURVES_FILE in files:
            curves = tuple(json.loads(files[CURVES_FILE].read_text()))
        if PER_IMAGE_FILE in files:
            per_image = pd.read_parquet(files[PER_IMAGE_FILE])
        overlays = {
            f"Segmentation overlays: {_decoder_of(n)}": p.read_bytes()
            for n, p in sorted(files.items())
            if n.endswith("_overlays.png")
        }
    return EvaluationInputs(
        heads_metrics=metrics,
        classification_curves=curves,
        per_image_dice=per_image,
        overlays=overlays,
        report=report,
        manifest=read_manifest(manifest_path) if manifest_path else None,
        context=context,
    )


def inputs_from_heads(
    result: Any,
    *,
    report: ReportResults | None = None,
    manifest: pd.DataFrame | None = None,
    per_image_dice: pd.DataFrame | None = None,
    context: dict[str, str] | None = None,
) -> EvaluationInputs:
    """Inputs from a `cxrflow.heads.train.HeadsResult` in memory (no MLflow)."""
    curves = tuple(result.classification.curves) if result.classification is not None else ()
    overlays = {
        f"Segmentation overlays: {Path(p).stem}": Path(p).read_bytes()
        for p in result.artifacts
        if str(p).endswith("_overlays.png")
    }
    return EvaluationInputs(
        heads_metrics=result.metrics(),
        classification_curves=curves,
        per_image_dice=per_image_dice,
        overlays=overlays,
        report=report,
        manifest=manifest,
        context=dict(context or {}),
    )
