"""Report-generation results as plain data: metric -> median and 95% interval, plus samples.

Two input shapes are accepted, so the report stage can hand over what it already writes:

- canonical: `{"n": 120, "n_bootstrap": 500, "primary": "LLaVA",
  "metrics": {"rouge_l": {"median": .., "low": .., "high": ..} | {"reason": "..."}},
  "baselines": {"Most frequent report": {<metric>: ...}},
  "samples": [{"image_id", "reference", "generated"}],
  "per_image": {"rouge_l": {image_id: score}},
  "finding_labels": {"generated" | "reference": {image_id: [finding, ...]}}}`
- the report stage's `report_metrics.json`: `{system: {"n": .., "rouge_l": {"value", "median",
  "low", "high", "n_bootstrap"}, "chexbert_f1": {"reason": ..}, ...}}` (first system = model),
  plus the reserved keys `samples`, `per_image` and `finding_labels` of the model (as above;
  files from before they existed hold systems only). `report_results_json` writes it.
- a report stage that had nothing to train on: `{"not_run": "<why>"}` only
  (`not_run_json`), which `report_not_run` reads.

Per-image scores are on Table 2's 0-100 scale, with Table 2's definition
(`cxrflow.report.metrics.rouge_l_scores`: no stemming), so that their mean over the test images
is Table 2's point value. Samples hold de-identified data only: the image's pseudonymous id,
the Findings text of the de-identified report and the generated text.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PRIMARY = "model"
# Keys of report_metrics.json that are not systems (a system is never named so).
SAMPLES, PER_IMAGE, FINDING_LABELS = "samples", "per_image", "finding_labels"
NOT_RUN = "not_run"
REPORT_TASK = "report generation"  # the task's name where the evaluation lists what did not run
RESERVED = (SAMPLES, PER_IMAGE, FINDING_LABELS, NOT_RUN)
SAMPLE_KEYS = ("image_id", "reference", "generated", "reference_findings", "generated_findings")


class ReportResultsError(ValueError):
    """Report results that cannot be read (the message names the field)."""


@dataclass(frozen=True)
class IntervalScore:
    """A bootstrap median and 95% interval, or the reason it was not computed."""

    median: float = math.nan
    low: float = math.nan
    high: float = math.nan
    reason: str = ""
    value: float = math.nan  # the point value on all test reports, where the file has it

    @classmethod
    def parse(cls, where: str, d: Any) -> IntervalScore:
        if not isinstance(d, Mapping):
            raise ReportResultsError(f"{where} must be an object, got {type(d).__name__}")
        if d.get("reason"):
            return cls(reason=str(d["reason"]))
        try:
            value = float(d["value"]) if d.get("value") is not None else math.nan
            return cls(float(d["median"]), float(d["low"]), float(d["high"]), value=value)
        except (KeyError, TypeError, ValueError) as exc:
            raise ReportResultsError(f"{where} needs median, low and high ({exc})") from exc


@dataclass(frozen=True)
class ReportResults:
    """Scores per system (the model first, then baselines), samples and per-image scores."""

    systems: dict[str, dict[str, IntervalScore]]
    samples: tuple[dict[str, str], ...] = ()
    per_image: dict[str, dict[str, float]] = field(default_factory=dict)
    n: int = 0
    n_bootstrap: int = 0
    # "generated" | "reference" -> image_id -> the findings the labeler reads as positive
    finding_labels: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)

    @property
    def primary(self) -> str:
        return next(iter(self.systems))

    def metric_names(self) -> list[str]:
        names: dict[str, None] = {}
        for scores in self.systems.values():
            names.update(dict.fromkeys(scores))
        return list(names)

    def flat(self, prefix: str = "report.") -> dict[str, float]:
        """The model's computed scores: `<prefix><metric>.median|low|high`."""
        out = {}
        for m, s in self.systems[self.primary].items():
            if not s.reason:
                out |= {f"{prefix}{m}.median": s.median, f"{prefix}{m}.low": s.low}
                out[f"{prefix}{m}.high"] = s.high
        return out


def _scores(where: str, d: Mapping[str, Any]) -> tuple[dict[str, IntervalScore], int, int]:
    scores, n, n_boot = {}, 0, 0
    for k, v in d.items():
        if k == "n":
            n = int(v)
        elif isinstance(v, Mapping) and (
            {"median", "low", "high", "value"} & set(v) or "reason" in v
        ):
            scores[k] = IntervalScore.parse(f"{where}.{k}", v)
            n_boot = max(n_boot, int(v.get("n_bootstrap", 0) or 0))
        # anything else (per-finding F1 tables, ...) is not a Table-2 interval metric
    return scores, n, n_boot


