"""Report-generation metrics as in Table 2: median and 95% interval over bootstrap resamples.

- ROUGE-L: `rouge_score` F-measure per report (no stemming, its default tokeniser), averaged;
  `rouge_l_scores` is the one definition: Table 2, the per-image scores and the fairness
  analysis all use it (LLaVA-Rad does not stem: "effusions" vs "effusion" is no match). The
  bootstrap draws indices exactly as `rouge_score.scoring.BootstrapAggregator` does
  (`np.random.choice` on a `RandomState` seeded with `seed`), so it is reproducible.
- BLEU-4: `sacrebleu`'s corpus BLEU (13a tokenisation, exponential smoothing, up to 4-grams),
  re-computed from summed sufficient statistics on each resample (the same indices). Per report
  only sentence BLEU exists (`sacrebleu.sentence_bleu`: effective order); its mean is not the
  corpus BLEU.
- Finding F1: `labeler.label_report` on generated and reference texts, macro-F1 over the
  findings positive in some reference (uncertain counted as negative): an offline stand-in
  for CheXbert's Macro-F1-14, not comparable in value to the paper's.
- CheXbert Macro-F1-14 and RadGraph (RG_ER) need weights that cannot be downloaded here: they
  are "not computed" (with the reason) unless a local path is given, never reported as 0.
Scores are on a 0-100 scale, as in the paper.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU

from cxrflow.findings import FINDINGS
from cxrflow.report.labeler import POSITIVE, label_reports

CONFIDENCE = 0.95
# As LLaVA-Rad's evaluation and rouge_score's default: stemming would score "effusions" against
# "effusion" as a match and raise every figure above the published ones.
ROUGE_USE_STEMMER = False


@dataclass(frozen=True)
class BootstrapScore:
    """A metric's point value and the median and 95% interval of its bootstrap distribution."""

    value: float
    median: float
    low: float
    high: float
    n_bootstrap: int

    def __str__(self) -> str:
        return f"{self.median:.1f} [{self.low:.1f}, {self.high:.1f}]"


@dataclass(frozen=True)
class NotComputed:
    """A metric that was not computed, and why."""

    reason: str

    def __str__(self) -> str:
        return "not computed"


@dataclass(frozen=True)
class ReportMetrics:
    """All metrics of one set of generated reports against references."""

    n: int
    rouge_l: BootstrapScore
    bleu4: BootstrapScore
    finding_f1: BootstrapScore
    per_finding_f1: dict[str, float]
    chexbert_f1: BootstrapScore | NotComputed = field(
        default_factory=lambda: NotComputed("no CheXbert weights path given")
    )
    radgraph: BootstrapScore | NotComputed = field(
        default_factory=lambda: NotComputed("no RadGraph weights path given")
    )

    def flat(self, prefix: str = "") -> dict[str, float]:
        """Numeric values for MLflow (`<prefix><metric>[_low|_high|_median]`)."""
        out: dict[str, float] = {}
        for name in ("rouge_l", "bleu4", "finding_f1", "chexbert_f1", "radgraph"):
            score = getattr(self, name)
            if isinstance(score, BootstrapScore):
                out[f"{prefix}{name}"] = score.value
                out[f"{prefix}{name}_median"] = score.median
                out[f"{prefix}{name}_low"] = score.low
                out[f"{prefix}{name}_high"] = score.high
        return out

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict; a metric not computed carries its reason."""
        return asdict(self)


def bootstrap_indices(n: int, n_bootstrap: int, seed: int) -> np.ndarray:
    """(n_bootstrap, n) resample indices, drawn as rouge_score's BootstrapAggregator draws them."""
    rng = np.random.RandomState(seed)  # legacy generator: same stream as np.random.choice
    return np.stack([rng.choice(np.arange(n), size=n) for _ in range(n_bootstrap)])


def bootstrap(
    statistic: Callable[[np.ndarray], float], n: int, indices: np.ndarray
) -> BootstrapScore:
    """Point value on all samples, median and 95% percentile interval over the resamples."""
    values = np.array([statistic(idx) for idx in indices])
    delta = (1 - CONFIDENCE) / 2
    low, median, high = np.nanpercentile(values, 100 * np.array([delta, 0.5, 1 - delta]))
    return BootstrapScore(
        value=float(statistic(np.arange(n))),
        median=float(median),
        low=float(low),
        high=float(high),
        n_bootstrap=len(indices),
    )


def rouge_l_scorer() -> rouge_scorer.RougeScorer:
    """The ROUGE-L scorer of every figure in cxrflow (Table 2, per image, fairness)."""
    # rouge-score logs "Using default tokenizer." at INFO through absl on every construction.
    logging.getLogger("absl").setLevel(logging.WARNING)
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=ROUGE_USE_STEMMER)


def rouge_l_scores(predictions: Sequence[str], references: Sequence[str]) -> np.ndarray:
    """ROUGE-L F-measure of each prediction against its reference (0-1)."""
    scorer = rouge_l_scorer()
    return np.array(
        [
            scorer.score(ref, pred)["rougeL"].fmeasure
            for pred, ref in zip(predictions, references, strict=True)
        ],
        dtype=float,
    )


def bleu_statistics(
    predictions: Sequence[str], references: Sequence[str]
) -> tuple[BLEU, np.ndarray]:
    """sacrebleu's BLEU and the per-sentence sufficient statistics (n, 2 + 2 * 4)."""
    bleu = BLEU()
    stats = bleu._extract_corpus_statistics(list(predictions), [list(references)])
    return bleu, np.asarray(stats, dtype=np.int64)


