"""Report generation in the evaluation: per-image ROUGE-L and samples flow from the report stage's
report_metrics.json into fairness, with one ROUGE-L definition (Table 2's) on every path."""

import json
import math

import numpy as np
import pytest
from rouge_score import rouge_scorer

from cxrflow.evaluation import EvaluationInputs, evaluate, report_results_from_dict
from cxrflow.evaluation.report_results import (
    ReportResultsError,
    report_results_json,
    rouge_l_per_image,
)
from cxrflow.evaluation.tables import report_table
from cxrflow.report.metrics import compute_metrics, metrics_from_scores, per_report_scores
from cxrflow.report.scoring import results_json, samples_frame
from cxrflow.stages import evaluate as evaluate_stage
from tests.lineage.helpers import manifest
from tests.report.test_metrics import PREDS as METRIC_PREDS
from tests.report.test_metrics import REFS as METRIC_REFS

# Stemming would make these identical (1.00); Table 2 and LLaVA-Rad do not stem (0.75).
STEMMED_REF, STEMMED_PRED = "No large pleural effusion.", "No large pleural effusions."

# The report pairs of the metric tests, plus the stemming pair and one more.
REFS = [*METRIC_REFS, STEMMED_REF, "The heart is enlarged (mild cardiomegaly)."]
PREDS = [*METRIC_PREDS, STEMMED_PRED, "Heart size is normal."]
IDS = [f"img{i}" for i in range(len(REFS))]


def _results(max_samples: int = 3) -> dict:
    """What the report stage writes to report_metrics.json, through JSON and back."""
    scores = per_report_scores(PREDS, REFS)
    metrics = {
        "LLaVA": metrics_from_scores(scores, n_bootstrap=50),
        "Most frequent report": compute_metrics([REFS[1]] * len(REFS), REFS, n_bootstrap=50),
    }
    samples = samples_frame(IDS, REFS, PREDS, [REFS[0]] * len(REFS), scores)
    return json.loads(json.dumps(results_json(metrics, samples, max_samples)))


def _manifest():
    m = manifest([(i, f"s{k}", "test") for k, i in enumerate(IDS)])  # sex alternates M/F
    return m


def test_effusions_vs_effusion_scores_the_same_on_every_path():
    unstemmed = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    stemmed = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    expected = 100 * unstemmed.score(STEMMED_REF, STEMMED_PRED)["rougeL"].fmeasure
    assert expected == pytest.approx(75.0)
    assert stemmed.score(STEMMED_REF, STEMMED_PRED)["rougeL"].fmeasure == 1.0  # not ours

    table2 = compute_metrics([STEMMED_PRED], [STEMMED_REF], n_bootstrap=5).rouge_l.value
    per_image = per_report_scores([STEMMED_PRED], [STEMMED_REF]).rouge_l[0]
    written = _results()["per_image"]["rouge_l"]["img6"]  # report stage -> evaluation
    sample = {"image_id": "x", "reference": STEMMED_REF, "generated": STEMMED_PRED}
    from_samples = rouge_l_per_image((sample,))["x"]  # evaluation fallback on samples
    m = manifest([("x", "s", "test")])
    fair = evaluate(
        EvaluationInputs(
            report=report_results_from_dict({"metrics": {}, "samples": [sample]}), manifest=m
        )
    ).fairness[0]
    for value in (table2, per_image, written, from_samples, fair.overall, fair.worst):
        assert value == pytest.approx(expected)


def test_report_metrics_json_keeps_table2_and_adds_per_image_scores_and_bounded_samples():
    d = _results(max_samples=3)
    # Backward compatible: each system's block is where and what it was.
    assert list(d)[:2] == ["LLaVA", "Most frequent report"]
    assert set(d["LLaVA"]) >= {"n", "rouge_l", "bleu4", "finding_f1", "chexbert_f1"}
    legacy = {k: d[k] for k in ("LLaVA", "Most frequent report")}
    new, old = report_results_from_dict(d), report_results_from_dict(legacy)
    assert new.systems == old.systems and report_table(new) == report_table(old)
    assert new.n == len(REFS) and new.primary == "LLaVA"
    # Per-image scores of every test image; samples bounded and de-identified (id and texts).
    assert set(new.per_image["rouge_l"]) == set(IDS)
    assert set(new.per_image["bleu4_sentence"]) == set(IDS)
    assert len(new.samples) == 3
    assert set(new.samples[0]) == {
        "image_id",
        "reference",
        "generated",
        "reference_findings",
        "generated_findings",
    }
    assert new.finding_labels["reference"]["img0"] == ("pleural_effusion",)
    assert new.finding_labels["generated"]["img7"] == ()
    assert new.finding_labels["reference"]["img7"] == ("cardiomegaly",)


