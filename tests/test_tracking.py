"""Stage runs grouped under one parent run per pipeline run, in an experiment of the right kind."""

from pathlib import Path

import mlflow
import pytest

from cxrflow.tags import TAG_PIPELINE_RUN, TAG_STAGE
from cxrflow.tracking import (
    EXPERIMENT,
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    NOTE_LIMIT,
    PIPELINE_STAGE,
    log_to_pipeline_run,
    pipeline_parent_run,
    stage_run,
    use_experiment,
)


def _runs(client: mlflow.MlflowClient, pipeline_run: str) -> list:
    experiment = client.get_experiment_by_name(EXPERIMENT)
    return client.search_runs(
        [experiment.experiment_id], f"tags.`{TAG_PIPELINE_RUN}` = '{pipeline_run}'"
    )


def test_stages_of_one_pipeline_run_are_children_of_one_parent(tracking) -> None:
    for stage in ("ingest", "split", "pretrain"):
        with stage_run(stage, "kfp-run-1"):
            mlflow.log_metric("x", 1.0)
    with stage_run("ingest", "kfp-run-2"):
        pass

    runs = _runs(tracking, "kfp-run-1")
    parents = [r for r in runs if r.data.tags[TAG_STAGE] == PIPELINE_STAGE]
    children = [r for r in runs if r.data.tags[TAG_STAGE] != PIPELINE_STAGE]
    assert len(parents) == 1
    assert sorted(r.data.tags[TAG_STAGE] for r in children) == ["ingest", "pretrain", "split"]
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert parents[0].info.status == "FINISHED"
    assert parents[0].info.run_name == "kfp-run-1"
    other = [r for r in _runs(tracking, "kfp-run-2") if r.data.tags[TAG_STAGE] == PIPELINE_STAGE]
    assert len(other) == 1 and other[0].info.run_id != parents[0].info.run_id


def test_a_failed_stage_marks_the_pipeline_run_failed(tracking) -> None:
    with stage_run("ingest", "kfp-fail"):
        pass
    with pytest.raises(RuntimeError, match="boom"), stage_run("split", "kfp-fail"):
        raise RuntimeError("boom")
    with stage_run("report", "kfp-fail"):  # a later stage does not make it look finished
        pass
    parent = tracking.get_run(pipeline_parent_run(use_experiment(), "kfp-fail"))
    assert parent.info.status == "FAILED"


def test_two_parents_created_at_once_resolve_to_the_oldest(tracking) -> None:
    experiment_id = use_experiment()
    first = pipeline_parent_run(experiment_id, "kfp-race")
    # What a second pod that searched before the first one's create would have made:
    tracking.create_run(
        experiment_id,
        run_name="kfp-race",
        tags={TAG_STAGE: PIPELINE_STAGE, TAG_PIPELINE_RUN: "kfp-race"},
    )
    assert pipeline_parent_run(experiment_id, "kfp-race") == first


def test_experiment_opens_as_model_development(tracking) -> None:
    use_experiment()
    experiment = tracking.get_experiment_by_name(EXPERIMENT)
    assert experiment.tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND


def test_files_and_a_note_reach_the_parent_run(tracking, tmp_path: Path) -> None:
    with stage_run("evaluation", "kfp-eval"):
        pass
    html = tmp_path / "evaluation.html"
    html.write_text("<html>results</html>")
    note = "| metric | value |\n|---|---|\n" + "| auroc | 0.9 |\n" * 2000  # over MLflow's limit
    log_to_pipeline_run("kfp-eval", [html], "evaluation", note=note)
    parent = pipeline_parent_run(use_experiment(), "kfp-eval")
    assert [a.path for a in tracking.list_artifacts(parent, "evaluation")] == [
        "evaluation/evaluation.html"
    ]
    shown = tracking.get_run(parent).data.tags["mlflow.note.content"]
    assert shown.startswith("| metric | value |") and "cut at" in shown
    assert len(shown) <= 8000 and NOTE_LIMIT < 8000