def report_results_from_dict(d: Mapping[str, Any]) -> ReportResults:
    """Parse either accepted shape (see the module docstring)."""
    if not isinstance(d, Mapping) or not d:
        raise ReportResultsError("report results must be a non-empty object")
    extras = {
        "samples": tuple(_sample(i, s) for i, s in enumerate(_list(d, SAMPLES))),
        "per_image": _per_image(d.get(PER_IMAGE)),
        "finding_labels": _finding_labels(d.get(FINDING_LABELS)),
    }
    if "metrics" in d:
        primary = str(d.get("primary", PRIMARY))
        scores, _, _ = _scores("metrics", d["metrics"])
        systems = {primary: scores}
        for name, b in (d.get("baselines") or {}).items():
            systems[str(name)] = _scores(f"baselines.{name}", b)[0]
        return ReportResults(
            systems, n=int(d.get("n", 0)), n_bootstrap=int(d.get("n_bootstrap", 0)), **extras
        )
    systems, n, n_boot = {}, 0, 0
    for name, block in d.items():
        if name in RESERVED:
            continue
        if not isinstance(block, Mapping):
            raise ReportResultsError(f"{name} must be an object of metrics")
        scores, n_sys, b = _scores(str(name), block)
        systems[str(name)] = scores
        n, n_boot = n or n_sys, n_boot or b
    if not systems:
        raise ReportResultsError("report results hold no system's metrics")
    return ReportResults(systems, n=n, n_bootstrap=n_boot, **extras)


def _list(d: Mapping[str, Any], key: str) -> list[Any]:
    value = d.get(key) or []
    if not isinstance(value, list):
        raise ReportResultsError(f"{key} must be a list, got {type(value).__name__}")
    return value


def _per_image(d: Any) -> dict[str, dict[str, float]]:
    if not d:
        return {}
    if not isinstance(d, Mapping) or not all(isinstance(v, Mapping) for v in d.values()):
        raise ReportResultsError("per_image must map a metric to {image_id: score}")
    try:
        return {str(m): {str(k): float(v) for k, v in values.items()} for m, values in d.items()}
    except (TypeError, ValueError) as exc:
        raise ReportResultsError(f"per_image scores must be numbers ({exc})") from exc


def _finding_labels(d: Any) -> dict[str, dict[str, tuple[str, ...]]]:
    if not d:
        return {}
    if not isinstance(d, Mapping) or not all(isinstance(v, Mapping) for v in d.values()):
        raise ReportResultsError("finding_labels must map generated/reference to {image_id: [..]}")
    return {
        str(side): {str(k): tuple(str(f) for f in v) for k, v in labels.items()}
        for side, labels in d.items()
    }


def _sample(i: int, s: Any) -> dict[str, str]:
    if not isinstance(s, Mapping) or not {"reference", "generated"} <= set(s):
        raise ReportResultsError(f"samples[{i}] needs reference and generated")
    # image_id may be missing in hand-written results; the finding columns are optional
    return {k: str(s.get(k, "")) for k in SAMPLE_KEYS if k in s or k == "image_id"}


def report_results_json(
    systems: Mapping[str, Mapping[str, Any]],
    *,
    samples: list[Mapping[str, Any]] | None = None,
    per_image: Mapping[str, Mapping[str, float]] | None = None,
    finding_labels: Mapping[str, Mapping[str, list[str]]] | None = None,
) -> dict[str, Any]:
    """The report stage's `report_metrics.json`: system blocks (model first) and its extras."""
    clash = [name for name in systems if name in RESERVED]
    if clash:
        raise ReportResultsError(f"a system cannot be named {clash[0]!r} (a reserved key)")
    out: dict[str, Any] = {str(k): dict(v) for k, v in systems.items()}
    out[SAMPLES] = [{k: str(s[k]) for k in SAMPLE_KEYS if k in s} for s in samples or []]
    out[PER_IMAGE] = {
        m: {str(k): float(v) for k, v in d.items()} for m, d in (per_image or {}).items()
    }
    out[FINDING_LABELS] = {
        side: {str(k): list(v) for k, v in d.items()} for side, d in (finding_labels or {}).items()
    }
    return out


def load_report_results(path: Path) -> ReportResults:
    """Read report results from a JSON file."""
    return report_results_from_dict(json.loads(Path(path).read_text()))


def not_run_json(reason: str) -> dict[str, str]:
    """The results file of a report stage that did not train: why, and nothing else."""
    if not reason.strip():
        raise ReportResultsError(f"{NOT_RUN}: a reason is required")
    return {NOT_RUN: reason}


def report_not_run(results: Path | Mapping[str, Any]) -> str:
    """Why the report stage did not train, from its results (file or parsed; "" when it did)."""
    data = json.loads(Path(results).read_text()) if isinstance(results, Path) else results
    return str(data.get(NOT_RUN, "")) if isinstance(data, Mapping) else ""


def rouge_l_per_image(samples: tuple[dict[str, str], ...]) -> dict[str, float]:
    """Table 2's ROUGE-L (0-100, no stemming) of each sample's generated report."""
    # Imported here: cxrflow.report pulls in torch and transformers, which reading
    # results that already carry per-image scores does not need.
    from cxrflow.report.metrics import rouge_l_scores

    kept = [s for s in samples if s.get("image_id")]
    if not kept:
        return {}
    scores = rouge_l_scores([s["generated"] for s in kept], [s["reference"] for s in kept])
    return {s["image_id"]: float(100 * v) for s, v in zip(kept, scores, strict=True)}
