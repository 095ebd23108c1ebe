"""Metrics equal their reference implementations; bootstrap intervals; the labeler."""

import numpy as np
import pytest
import sacrebleu
from rouge_score import rouge_scorer, scoring

from cxrflow.report.baselines import most_frequent_report, nearest_neighbour_reports
from cxrflow.report.labeler import NEGATIVE, POSITIVE, UNCERTAIN, label_report
from cxrflow.report.metrics import (
    BootstrapScore,
    NotComputed,
    compute_metrics,
    per_report_scores,
    rouge_l_scorer,
)

REFS = [
    "Small left pleural effusion. No pneumothorax.",
    "No acute cardiopulmonary process.",
    "Mild cardiomegaly. The lungs are clear.",
    "Right chest tube in place with its tip at the apex.",
    "Moderate right pneumothorax with a visible pleural line.",
    "Heart size is normal. No focal consolidation.",
]
PREDS = [
    "Small right pleural effusion. No pneumothorax.",
    "No acute cardiopulmonary process.",
    "Cardiomegaly. The lungs are clear.",
    "Left chest tube in place.",
    "No pneumothorax.",
    "Heart size is normal. No consolidation.",
]


def test_point_values_equal_rouge_score_and_sacrebleu():
    m = compute_metrics(PREDS, REFS, n_bootstrap=50, seed=1)
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    rouge = [scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(PREDS, REFS, strict=True)]
    assert m.rouge_l.value == pytest.approx(100 * np.mean(rouge))
    assert m.bleu4.value == pytest.approx(sacrebleu.corpus_bleu(PREDS, [REFS]).score)
    assert m.n == len(REFS)


def test_rouge_bootstrap_equals_rouge_scores_bootstrap_aggregator_with_the_same_seed():
    m = compute_metrics(PREDS, REFS, n_bootstrap=100, seed=7)
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    aggregator = scoring.BootstrapAggregator(confidence_interval=0.95, n_samples=100)
    for p, r in zip(PREDS, REFS, strict=True):
        aggregator.add_scores(scorer.score(r, p))
    np.random.seed(7)
    upstream = aggregator.aggregate()["rougeL"]
    assert m.rouge_l.low == pytest.approx(100 * upstream.low.fmeasure)
    assert m.rouge_l.median == pytest.approx(100 * upstream.mid.fmeasure)
    assert m.rouge_l.high == pytest.approx(100 * upstream.high.fmeasure)


def test_bootstrap_is_reproducible_by_seed_and_brackets_the_point_value():
    a = compute_metrics(PREDS, REFS, n_bootstrap=200, seed=3)
    b = compute_metrics(PREDS, REFS, n_bootstrap=200, seed=3)
    c = compute_metrics(PREDS, REFS, n_bootstrap=200, seed=4)
    assert a == b
    assert (a.rouge_l.low, a.bleu4.low) != (c.rouge_l.low, c.bleu4.low)
    for score in (a.rouge_l, a.bleu4, a.finding_f1):
        assert isinstance(score, BootstrapScore) and score.n_bootstrap == 200
        assert score.low <= score.median <= score.high
        assert score.low <= score.value <= score.high


def test_hub_metrics_are_not_computed_with_a_reason_never_zero(tmp_path):
    m = compute_metrics(PREDS, REFS, n_bootstrap=10, chexbert_path=tmp_path / "absent")
    assert isinstance(m.chexbert_f1, NotComputed) and "not found" in m.chexbert_f1.reason
    assert isinstance(m.radgraph, NotComputed) and "no RadGraph" in m.radgraph.reason
    assert str(m.radgraph) == "not computed"
    flat = m.flat("test_")
    assert "test_rouge_l" in flat and not any("chexbert" in k or "radgraph" in k for k in flat)


def test_finding_f1_counts_findings_not_words():
    perfect = compute_metrics(REFS, REFS, n_bootstrap=20)
    assert perfect.finding_f1.value == 100.0
    normal = compute_metrics(
        ["No acute cardiopulmonary process."] * len(REFS), REFS, n_bootstrap=20
    )
    assert normal.finding_f1.value == 0.0
    # Right vs left effusion is the same finding; "No pneumothorax" for a pneumothorax is not.
    m = compute_metrics(PREDS, REFS, n_bootstrap=20)
    assert m.per_finding_f1["pleural_effusion"] == 100.0
    assert m.per_finding_f1["pneumothorax"] == 0.0


@pytest.mark.parametrize(
    ("text", "finding", "label"),
    [
        ("No pneumothorax or pleural effusion.", "pleural_effusion", NEGATIVE),
        ("No pneumothorax or pleural effusion.", "pneumothorax", NEGATIVE),
        ("There is a small left pneumothorax; no mediastinal shift.", "pneumothorax", POSITIVE),
        ("The cardiac silhouette is not enlarged.", "cardiomegaly", NEGATIVE),
        ("The heart is enlarged (mild cardiomegaly).", "cardiomegaly", POSITIVE),
        ("The lungs are clear of focal opacity.", "lung_opacity", NEGATIVE),
        ("Possible small left pleural effusion.", "pleural_effusion", UNCERTAIN),
        (
            "Nodular opacities in the left upper zone, suspicious for tuberculosis.",
            "lung_opacity",
            NEGATIVE,
        ),
        ("The pneumothorax has resolved.", "pneumothorax", NEGATIVE),
        ("No displaced rib fracture.", "rib_fracture", NEGATIVE),
    ],
)
def test_labeler_handles_negation_and_uncertainty(text, finding, label):
    assert label_report(text)[finding] == label


def test_baselines():
    train = ["FINDINGS: A.", "FINDINGS: B.", "FINDINGS: B.", "FINDINGS: C."]
    assert most_frequent_report(train) == "B."
    import torch

    train_emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 2.0], [-1.0, -1.0]])
    query = torch.tensor([[3.0, 0.1], [-0.5, -0.4]])
    assert nearest_neighbour_reports(query, train_emb, train) == ["A.", "C."]


def test_per_report_scores_are_what_table2_aggregates():
    scores = per_report_scores(PREDS, REFS)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)  # LLaVA-Rad's ROUGE-L
    rouge = [100 * scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(PREDS, REFS, strict=True)]
    assert scores.rouge_l == pytest.approx(rouge)
    assert compute_metrics(PREDS, REFS, n_bootstrap=20).rouge_l.value == pytest.approx(
        scores.rouge_l.mean()
    )
    sentence = [sacrebleu.sentence_bleu(p, [r]).score for p, r in zip(PREDS, REFS, strict=True)]
    assert scores.sentence_bleu() == pytest.approx(sentence)
    generated, reference = scores.positive_findings()
    assert reference[0] == ["pleural_effusion"] and generated[3] == ["chest_tube"]
    # no stemming: a plural is another word
    assert rouge_l_scorer().score("effusion", "effusions")["rougeL"].fmeasure == 0.0


def test_the_rouge_scorer_does_not_log_its_tokenizer(caplog):
    import logging

    from cxrflow.report.metrics import rouge_l_scorer

    with caplog.at_level(logging.INFO):
        rouge_l_scorer()
    assert "Using default tokenizer" not in caplog.text