def test_per_image_mean_equals_table2_and_fairness_overall():
    d = _results()
    report = report_results_from_dict(d)
    per_image = report.per_image["rouge_l"]
    table2 = report.systems["LLaVA"]["rouge_l"].value
    assert np.mean(list(per_image.values())) == pytest.approx(table2, rel=1e-12)
    result = evaluate(EvaluationInputs(report=report, manifest=_manifest()))
    fairness = [f for f in result.fairness if f.task == "report_generation"]
    assert {f.attribute for f in fairness} == {"sex", "age_group"}
    for f in fairness:
        assert f.metric == "rouge_l" and f.overall == pytest.approx(table2, rel=1e-12)
        assert sum(g.images for g in f.groups) == len(IDS)
        assert f.worst == min(g.mean for g in f.groups) and f.worst_group
    sex = next(f for f in fairness if f.attribute == "sex")
    for g in sex.groups:  # each group's mean is the mean of its images' scores
        ids = IDS[1::2] if g.group == "F" else IDS[0::2]
        assert g.images == 4 and g.mean == pytest.approx(np.mean([per_image[i] for i in ids]))
    assert "fairness.report_generation.rouge_l.sex.worst" in result.metrics
    assert not result.notes


def test_a_per_image_rouge_l_of_another_definition_is_flagged():
    d = _results()
    d["per_image"]["rouge_l"] = {k: v / 100 for k, v in d["per_image"]["rouge_l"].items()}
    result = evaluate(EvaluationInputs(report=report_results_from_dict(d), manifest=_manifest()))
    assert any("not the same definition" in n for n in result.notes)


def test_without_per_image_scores_fairness_falls_back_to_samples_or_says_why():
    d = _results(max_samples=4)
    del d["per_image"]
    result = evaluate(EvaluationInputs(report=report_results_from_dict(d), manifest=_manifest()))
    (sex,) = [f for f in result.fairness if f.attribute == "sex"]
    assert sum(g.images for g in sex.groups) == 4
    assert any("from 4 generated samples only" in n for n in result.notes)
    legacy = {k: d[k] for k in ("LLaVA", "Most frequent report")}  # a file from before
    result = evaluate(
        EvaluationInputs(report=report_results_from_dict(legacy), manifest=_manifest())
    )
    assert not result.fairness
    assert result.notes == ("report fairness needs per-image ROUGE-L or the generated samples",)


def test_reserved_keys_and_malformed_extras_are_refused():
    with pytest.raises(ReportResultsError, match="reserved"):
        report_results_json({"samples": {}})
    with pytest.raises(ReportResultsError, match="per_image"):
        report_results_from_dict({"LLaVA": {}, "per_image": {"rouge_l": {"a": "x"}}})
    with pytest.raises(ReportResultsError, match="samples must be a list"):
        report_results_from_dict({"LLaVA": {}, "samples": {"a": 1}})
    with pytest.raises(ReportResultsError, match="no system"):
        report_results_from_dict({"samples": []})


def test_evaluation_stage_reads_report_metrics_json_into_fairness_and_html(tracking, tmp_path):
    from cxrflow.manifest import write_manifest

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    write_manifest(_manifest(), data_dir / "manifest.parquet")
    path = tmp_path / "report" / "report_metrics.json"
    path.parent.mkdir()
    path.write_text(json.dumps(_results(max_samples=3), indent=2))
    params = evaluate_stage.Params(
        out_dir=tmp_path / "eval", data_dir=data_dir, report_results=path, pipeline_run="kfp-1"
    )
    out = evaluate_stage.run(params)
    written = json.loads(out.json_path.read_text())
    tasks = {(f["task"], f["attribute"]) for f in written["fairness"]}
    assert tasks == {("report_generation", "sex"), ("report_generation", "age_group")}
    assert all(not math.isnan(f["worst"]) and f["groups"] for f in written["fairness"])
    fairness = next(t for t in written["tables"] if t["key"] == "fairness")
    assert any("n=4" in row[-1] for row in fairness["rows"])
    page = out.html_path.read_text()
    assert "findings (reference)" in page and "pleural_effusion" in page
    assert len(out.result.samples) == 3
    assert page.count("<td>img") == 3  # only the bounded samples are shown
