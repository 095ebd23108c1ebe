"""The model card: Hugging Face layout (YAML front matter + sections), as Markdown and JSON."""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import yaml

from cxrflow.evaluation.tables import Table

CARD_SCHEMA_VERSION = 1
# Run parameters that name paths or places: source folders can carry patient names, so they
# never enter a card (the lineage tree keeps them for auditors with MLflow access).
_PATHLIKE_KEY = re.compile(
    r"(path|dir|inbox|input|file|root|uri|url|remote|ground_truth|key)", re.I
)


def safe_hyperparameters(params: dict[str, str]) -> dict[str, str]:
    """Run parameters fit for a shared document: no path-like keys or values."""
    return {
        k: v
        for k, v in sorted(params.items())
        if not _PATHLIKE_KEY.search(k) and "/" not in v and "\\" not in v
    }


@dataclass(frozen=True)
class ModelCard:
    """Everything the card says, as data."""

    name: str
    version: str
    kind: str
    description: str
    license: str
    tags: tuple[str, ...]
    data_version: str
    split_digest: str
    deid_profile: str
    deid_options: dict[str, bool]
    git_commit: str
    pipeline_run: str
    pipeline_params_digest: str
    parents: tuple[str, ...]
    aliases: tuple[str, ...]
    hyperparameters: dict[str, str]
    metrics: dict[str, float]
    tables: tuple[Table, ...] = ()
    fairness_tables: tuple[Table, ...] = ()
    cohort_tables: tuple[Table, ...] = ()
    limitations: tuple[str, ...] = ()
    # Where an encoder's training started (cxrflow.ssl.initialisation): init as asked, source
    # format, sha256 of the weights, registered parent, departures from the preset.
    initialisation: dict[str, str] = field(default_factory=dict)
    schema_version: int = CARD_SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ formats

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["metrics"] = {k: v for k, v in self.metrics.items() if not math.isnan(v)}
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str) + "\n"

    def front_matter(self) -> dict[str, Any]:
        """Hugging Face model-card metadata (the YAML header)."""
        dataset = f"cxrflow-data-{self.data_version[:12]}"
        results = [
            {
                "task": {"type": _task_type(k), "name": _TASK_NAMES.get(k.split(".")[0], k)},
                "dataset": {"name": dataset, "type": self.data_version, "split": "test"},
                "metrics": [{"type": _metric_type(k), "name": k, "value": round(v, 6)}],
            }
            for k, v in sorted(self.headline_metrics().items())
        ]
        meta: dict[str, Any] = {
            "license": self.license,
            "library_name": "transformers" if self.kind == "encoder" else "mlflow",
            "tags": list(self.tags),
            "datasets": [dataset],
            "metrics": sorted({_metric_type(k) for k in self.headline_metrics()}),
        }
        if self.kind == "encoder":
            meta["pipeline_tag"] = "image-feature-extraction"
        if results:
            meta["model-index"] = [{"name": f"{self.name}:{self.version}", "results": results}]
        return meta

    def headline_metrics(self) -> dict[str, float]:
        """The few numbers the header lists: macro AUPRC, mean Dice, report medians."""
        keep = re.compile(r"(cls\.auprc\.macro|seg\.[^.]+\.dice\.[^.]+|report\.[^.]+\.median)$")
        return {k: v for k, v in self.metrics.items() if keep.fullmatch(k) and not math.isnan(v)}

    def to_markdown(self) -> str:
        from cxrflow.modelcard.sections import render_sections

        header = yaml.safe_dump(self.front_matter(), sort_keys=False, allow_unicode=True)
        return f"---\n{header}---\n\n{render_sections(self)}"


def _metric_type(key: str) -> str:
    for token, name in (("auprc", "auprc"), ("auroc", "auroc"), ("dice", "dice")):
        if token in key:
            return name
    if key.startswith("report."):
        return key.split(".")[1]
    if "accuracy" in key:
        return "accuracy"
    return key.split(".")[-1]


_TASK_NAMES = {
    "cls": "Linear-probe classification",
    "seg": "Segmentation on the frozen encoder",
    "report": "Report generation (Findings)",
    "demo": "Demographics from frozen features",
}


def _task_type(key: str) -> str:
    return {
        "cls": "image-classification",
        "seg": "image-segmentation",
        "report": "image-to-text",
        "demo": "image-classification",
    }.get(key.split(".")[0], "other")
