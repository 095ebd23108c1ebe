"""Evaluation of one pipeline run as the paper reports it: tables, fairness, one HTML page."""

from cxrflow.evaluation.cohort import cohort_table, demographic_groups
from cxrflow.evaluation.compare import ChampionComparison, compare_with_champion
from cxrflow.evaluation.evaluate import (
    EvaluationConfig,
    EvaluationInputs,
    EvaluationResult,
    evaluate,
)
from cxrflow.evaluation.fairness import FairnessResult, GroupScore, fairness_table, stratify
from cxrflow.evaluation.gather import evaluation_files, inputs_from_heads_dir, write_heads_metrics
from cxrflow.evaluation.html import render_html, write_html
from cxrflow.evaluation.report_results import (
    IntervalScore,
    ReportResults,
    ReportResultsError,
    load_report_results,
    report_results_from_dict,
)
from cxrflow.evaluation.segmentation import PER_IMAGE_FILE, per_image_dice
from cxrflow.evaluation.tables import Table

__all__ = [
    "PER_IMAGE_FILE",
    "ChampionComparison",
    "EvaluationConfig",
    "EvaluationInputs",
    "EvaluationResult",
    "FairnessResult",
    "GroupScore",
    "IntervalScore",
    "ReportResults",
    "ReportResultsError",
    "Table",
    "cohort_table",
    "compare_with_champion",
    "demographic_groups",
    "evaluate",
    "evaluation_files",
    "fairness_table",
    "inputs_from_heads_dir",
    "load_report_results",
    "per_image_dice",
    "render_html",
    "report_results_from_dict",
    "stratify",
    "write_heads_metrics",
    "write_html",
]
