"""Collecting one pipeline run's measurements from what the upstream stages wrote.

The heads stage leaves its metrics (`heads_metrics.json`), classification curves, per-image
Dice and overlay PNGs in its output directory, which the pipeline hands to the evaluation as an
artifact; the report stage leaves `report_metrics.json`. Nothing is looked up in MLflow.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from cxrflow.evaluation.evaluate import EvaluationInputs
from cxrflow.evaluation.report_results import ReportResults
from cxrflow.evaluation.segmentation import PER_IMAGE_FILE
from cxrflow.manifest import read_manifest

log = logging.getLogger(__name__)

HEADS_PREFIXES = ("cls.", "seg.", "demo.")
CURVES_FILE = "classification_curves.json"
HEADS_METRICS_FILE = "heads_metrics.json"


def _decoder_of(file_name: str) -> str:
    """`segmentation_<decoder>_overlays.png` -> decoder."""
    return file_name.removesuffix("_overlays.png").removeprefix("segmentation_")


def write_heads_metrics(
    heads_dir: Path,
    metrics: dict[str, float],
    *,
    not_run: Mapping[str, str] | None = None,
    **context: str,
) -> Path:
    """Write the heads' metrics, the enabled heads that did not run (task -> why) and their
    context (encoder version, git commit) for evaluation."""
    path = Path(heads_dir) / HEADS_METRICS_FILE
    data = {"metrics": metrics, "not_run": dict(not_run or {}), "context": context}
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def evaluation_files(heads_dir: Path) -> list[Path]:
    """The files of a heads output directory that the evaluation reads."""
    heads_dir = Path(heads_dir)
    named = [heads_dir / n for n in (HEADS_METRICS_FILE, CURVES_FILE, PER_IMAGE_FILE)]
    return [p for p in named if p.is_file()] + sorted(heads_dir.glob("*_overlays.png"))


def inputs_from_heads_dir(
    heads_dir: Path | None,
    *,
    report: ReportResults | None = None,
    manifest_path: Path | None = None,
    context: dict[str, str] | None = None,
    not_run: Mapping[str, str] | None = None,
) -> EvaluationInputs:
    """The heads' metrics and files from their output directory, plus report and manifest;
    `not_run` (task -> why) adds to the heads' own record of tasks that did not run."""
    context = dict(context or {})
    skipped = dict(not_run or {})
    metrics: dict[str, float] = {}
    curves: tuple[dict, ...] = ()
    per_image = None
    overlays: dict[str, bytes] = {}
    if heads_dir is None or not (Path(heads_dir) / HEADS_METRICS_FILE).is_file():
        log.warning("no heads results to evaluate (%s)", heads_dir)
    else:
        heads_dir = Path(heads_dir)
        written = json.loads((heads_dir / HEADS_METRICS_FILE).read_text())
        metrics = {
            k: float(v) for k, v in written["metrics"].items() if k.startswith(HEADS_PREFIXES)
        }
        context |= {k: v for k, v in written.get("context", {}).items() if v}
        skipped = {**written.get("not_run", {}), **skipped}
        if (heads_dir / CURVES_FILE).is_file():
            curves = tuple(json.loads((heads_dir / CURVES_FILE).read_text()))
        if (heads_dir / PER_IMAGE_FILE).is_file():
            per_image = pd.read_parquet(heads_dir / PER_IMAGE_FILE)
        overlays = {
            f"Segmentation overlays: {_decoder_of(p.name)}": p.read_bytes()
            for p in sorted(heads_dir.glob("*_overlays.png"))
        }
    return EvaluationInputs(
        heads_metrics=metrics,
        classification_curves=curves,
        per_image_dice=per_image,
        overlays=overlays,
        report=report,
        manifest=read_manifest(manifest_path) if manifest_path else None,
        context=context,
        not_run=skipped,
    )