def bleu_from_statistics(bleu: BLEU, stats: np.ndarray) -> float:
    """Corpus BLEU (0-100) from summed sufficient statistics."""
    return float(bleu._compute_score_from_stats(stats.sum(axis=0).tolist()).score)


def sentence_bleu_from_statistics(stats: np.ndarray) -> np.ndarray:
    """Sentence BLEU (0-100) of each row of sufficient statistics, as `sacrebleu.sentence_bleu`."""
    bleu = BLEU(effective_order=True)  # what sentence_bleu uses: no zero for short reports
    return np.array([bleu._compute_score_from_stats(row.tolist()).score for row in stats])


def finding_labels(texts: Sequence[str]) -> np.ndarray:
    """(n, len(FINDINGS)) 0/1 positives of the rule-based labeler (uncertain -> 0)."""
    labels = label_reports(texts)
    return np.array([[int(lab[f] == POSITIVE) for f in FINDINGS] for lab in labels], dtype=int)


def macro_f1(pred: np.ndarray, true: np.ndarray, columns: np.ndarray | None = None) -> float:
    """Mean F1 (0-100) over `columns` (default: findings positive in `true`); NaN if none."""
    if columns is None:
        columns = np.flatnonzero(true.sum(axis=0) > 0)
    if len(columns) == 0:
        return math.nan
    tp = (pred[:, columns] & true[:, columns]).sum(axis=0)
    denom = pred[:, columns].sum(axis=0) + true[:, columns].sum(axis=0)
    f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    return float(100 * f1.mean())


@dataclass(frozen=True)
class PerReportScores:
    """What each generated report scores against its reference; the metrics aggregate these."""

    rouge_l: np.ndarray  # (n,) ROUGE-L F-measure, 0-100: its mean is Table 2's point value
    bleu: BLEU
    bleu_stats: np.ndarray  # (n, 2 + 2 * 4) sacrebleu sufficient statistics
    pred_labels: np.ndarray  # (n, len(FINDINGS)) 0/1 positives of the generated reports
    true_labels: np.ndarray  # (n, len(FINDINGS)) 0/1 positives of the references

    @property
    def n(self) -> int:
        """Number of reports."""
        return len(self.rouge_l)

    def sentence_bleu(self) -> np.ndarray:
        """Sentence BLEU (0-100) of each report (its mean is not the corpus BLEU-4)."""
        return sentence_bleu_from_statistics(self.bleu_stats)

    def positive_findings(self) -> tuple[list[list[str]], list[list[str]]]:
        """The findings positive in each generated report and in each reference."""

        def names(labels: np.ndarray) -> list[list[str]]:
            return [[FINDINGS[c] for c in np.flatnonzero(row)] for row in labels]

        return names(self.pred_labels), names(self.true_labels)


def per_report_scores(predictions: Sequence[str], references: Sequence[str]) -> PerReportScores:
    """ROUGE-L, BLEU statistics and finding labels of each prediction against its reference."""
    if len(predictions) != len(references) or not predictions:
        raise ValueError("need the same, non-zero number of predictions and references")
    bleu, stats = bleu_statistics(predictions, references)
    return PerReportScores(
        rouge_l=100 * rouge_l_scores(predictions, references),
        bleu=bleu,
        bleu_stats=stats,
        pred_labels=finding_labels(predictions),
        true_labels=finding_labels(references),
    )


def compute_metrics(
    predictions: Sequence[str],
    references: Sequence[str],
    *,
    n_bootstrap: int = 500,
    seed: int = 0,
    chexbert_path: Path | None = None,
    radgraph_path: Path | None = None,
) -> ReportMetrics:
    """ROUGE-L, BLEU-4, finding F1 (and CheXbert/RadGraph when weights are available)."""
    return metrics_from_scores(
        per_report_scores(predictions, references),
        n_bootstrap=n_bootstrap,
        seed=seed,
        chexbert_path=chexbert_path,
        radgraph_path=radgraph_path,
    )


def metrics_from_scores(
    scores: PerReportScores,
    *,
    n_bootstrap: int = 500,
    seed: int = 0,
    chexbert_path: Path | None = None,
    radgraph_path: Path | None = None,
) -> ReportMetrics:
    """Table 2's metrics, bootstrapped, from the per-report scores."""
    n = scores.n
    indices = bootstrap_indices(n, n_bootstrap, seed)
    rouge, bleu, stats = scores.rouge_l, scores.bleu, scores.bleu_stats
    pred_labels, true_labels = scores.pred_labels, scores.true_labels
    # A finding never positive in the references has no defined F1 on that (re)sample.
    columns = np.flatnonzero(true_labels.sum(axis=0) > 0)
    per_finding = {FINDINGS[c]: macro_f1(pred_labels, true_labels, np.array([c])) for c in columns}
    return ReportMetrics(
        n=n,
        rouge_l=bootstrap(lambda idx: float(rouge[idx].mean()), n, indices),
        bleu4=bootstrap(lambda idx: bleu_from_statistics(bleu, stats[idx]), n, indices),
        finding_f1=bootstrap(lambda idx: macro_f1(pred_labels[idx], true_labels[idx]), n, indices),
        per_finding_f1=per_finding,
        chexbert_f1=_external("CheXbert", chexbert_path),
        radgraph=_external("RadGraph", radgraph_path),
    )


def _external(name: str, path: Path | None) -> NotComputed:
    """Why a hub-hosted metric was not computed."""
    if path is None:
        return NotComputed(f"no {name} weights path given (its weights download from a hub)")
    if not Path(path).exists():
        return NotComputed(f"{name} weights not found at {path}")
    return NotComputed(
        f"{name} weights found at {path}, but no offline {name} scorer is installed "
        "(needs the f1chexbert/radgraph packages)"
    )
