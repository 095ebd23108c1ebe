"""Report-generation results as plain data: metric -> median and 95% interval, plus samples.

Two input shapes are accepted, so the report stage can hand over what it already writes:

- canonical: `{"n": 120, "n_bootstrap": 500, "primary": "LLaVA",
  "metrics": {"rouge_l": {"median": .., "low": .., "high": ..} | {"reason": "..."}},
  "baselines": {"Most frequent report": {<metric>: ...}},
  "samples": [{"image_id", "reference", "generated"}],
  "per_image": {"rouge_l": {image_id: score}}}`
- the report stage's `report_metrics.json`: `{system: {"n": .., "rouge_l": {"value", "median",
  "low", "high", "n_bootstrap"}, "chexbert_f1": {"reason": ..}, ...}}` (first system = model).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PRIMARY = "model"


class ReportResultsError(ValueError):
    """Report results that cannot be read (the message names the field)."""


@dataclass(frozen=True)
class IntervalScore:
    """A bootstrap median and 95% interval, or the reason it was not computed."""

    median: float = math.nan
    low: float = math.nan
    high: float = math.nan
    reason: str = ""

    @classmethod
    def parse(cls, where: str, d: Any) -> IntervalScore:
        if not isinstance(d, Mapping):
            raise ReportResultsError(f"{where} must be an object, got {type(d).__name__}")
        if d.get("reason"):
            return cls(reason=str(d["reason"]))
        try:
            return cls(float(d["median"]), float(d["low"]), float(d["high"]))
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
    if "metrics" in d:
        primary = str(d.get("primary", PRIMARY))
        scores, _, _ = _scores("metrics", d["metrics"])
        systems = {primary: scores}
        for name, b in (d.get("baselines") or {}).items():
            systems[str(name)] = _scores(f"baselines.{name}", b)[0]
        per_image = {
            m: {str(k): float(v) for k, v in values.items()}
            for m, values in (d.get("per_image") or {}).items()
        }
        samples = tuple(_sample(i, s) for i, s in enumerate(d.get("samples") or []))
        return ReportResults(
            systems, samples, per_image, int(d.get("n", 0)), int(d.get("n_bootstrap", 0))
        )
    systems, n, n_boot = {}, 0, 0
    for name, block in d.items():
        if not isinstance(block, Mapping):
            raise ReportResultsError(f"{name} must be an object of metrics")
        scores, n_sys, b = _scores(str(name), block)
        systems[str(name)] = scores
        n, n_boot = n or n_sys, n_boot or b
    return ReportResults(systems, n=n, n_bootstrap=n_boot)


def _sample(i: int, s: Any) -> dict[str, str]:
    if not isinstance(s, Mapping) or not {"reference", "generated"} <= set(s):
        raise ReportResultsError(f"samples[{i}] needs reference and generated")
    return {k: str(s.get(k, "")) for k in ("image_id", "reference", "generated")}


def load_report_results(path: Path) -> ReportResults:
    """Read report results from a JSON file."""
    return report_results_from_dict(json.loads(Path(path).read_text()))


def rouge_l_per_image(samples: tuple[dict[str, str], ...]) -> dict[str, float]:
    """ROUGE-L F1 of each generated report against its reference (for the fairness analysis)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return {
        s["image_id"]: float(scorer.score(s["reference"], s["generated"])["rougeL"].fmeasure)
        for s in samples
        if s.get("image_id")
    }
