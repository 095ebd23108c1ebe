"""The model registry: lineage tags on every version, aliases, and the promotion gate."""

from cxrflow.registry.gate import (
    GateConfig,
    GateConfigError,
    GateDecision,
    MetricComparison,
    MetricRule,
    decide,
    record_decision,
    run_gate,
)
from cxrflow.registry.runs import PipelineContext, pipeline_context, stage_runs
from cxrflow.registry.tags import LineageTags, LineageTagsError, ParentModel, missing_tags
from cxrflow.registry.versions import (
    check_tags,
    lineage_for,
    record_metrics,
    register_candidate,
    resolve_version,
    version_by_alias,
    version_metrics,
)
from cxrflow.tags import CANDIDATE, CHAMPION, ENCODER_MODEL, REPORT_MODEL

__all__ = [
    "CANDIDATE",
    "CHAMPION",
    "ENCODER_MODEL",
    "REPORT_MODEL",
    "GateConfig",
    "GateConfigError",
    "GateDecision",
    "LineageTags",
    "LineageTagsError",
    "MetricComparison",
    "MetricRule",
    "ParentModel",
    "PipelineContext",
    "check_tags",
    "decide",
    "lineage_for",
    "missing_tags",
    "pipeline_context",
    "record_decision",
    "record_metrics",
    "register_candidate",
    "resolve_version",
    "run_gate",
    "stage_runs",
    "version_by_alias",
    "version_metrics",
]
