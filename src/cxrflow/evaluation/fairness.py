"""Fairness as in C.6: a metric stratified by sex and age group, its average and worst group."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import pandas as pd

from cxrflow.evaluation.cohort import UNKNOWN, demographic_groups
from cxrflow.evaluation.tables import Table, num

ATTRIBUTES = ("sex", "age_group")
_ROUGE_NOTE = (
    " ROUGE-L: Table 2's (rouge-score F-measure, no stemming, 0-100) per test image, so the"
    " overall equals Table 2's point value when every test image is in the manifest."
)


@dataclass(frozen=True)
class GroupScore:
    """The mean score of one group and how many images it holds."""

    group: str
    images: int
    mean: float


@dataclass(frozen=True)
class FairnessResult:
    """One task's metric by one attribute: overall, average of groups, worst group, gap."""

    task: str
    metric: str
    attribute: str
    overall: float
    average: float  # mean of the group means (each group weighs the same)
    worst_group: str
    worst: float
    groups: tuple[GroupScore, ...]

    @property
    def gap(self) -> float:
        """average - worst: how far the worst group trails."""
        return self.average - self.worst

    def to_dict(self) -> dict[str, object]:
        return asdict(self) | {"gap": self.gap}


def stratify(
    scores: Mapping[str, float] | pd.Series,
    manifest: pd.DataFrame,
    *,
    task: str,
    metric: str,
    attributes: Sequence[str] = ATTRIBUTES,
    min_group_size: int = 1,
    include_unknown: bool = False,
) -> list[FairnessResult]:
    """Per-image `scores` (image_id -> value) stratified by each attribute of the manifest.

    Groups with fewer than `min_group_size` images are left out of average and worst (too
    noisy to call a group worst), and so is "unknown" unless `include_unknown`.
    """
    s = pd.Series(scores, dtype="float64").dropna()
    s.index = s.index.astype(str)
    groups = demographic_groups(manifest).set_index("image_id")
    joined = groups.join(s.rename("score"), how="inner")
    out = []
    for attr in attributes:
        if attr not in joined:
            raise ValueError(f"unknown attribute {attr!r}: use one of {ATTRIBUTES}")
        by = joined.groupby(attr)["score"]
        table = [GroupScore(str(g), int(v.size), float(v.mean())) for g, v in by]
        kept = [
            g
            for g in table
            if g.images >= min_group_size and (include_unknown or g.group != UNKNOWN)
        ]
        worst = min(kept, key=lambda g: g.mean) if kept else None
        out.append(
            FairnessResult(
                task=task,
                metric=metric,
                attribute=attr,
                overall=float(joined["score"].mean()) if len(joined) else math.nan,
                average=sum(g.mean for g in kept) / len(kept) if kept else math.nan,
                worst_group=worst.group if worst else "",
                worst=worst.mean if worst else math.nan,
                groups=tuple(sorted(table, key=lambda g: g.group)),
            )
        )
    return out


def fairness_table(results: Sequence[FairnessResult]) -> Table:
    """C.6 tables in one: average and worst group per task, metric and attribute."""
    rows = tuple(
        (
            r.task,
            r.metric,
            r.attribute,
            num(r.overall),
            num(r.average),
            f"{num(r.worst)} ({r.worst_group or '-'})",
            num(r.gap),
            ", ".join(f"{g.group}: {num(g.mean)} (n={g.images})" for g in r.groups),
        )
        for r in results
    )
    return Table(
        "fairness",
        "Fairness (C.6): scores stratified by sex and age group",
        ("task", "metric", "attribute", "overall", "average", "worst group", "gap", "groups"),
        rows,
        "Average: mean of the group means; worst: the lowest group mean; gap = average - worst."
        + (_ROUGE_NOTE if any(r.metric == "rouge_l" for r in results) else ""),
    )


def fairness_metrics(results: Sequence[FairnessResult]) -> dict[str, float]:
    """Flat values for KFP Metrics: `fairness.<task>.<metric>.<attribute>.average|worst|gap`."""
    out = {}
    for r in results:
        key = f"fairness.{r.task}.{r.metric}.{r.attribute}"
        out |= {f"{key}.average": r.average, f"{key}.worst": r.worst, f"{key}.gap": r.gap}
    return {k: v for k, v in out.items() if not math.isnan(v)}
