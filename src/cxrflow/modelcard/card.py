"""The model card: Hugging Face layout (short YAML + sections), its JSON and MONAI metadata."""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from cxrflow.evaluation.tables import Table
from cxrflow.modelcard.facts import (
    Architecture,
    BinaryResult,
    Compute,
    DemographicProbe,
    GroupResult,
    Initialisation,
    InputSpec,
    IntervalResult,
    License,
    Provenance,
)

CARD_SCHEMA_VERSION = 2
# The card's YAML lists only this many results (about 12 lines each); the rest are in the
# JSON beside it, so that the text starts within a screen.
MAX_HEADER_RESULTS = 2
RAD_DINO_ARXIV = "2401.10815"
RAD_DINO_BIBTEX = """\
@article{perez-garcia2025raddino,
  title   = {Exploring scalable medical image encoders beyond text supervision},
  author  = {P{\\'e}rez-Garc{\\'i}a, Fernando and Sharma, Harshita and Bond-Taylor, Sam and
             Bouzid, Kenza and Salvatelli, Valentina and Ilse, Maximilian and Bannur, Shruthi
             and Castro, Daniel C. and Schwaighofer, Anton and Lungren, Matthew P. and
             Wetscherek, Maria Teodora and Codella, Noel and Hyland, Stephanie L. and
             Alvarez-Valle, Javier and Oktay, Ozan},
  journal = {Nature Machine Intelligence},
  year    = {2025},
  doi     = {10.1038/s42256-024-00965-w},
  eprint  = {2401.10815},
  archivePrefix = {arXiv}
}"""
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
    """Everything the card says, as data: recorded facts and the evaluation's numbers."""

    name: str
    version: str
    kind: str
    description: str
    license: License | str
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
    tables: tuple[Table, ...] = ()  # evaluation tables shown as they are (Tables 2, 3, ...)
    fairness_tables: tuple[Table, ...] = ()
    cohort_tables: tuple[Table, ...] = ()
    limitations: tuple[str, ...] = ()
    provenance: Provenance = field(default_factory=lambda: Provenance("unknown"))
    init: Initialisation = field(default_factory=Initialisation)
    architecture: Architecture | None = None
    input_spec: InputSpec | None = None
    compute: Compute = field(default_factory=Compute)
    classification: tuple[BinaryResult, ...] = ()
    demographics: tuple[DemographicProbe, ...] = ()
    report: tuple[IntervalResult, ...] = ()
    fairness: tuple[GroupResult, ...] = ()
    evaluation_notes: tuple[str, ...] = ()
    # Sources whose terms bind the weights: this version's data and its parents'
    data_terms: tuple[str, ...] = ()
    schema_version: int = CARD_SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # a bare id string is accepted for convenience; `other` alone is refused by License
        object.__setattr__(self, "license", License.of(self.license))

    @property
    def license_(self) -> License:
        """The license, typed."""
        assert isinstance(self.license, License)
        return self.license

    # ------------------------------------------------------------------ formats

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["metrics"] = {k: v for k, v in self.metrics.items() if not math.isnan(v)}
        return d

    def to_json(self) -> str:
        """The long structured data (every metric, table and fact) the YAML leaves out."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str) + "\n"

    def headline_metrics(self) -> dict[str, float]:
        """The few numbers the header lists: macro AUPRC/AUROC, mean Dice, report medians."""
        keep = re.compile(
            r"(cls\.(auprc|auroc)\.macro|seg\.[^.]+\.dice\.[^.]+|report\.[^.]+\.median)"
        )
        found = {k: v for k, v in self.metrics.items() if keep.fullmatch(k) and not math.isnan(v)}
        # classification first (the gate's metric), then report generation, then segmentation
        order = {"cls": 0, "report": 1, "seg": 2}
        ranked = sorted(found.items(), key=lambda kv: (order[kv[0].split(".")[0]], kv[0]))
        return dict(ranked[:MAX_HEADER_RESULTS])

    def card_data(self) -> Any:
        """`huggingface_hub.ModelCardData`: the short YAML header."""
        from huggingface_hub import EvalResult, ModelCardData

        dataset = f"cxrflow-data-{self.data_version[:12]}"
        results = [
            EvalResult(
                task_type=_task_type(k),
                task_name=_TASK_NAMES.get(k.split(".")[0], k),
                dataset_type=self.data_version,
                dataset_name=dataset,
                dataset_split="test",
                metric_type=_metric_type(k),
                metric_name=k,
                metric_value=round(v, 6),
            )
            for k, v in self.headline_metrics().items()
        ]
        lic = self.license_
        return ModelCardData(
            license=lic.id,
            license_name=lic.name or None,
            license_link=lic.link or None,
            library_name="transformers" if self.kind == "encoder" else "mlflow",
            pipeline_tag="image-feature-extraction" if self.kind == "encoder" else None,
            tags=[*self.tags, *(["synthetic-data"] if self.provenance.has_synthetic else [])],
            datasets=[dataset],
            metrics=sorted({_metric_type(k) for k in self.headline_metrics()}) or None,
            model_name=f"{self.name}:{self.version}",
            eval_results=results or None,
        )

    def hf_card(self) -> Any:
        """The card as `huggingface_hub.ModelCard` (YAML parsed back, so it must load)."""
        from huggingface_hub import ModelCard as HfModelCard

        from cxrflow.modelcard.sections import render_sections

        header = self.card_data().to_yaml()
        return HfModelCard(f"---\n{header}\n---\n\n{render_sections(self)}")

    def to_markdown(self) -> str:
        return str(self.hf_card().content)

    def summary(self) -> str:
        """The first paragraph: what the model is, how it started, what data it saw."""
        from cxrflow.modelcard.sections import summary_paragraph

        return summary_paragraph(self)

    def monai_metadata(self) -> dict[str, Any]:
        """The MONAI bundle `metadata.json` fields, filled from the same facts."""
        from cxrflow.modelcard.monai import monai_metadata

        return monai_metadata(self)


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
