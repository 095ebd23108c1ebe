import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from cxrflow.evaluation import (
    EvaluationConfig,
    EvaluationInputs,
    ReportResultsError,
    cohort_table,
    evaluate,
    per_image_dice,
    render_html,
    report_results_from_dict,
    stratify,
)
from cxrflow.evaluation.gather import CURVES_FILE, write_heads_metrics
from cxrflow.evaluation.segmentation import PER_IMAGE_FILE
from cxrflow.heads.metrics import curve_data
from cxrflow.registry import ENCODER_MODEL, lineage_for, record_metrics, register_candidate
from cxrflow.stages import evaluate as evaluate_stage
from tests.lineage.helpers import manifest
from tests.registry.helpers import model_run, upstream

HEADS_METRICS = {
    "cls.auprc.cardiomegaly": 0.61,
    "cls.auprc_std.cardiomegaly": 0.02,
    "cls.auroc.cardiomegaly": 0.8,
    "cls.auroc_std.cardiomegaly": 0.01,
    "cls.auprc.pleural_effusion": 0.43,
    "cls.auprc_std.pleural_effusion": 0.05,
    "cls.auprc.macro": 0.52,
    "cls.auprc_std.macro": 0.03,
    "seg.linear.dice.lung_left": 0.9,
    "seg.linear.dice_std.lung_left": 0.05,
    "seg.linear.dice.lung_right": 0.88,
    "seg.upernet.dice.lung_left": 0.95,
    "demo.accuracy.sex": 0.97,
    "demo.accuracy_std.sex": 0.01,
    "demo.accuracy.age": 0.6,
}

REPORT = {  # the report stage's report_metrics.json shape
    "LLaVA": {
        "n": 6,
        "rouge_l": {"value": 24.0, "median": 24.6, "low": 24.2, "high": 25.0, "n_bootstrap": 500},
        "bleu4": {"value": 9.0, "median": 9.3, "low": 8.9, "high": 9.7, "n_bootstrap": 500},
        "per_finding_f1": {"cardiomegaly": 0.5},
        "chexbert_f1": {"reason": "no CheXbert weights path given"},
    },
    "Most frequent report": {
        "n": 6,
        "rouge_l": {"value": 20.0, "median": 20.1, "low": 19.0, "high": 21.0, "n_bootstrap": 500},
        "bleu4": {"value": 5.0, "median": 5.1, "low": 4.9, "high": 5.3, "n_bootstrap": 500},
        "chexbert_f1": {"reason": "no CheXbert weights path given"},
    },
}


def _manifest() -> pd.DataFrame:
    rows = [(f"img{i}", f"s{i // 2}", "test" if i < 6 else "train") for i in range(10)]
    return manifest(rows)  # sex alternates M/F; ages 25..85


def _inputs(tmp_path=None) -> EvaluationInputs:
    rng = np.random.default_rng(0)
    m = _manifest()
    test = m[m["split"] == "test"]
    masks = np.zeros((len(test), 2, 16, 16), bool)
    masks[:, 0, 2:10, 2:8] = True
    masks[:, 1, 2:10, 9:14] = True
    probs = masks + rng.normal(0, 0.4, masks.shape)
    per_image = pd.concat(
        [
            per_image_dice(probs, masks, ["lung_left", "lung_right"], test["image_id"].tolist(), d)
            for d in ("linear", "upernet")
        ]
    )
    y = np.array([0, 1, 0, 1, 1, 0], float)
    curves = (curve_data(y, y * 0.6 + rng.random(6) * 0.5, "cardiomegaly"),)
    samples = [
        {
            "image_id": iid,
            "reference": "No acute findings. Heart size normal.",
            "generated": "Heart size normal." if k % 2 else "Small left effusion.",
        }
        for k, iid in enumerate(test["image_id"])
    ]
    report = report_results_from_dict(
        {
            "metrics": REPORT["LLaVA"],
            "baselines": {"Most frequent": REPORT["Most frequent report"]},
            "samples": samples,
            "n": 6,
            "n_bootstrap": 500,
            "primary": "LLaVA",
        }
    )
    return EvaluationInputs(
        heads_metrics=HEADS_METRICS,
        classification_curves=curves,
        per_image_dice=per_image,
        report=report,
        manifest=m,
        context={"data_version": "d" * 32, "split_digest": "s" * 16, "pipeline_run": "kfp-1"},
    )


def test_tables_follow_the_paper():
    result = evaluate(_inputs())
    keys = [t.key for t in result.tables]
    assert keys[:4] == [
        "table1_classification",
        "table2_report_generation",
        "table3_segmentation",
        "table5_demographics",
    ]
    t1 = result.table("table1_classification")
    assert t1.rows[-1] == ("Macro average", "52.0 (3.0)", "n/a")
    assert ("cardiomegaly", "61.0 (2.0)", "80.0 (1.0)") in t1.rows
    t3 = result.table("table3_segmentation")
    assert t3.columns == ("decoder", "lung_left", "lung_right", "average")
    assert t3.rows[0] == ("linear", "90.0 (5.0)", "88.0", "89.0")
    t2 = result.table("table2_report_generation")
    assert t2.columns == ("system", "rouge_l", "bleu4", "chexbert_f1")
    assert t2.rows[0] == ("LLaVA", "24.6 [24.2, 25]", "9.3 [8.9, 9.7]", "not computed")
    assert "no CheXbert weights" in t2.caption and "500 bootstrap" in t2.caption
    assert result.metrics["report.rouge_l.median"] == 24.6
    assert result.metrics["cohort.images.test"] == 6.0


