"""One pipeline run's evaluation: the paper's tables, fairness, figures and flat metrics."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from cxrflow.evaluation.cohort import cohort_metrics, cohort_table
from cxrflow.evaluation.compare import ChampionComparison
from cxrflow.evaluation.fairness import FairnessResult, fairness_metrics, fairness_table, stratify
from cxrflow.evaluation.plots import dice_distribution_png, pr_curves_png
from cxrflow.evaluation.report_results import ReportResults, rouge_l_per_image
from cxrflow.evaluation.segmentation import check_per_image, image_means
from cxrflow.evaluation.tables import (
    Table,
    classification_table,
    demographics_table,
    report_table,
    segmentation_table,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluationConfig:
    """Knobs of the evaluation (validated; errors name the field)."""

    min_group_size: int = 1  # smaller groups are shown but never called the worst
    suppress_below: int = 0  # cohort counts below this are shown as "<k" (0: never)
    max_samples: int = 8  # generated-vs-reference reports shown in the HTML

    def __post_init__(self) -> None:
        for name in ("min_group_size", "suppress_below", "max_samples"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        if self.min_group_size < 1:
            raise ValueError("min_group_size must be at least 1")


@dataclass(frozen=True)
class EvaluationInputs:
    """Everything measured in one pipeline run (any part may be missing)."""

    heads_metrics: dict[str, float] = field(default_factory=dict)
    classification_curves: tuple[dict, ...] = ()
    per_image_dice: pd.DataFrame | None = None  # image_id, decoder, structure, dice
    overlays: dict[str, bytes] = field(default_factory=dict)  # title -> PNG
    report: ReportResults | None = None
    manifest: pd.DataFrame | None = None  # with split, sex, age_years
    context: dict[str, str] = field(default_factory=dict)  # data_version, split_digest, ...
    not_run: dict[str, str] = field(default_factory=dict)  # enabled task -> why it did not run


@dataclass(frozen=True)
class EvaluationResult:
    """Tables, fairness, figures and the flat metrics of one evaluation."""

    tables: tuple[Table, ...]
    fairness: tuple[FairnessResult, ...]
    metrics: dict[str, float]
    figures: dict[str, bytes]
    samples: tuple[dict[str, str], ...]
    context: dict[str, str]
    comparison: ChampionComparison | None = None
    notes: tuple[str, ...] = ()

    def table(self, key: str) -> Table | None:
        return next((t for t in self.tables if t.key == key), None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (figures by name only)."""
        return {
            "context": self.context,
            "metrics": self.metrics,
            "tables": [t.to_dict() for t in self.tables],
            "fairness": [f.to_dict() for f in self.fairness],
            "comparison": self.comparison.to_dict() if self.comparison else None,
            "figures": sorted(self.figures),
            "notes": list(self.notes),
        }

    def markdown(self) -> str:
        """All tables as Markdown (the KFP Markdown artefact and the model card's section)."""
        return "\n".join(t.to_markdown() for t in self.tables)


def report_per_image_rouge_l(report: ReportResults) -> tuple[dict[str, float], list[str]]:
    """The per-image ROUGE-L to stratify (Table 2's definition, 0-100) and notes about it.

    The report stage's scores of every test image come first; results without them fall back
    to scoring the (bounded) samples, which the notes say.
    """
    scores = report.per_image.get("rouge_l") or {}
    if scores:
        table2 = report.systems[report.primary].get("rouge_l")
        mean = sum(scores.values()) / len(scores)
        # Over all test images the mean is Table 2's point value unless the definitions differ
        # (a stemmed or 0-1 ROUGE-L would not be comparable across tables).
        if (
            table2 is not None
            and not math.isnan(table2.value)
            and len(scores) == report.n
            and not math.isclose(mean, table2.value, rel_tol=1e-6, abs_tol=1e-6)
        ):
            return scores, [
                f"per-image ROUGE-L averages {mean:.4g}, Table 2's is {table2.value:.4g}: "
                "not the same definition"
            ]
        return scores, []
    if report.samples:
        scores = rouge_l_per_image(report.samples)
        if scores:
            return scores, [
                f"report fairness from {len(scores)} generated samples only (no per-image "
                "ROUGE-L of every test image was given)"
            ]
    return {}, ["report fairness needs per-image ROUGE-L or the generated samples"]


def _fairness(inputs: EvaluationInputs, config: EvaluationConfig) -> tuple[list, list[str]]:
    results: list[FairnessResult] = []
    notes: list[str] = []
    if inputs.manifest is None:
        return results, ["no manifest: fairness and cohort tables not computed"]
    kw = {"min_group_size": config.min_group_size}
    if inputs.per_image_dice is not None and len(inputs.per_image_dice):
        per_image = check_per_image(inputs.per_image_dice)
        for decoder in sorted(per_image["decoder"].unique()):
            scores = image_means(per_image, decoder)
            results += stratify(
                scores, inputs.manifest, task=f"segmentation.{decoder}", metric="dice", **kw
            )
    elif inputs.heads_metrics and any(k.startswith("seg.") for k in inputs.heads_metrics):
        notes.append("segmentation fairness needs per-image Dice scores (none were given)")
    if inputs.report is not None:
        scores, report_notes = report_per_image_rouge_l(inputs.report)
        notes += report_notes
        if scores:
            results += stratify(
                scores, inputs.manifest, task="report_generation", metric="rouge_l", **kw
            )
    return results, notes


def evaluate(
    inputs: EvaluationInputs,
    config: EvaluationConfig | None = None,
    comparison: ChampionComparison | None = None,
) -> EvaluationResult:
    """Build the tables, fairness analysis, figures and flat metrics from `inputs`."""
    config = config or EvaluationConfig()
    m = inputs.heads_metrics
    tables = [
        t for t in (classification_table(m), segmentation_table(m), demographics_table(m)) if t
    ]
    if inputs.report is not None:
        tables.insert(min(1, len(tables)), report_table(inputs.report))
    metrics = {k: float(v) for k, v in m.items()}
    if inputs.manifest is not None:
        tables.append(cohort_table(inputs.manifest, suppress_below=config.suppress_below))
        metrics |= cohort_metrics(inputs.manifest)
    fairness, notes = _fairness(inputs, config)
    notes = [f"{task} not evaluated: {why}" for task, why in sorted(inputs.not_run.items())] + notes
    if fairness:
        tables.append(fairness_table(fairness))
        metrics |= fairness_metrics(fairness)
    if inputs.report is not None:
        metrics |= inputs.report.flat()
    if comparison is not None:
        tables.append(comparison.table())
        metrics |= comparison.metrics()
    figures: dict[str, bytes] = {}
    if inputs.classification_curves:
        figures["Precision-recall curves (test)"] = pr_curves_png(inputs.classification_curves)
    if inputs.per_image_dice is not None and len(inputs.per_image_dice):
        figures["Dice per test image"] = dice_distribution_png(inputs.per_image_dice)
    figures |= inputs.overlays
    samples = inputs.report.samples[: config.max_samples] if inputs.report else ()
    metrics = {k: v for k, v in metrics.items() if not math.isnan(v)}
    for note in notes:
        log.warning("evaluation: %s", note)
    return EvaluationResult(
        tuple(tables),
        tuple(fairness),
        metrics,
        figures,
        samples,
        dict(inputs.context),
        comparison,
        tuple(notes),
    )
