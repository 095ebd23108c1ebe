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
from cxrflow.evaluation.gather import inputs_from_heads, inputs_from_mlflow
from cxrflow.evaluation.html import render_html, write_html
from cxrflow.evaluation.report_results import (
    IntervalScore,
    ReportResults,
    ReportResultsError,
    load_report_results,
    report_results_from_dict,
)
from cxrflow.evaluation.segmentation import PER_IMAGE_FILE, per_image_dice
from cxrflow.evaluation.stage import EvaluationStageOutput, run_evaluation_stage
from cxrflow.evaluation.tables import Table

__all__ = [
    "PER_IMAGE_FILE",
    "ChampionComparison",
    "EvaluationConfig",
    "EvaluationInputs",
    "EvaluationResult",
    "EvaluationStageOutput",
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
    "fairness_table",
    "inputs_from_heads",
    "inputs_from_mlflow",
    "load_report_results",
    "per_image_dice",
    "render_html",
    "report_results_from_dict",
    "run_evaluation_stage",
    "stratify",
    "write_html",
]