def test_report_results_in_the_report_stage_shape():
    r = report_results_from_dict(REPORT)
    assert r.primary == "LLaVA" and list(r.systems) == ["LLaVA", "Most frequent report"]
    assert r.n == 6 and r.n_bootstrap == 500
    assert r.systems["LLaVA"]["chexbert_f1"].reason
    with pytest.raises(ReportResultsError, match=r"metrics\.rouge_l"):
        report_results_from_dict({"metrics": {"rouge_l": {"median": 1.0}}})
    with pytest.raises(ReportResultsError, match=r"samples\[0\]"):
        report_results_from_dict({"metrics": {}, "samples": [{"generated": "x"}]})


def test_stratify_average_and_worst_group():
    m = manifest([("a", "s1", "test"), ("b", "s2", "test"), ("c", "s3", "test")])
    m["sex"] = ["F", "F", "M"]
    m["age_years"] = [30.0, 70.0, np.nan]
    sex, age = stratify({"a": 1.0, "b": 0.5, "c": 0.2}, m, task="seg", metric="dice")
    assert sex.attribute == "sex" and sex.worst_group == "M"
    assert sex.average == pytest.approx((0.75 + 0.2) / 2) and sex.worst == pytest.approx(0.2)
    assert sex.overall == pytest.approx(1.7 / 3) and sex.gap == pytest.approx(0.275)
    # age: the unknown group is listed but never called the worst
    assert {g.group for g in age.groups} == {"20-40", "60-80", "unknown"}
    assert age.worst_group == "60-80" and age.average == pytest.approx(0.75)
    (small,) = stratify(
        {"a": 1.0, "b": 0.5, "c": 0.2},
        m,
        task="seg",
        metric="dice",
        attributes=("sex",),
        min_group_size=2,
    )
    assert small.worst_group == "F"


def test_fairness_covers_segmentation_and_report_generation():
    result = evaluate(_inputs(), EvaluationConfig(min_group_size=1))
    tasks = {(f.task, f.attribute) for f in result.fairness}
    assert tasks == {
        (t, a)
        for t in ("segmentation.linear", "segmentation.upernet", "report_generation")
        for a in ("sex", "age_group")
    }
    for f in result.fairness:
        assert f.worst <= f.average + 1e-12 and not math.isnan(f.worst)
    assert "fairness.report_generation.rouge_l.sex.worst" in result.metrics


def test_cohort_table_counts_by_split_and_suppresses_small_cells():
    t = cohort_table(_manifest())
    assert t.columns == ("", "train", "test", "all")
    rows = {r[0]: r[1:] for r in t.rows}
    assert rows["images"] == ("4", "6", "10") and rows["subjects"] == ("2", "3", "5")
    assert rows["sex F"] == ("2", "3", "5")
    small = {r[0]: r[1:] for r in cohort_table(_manifest(), suppress_below=5).rows}
    assert small["subjects"] == ("<5", "<5", "5")


def test_html_is_self_contained_and_holds_the_tables():
    result = evaluate(_inputs())
    page = render_html(result)
    assert page.startswith("<!DOCTYPE html>")
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)  # embedded figures
    assert not re.search(r"(https?:)?//[a-z0-9]", text, re.I)  # no external address at all
    assert "url(" not in text and "@import" not in text
    assert "<link" not in page and "<script" not in page
    srcs = re.findall(r"src='([^']*)'", page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    for title in (
        "Table 1",
        "Table 2",
        "Table 3",
        "Table 5",
        "Cohort characteristics",
        "Fairness (C.6)",
    ):
        assert title in page
    assert "Small left effusion." in page  # generated vs reference reports


def test_per_image_dice_checks_shapes():
    with pytest.raises(ValueError, match="disagree"):
        per_image_dice(np.zeros((2, 1, 4, 4)), np.zeros((2, 1, 4, 4)), ["a"], ["x"], "linear")


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="min_group_size"):
        EvaluationConfig(min_group_size=0)
    with pytest.raises(ValueError, match="max_samples"):
        EvaluationConfig(max_samples=-1)


