"""LLaVA-style report generation on a frozen cxrflow encoder (paper Section 2.2, Table 2)."""

from cxrflow.report.config import ReportConfig
from cxrflow.report.metrics import ReportMetrics, compute_metrics
from cxrflow.report.model import (
    CxrLlavaConfig,
    CxrLlavaForConditionalGeneration,
    build_report_model,
    load_lm,
    load_report_model,
    save_report_model,
    smollm2_gguf,
)

__all__ = [
    "CxrLlavaConfig",
    "CxrLlavaForConditionalGeneration",
    "ReportConfig",
    "ReportMetrics",
    "build_report_model",
    "compute_metrics",
    "load_lm",
    "load_report_model",
    "save_report_model",
    "smollm2_gguf",
]
