"""Scoring a finding labeler against gold labels: per-finding precision/recall/F1, macro F1 and
the share of normal reports that get a finding.

The evaluation set is JSON lines, one report each: `{"id", "text", "normal", "labels"}`, where
`labels` holds the findings whose gold label is 1 (positive) or -1 (uncertain) and every other
finding is 0. As the finding-F1 metric does, uncertain counts as negative when scoring.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cxrflow.findings import FINDINGS

POSITIVE = 1  # the labeler's positive label (cxrflow.report.labeler.POSITIVE)


@dataclass(frozen=True)
class GoldReport:
    """One report of an evaluation set and its gold labels over `FINDINGS`."""

    id: str
    text: str
    normal: bool
    labels: dict[str, int]


@dataclass(frozen=True)
class FindingScore:
    """Precision, recall and F1 of one finding (0 where undefined), with its counts."""

    precision: float
    recall: float
    f1: float
    support: int  # gold positives
    predicted: int  # predicted positives


@dataclass(frozen=True)
class LabelerEvaluation:
    """Per-finding scores, their macro F1 and how often normal reports get a finding."""

    per_finding: dict[str, FindingScore]
    macro_f1: float
    n_reports: int
    n_normal: int
    normal_with_finding: int

    @property
    def normal_finding_rate(self) -> float:
        """Share of normal reports with at least one positive finding."""
        return self.normal_with_finding / self.n_normal if self.n_normal else 0.0


def read_gold_reports(path: Path) -> list[GoldReport]:
    """The reports of a JSON-lines evaluation set; unknown finding names are an error."""
    reports = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        unknown = set(row["labels"]) - set(FINDINGS)
        if unknown:
            raise ValueError(f"{path}:{number}: unknown findings {sorted(unknown)}")
        labels = {f: int(row["labels"].get(f, 0)) for f in FINDINGS}
        reports.append(GoldReport(row["id"], row["text"], bool(row["normal"]), labels))
    return reports


def _score(tp: int, fp: int, fn: int) -> FindingScore:
    """Scores from confusion counts."""
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return FindingScore(precision, recall, f1, support=tp + fn, predicted=tp + fp)


def evaluate_labeler(
    label_report: Callable[[str], dict[str, int]], reports: Sequence[GoldReport]
) -> LabelerEvaluation:
    """Score `label_report` on `reports` (uncertain counts as negative on both sides)."""
    predictions = [label_report(r.text) for r in reports]
    per_finding = {}
    for finding in FINDINGS:
        gold = [r.labels[finding] == POSITIVE for r in reports]
        pred = [p[finding] == POSITIVE for p in predictions]
        tp = sum(g and p for g, p in zip(gold, pred, strict=True))
        per_finding[finding] = _score(tp, sum(pred) - tp, sum(gold) - tp)
    normal = [p for r, p in zip(reports, predictions, strict=True) if r.normal]
    return LabelerEvaluation(
        per_finding=per_finding,
        macro_f1=sum(s.f1 for s in per_finding.values()) / len(per_finding),
        n_reports=len(reports),
        n_normal=len(normal),
        normal_with_finding=sum(any(v == POSITIVE for v in p.values()) for p in normal),
    )