def test_stage_reads_mlflow_compares_with_champion_and_logs(tracking, tmp_path):
    md5, split = "d" * 32, "s" * 16
    upstream("kfp-old", md5, split)
    old = register_candidate(
        f"runs:/{model_run('pretrain', 'kfp-old', md5)}/model",
        ENCODER_MODEL,
        lineage_for("kfp-old", "encoder", params_digest="x"),
    )
    record_metrics(ENCODER_MODEL, old.version, {"cls.auprc.macro": 0.5})
    tracking.set_registered_model_alias(ENCODER_MODEL, "champion", str(old.version))

    upstream("kfp-1", md5, split)
    inputs = _inputs()
    heads_dir = tmp_path / "heads"  # what the heads stage leaves for the evaluation
    heads_dir.mkdir()
    inputs.per_image_dice.to_parquet(heads_dir / PER_IMAGE_FILE)
    (heads_dir / CURVES_FILE).write_text(json.dumps(list(inputs.classification_curves)))
    write_heads_metrics(heads_dir, HEADS_METRICS, encoder_version="1")
    new = register_candidate(
        f"runs:/{model_run('pretrain', 'kfp-1', md5)}/model",
        ENCODER_MODEL,
        lineage_for("kfp-1", "encoder", params_digest="y"),
    )
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    from cxrflow.manifest import write_manifest

    write_manifest(inputs.manifest, data_dir / "manifest.parquet")

    params = evaluate_stage.Params(
        out_dir=tmp_path / "eval",
        heads_dir=heads_dir,
        data_dir=data_dir,
        data_version=md5,
        split_digest=split,
        encoder_version=str(new.version),
        pipeline_run="kfp-1",
    )
    out = evaluate_stage.run(params, report=REPORT)
    comp = out.result.comparison
    assert comp.comparable and comp.champion_version == str(old.version)
    assert ("cls.auprc.macro", 0.52, 0.5) in comp.rows
    assert out.result.metrics["vs_champion.cls.auprc.macro"] == pytest.approx(0.02)
    assert {f.task for f in out.result.fairness} == {"segmentation.linear", "segmentation.upernet"}
    assert out.html_path.is_file() and "Champion" in out.html_path.read_text()
    logged = {a.path for a in tracking.list_artifacts(out.mlflow_run_id, "evaluation")}
    assert logged == {
        "evaluation/evaluation.html",
        "evaluation/evaluation.json",
        "evaluation/evaluation.md",
    }
    run = tracking.get_run(out.mlflow_run_id)
    assert run.data.metrics["cls.auprc.macro"] == 0.52
    assert run.data.tags["cxrflow.split_digest"] == split
    tags = tracking.get_model_version(ENCODER_MODEL, str(new.version)).tags
    assert float(tags["cxrflow.metric.cls.auprc.macro"]) == 0.52
    assert tags["cxrflow.evaluation_run"] == out.mlflow_run_id


def test_no_comparison_across_splits(tracking, tmp_path):
    from cxrflow.evaluation import compare_with_champion

    upstream("kfp-old", "a" * 32, "other-split")
    old = register_candidate(
        f"runs:/{model_run('pretrain', 'kfp-old', 'a' * 32)}/model",
        ENCODER_MODEL,
        lineage_for("kfp-old", "encoder", params_digest="x"),
    )
    tracking.set_registered_model_alias(ENCODER_MODEL, "champion", str(old.version))
    comp = compare_with_champion(
        {"m": 1.0}, ENCODER_MODEL, data_version="a" * 32, split_digest="s" * 16
    )
    assert not comp.comparable and "different test sets" in comp.reason and not comp.rows


def test_tasks_that_did_not_run_are_listed_with_their_reasons(tracking, tmp_path):
    from cxrflow.evaluation.report_results import not_run_json
    from cxrflow.stages.contract import write_json_atomic

    heads_dir = tmp_path / "heads"
    heads_dir.mkdir()
    cls_only = {k: v for k, v in HEADS_METRICS.items() if k.startswith("cls.")}
    write_heads_metrics(heads_dir, cls_only, not_run={"segmentation": "no masks here"})
    results = tmp_path / "report_metrics.json"
    write_json_atomic(results, not_run_json("no reports here"))
    params = evaluate_stage.Params(
        out_dir=tmp_path / "eval", heads_dir=heads_dir, report_results=results
    )
    out = evaluate_stage.run(params)
    assert out.result.notes[:2] == (
        "report generation not evaluated: no reports here",
        "segmentation not evaluated: no masks here",
    )
    assert out.result.table("table2_report_generation") is None
    assert not any(k.startswith(("report.", "seg.")) for k in out.result.metrics)
    assert "report generation not evaluated: no reports here" in out.html_path.read_text()
    with pytest.raises(ValueError, match="not_run: a reason is required"):
        not_run_json(" ")


def test_a_table_without_rows_shows_its_reason_not_an_empty_grid():
    from cxrflow.evaluation.compare import ChampionComparison

    table = ChampionComparison("cxrflow-encoder", "1", False, "not compared: different test sets")
    md, page = table.table().to_markdown(), table.table().to_html()
    assert "| metric |" not in md and "not compared: different test sets" in md
    assert "<table>" not in page and "not compared: different test sets" in page
    shared = ChampionComparison("m", "1", True, "same split", (("auprc", 0.5, 0.4),))
    assert "| auprc | 0.5 | 0.4 | 0.1 |" in shared.table().to_markdown()
