"""The report component's two paths and the compiled pipeline's report branches."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from components.report import report
from pipelines.training import COMPILED
from tests.pipelines.compiled_spec import find_task


def _outcome(tmp_path: Path, **extra) -> dict:
    model = tmp_path / "runs" / "model"
    model.mkdir(parents=True, exist_ok=True)
    (model / "config.json").write_text("{}")
    (tmp_path / "runs" / "report_metrics.json").write_text('{"LLaVA": {}}')
    return {
        "model_dir": str(model),
        "model_version": "3",
        "results": str(tmp_path / "runs" / "report_metrics.json"),
        "table_markdown": "| table |",
        **extra,
    }


def _call(tmp_path: Path, **kw):
    table = SimpleNamespace(path=str(tmp_path / "table.md"), metadata={})
    generator = SimpleNamespace(path=str(tmp_path / "generator"), metadata={})
    out = report.python_func(
        data_dir="/data/ds",
        data_version="0123456789abcdef",
        encoder_dir="/checkpoints/enc",
        runs_dir="/checkpoints/runs",
        table=table,
        generator=generator,
        encoder_version="7",
        pipeline_run="run-1",
        **kw,
    )
    return out, table, generator


def test_one_node_trains_in_the_pod(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(
        "cxrflow.cluster.entry.run", lambda stage, args: seen.append(args) or _outcome(tmp_path)
    )
    monkeypatch.setattr(
        "cxrflow.cluster.launcher.launch",
        lambda *a, **kw: pytest.fail("one node must not launch a job"),
    )
    out, table, generator = _call(tmp_path, steps=4)
    (args,) = seen
    assert str(args.out_dir) == "/checkpoints/runs/report-0123456789ab-7-tiny"  # as before
    assert args.steps == 4 and args.pipeline_run == "run-1" and args.deepspeed == ""
    assert out.report_version == "3"
    assert out.results.endswith("report_metrics.json")
    assert Path(table.path).read_text() == "| table |"
    assert (Path(generator.path) / "config.json").is_file()
    assert generator.metadata == {"registered_version": "3"}


def test_more_nodes_launch_a_job_with_the_same_stage_arguments(monkeypatch, tmp_path):
    launched = []

    def fake_launch(stage, args, settings):
        launched.append((args, settings))
        return _outcome(tmp_path, job="TrainJob ml/x")

    monkeypatch.setattr("cxrflow.cluster.launcher.launch", fake_launch)
    monkeypatch.setattr("cxrflow.cluster.launcher.raise_on_sigterm", lambda: None)
    monkeypatch.setattr(
        "cxrflow.cluster.entry.run", lambda stage, args: pytest.fail("must not train in-pod")
    )
    out, _, generator = _call(
        tmp_path,
        preset="paper",
        deepspeed="zero3",
        nodes=4,
        gpus_per_node=2,
        job_runtime="deepspeed-distributed",
        job_image="reg/cxrflow-cuda:1",
        job_timeout_hours=2.0,
        keep_job=True,
    )
    ((args, settings),) = launched
    assert str(args.out_dir) == "/checkpoints/runs/report-0123456789ab-7-paper"
    assert args.deepspeed == "zero3"
    assert (settings.nodes, settings.gpus_per_node, settings.runtime) == (
        4,
        2,
        "deepspeed-distributed",
    )
    assert settings.image == "reg/cxrflow-cuda:1" and settings.timeout_s == 7200.0
    assert settings.keep_job is True
    assert out.report_version == "3" and generator.metadata["training_job"] == "TrainJob ml/x"


def test_zero_nodes_is_refused(tmp_path):
    with pytest.raises(ValueError, match="nodes"):
        _call(tmp_path, nodes=0)


def test_report_is_in_pod_on_one_node_and_an_uncached_launcher_on_more():
    spec, platform = list(yaml.safe_load_all(COMPILED.read_text()))
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["report_nodes"]["parameterType"] == "NUMBER_INTEGER"
    assert params["report_nodes"]["defaultValue"] == 1
    assert params["report_gpus_per_node"]["defaultValue"] == 1
    in_pod_dag, in_pod = find_task(spec, "report")
    launcher_dag, launcher = find_task(spec, "report-2")
    branches = next(
        body["dag"]
        for body in spec["components"].values()
        if in_pod_dag.removeprefix("comp-") in body.get("dag", {}).get("tasks", {})
        and launcher_dag.removeprefix("comp-") in body["dag"]["tasks"]
    )
    conditions = {
        t["componentRef"]["name"]: t["triggerPolicy"]["condition"]
        for t in branches["tasks"].values()
    }
    nodes = "int(inputs.parameter_values['pipelinechannel--report_nodes'])"
    assert conditions[in_pod_dag] == f"{nodes} <= 1"
    assert conditions[launcher_dag] == f"!({nodes} <= 1)"
    assert launcher["cachingOptions"].get("enableCache", False) is False
    assert in_pod["cachingOptions"]["enableCache"] is True
    inputs = launcher["inputs"]["parameters"]
    assert inputs["nodes"] == {"componentInputParameter": "pipelinechannel--report_nodes"}
    assert inputs["gpus_per_node"] == {
        "componentInputParameter": "pipelinechannel--report_gpus_per_node"
    }
    assert inputs["job_image"]["runtimeValue"]["constant"].endswith("cxrflow-cuda:0.1.0")
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    exec_launcher = spec["deploymentSpec"]["executors"]["exec-report-2"]
    assert "accelerator" not in exec_launcher["container"].get("resources", {})
    assert not executors["exec-report-2"].get("nodeSelector")
    mounts = {m["mountPath"]: m["constant"] for m in executors["exec-report-2"]["pvcMount"]}
    assert mounts["/checkpoints"] == "cxrflow-checkpoints"
    assert (
        "accelerator"
        in spec["deploymentSpec"]["executors"]["exec-report"]["container"]["resources"]
    )
    # Evaluation reads the metrics of whichever branch ran.
    producers = {
        frozenset(s["producerSubtask"] for s in p["valueFromOneof"]["parameterSelectors"])
        for p in branches["outputs"]["parameters"].values()
    }
    # A set: the condition numbers (condition-9, condition-10) do not sort as numbers.
    assert producers == {
        frozenset((in_pod_dag.removeprefix("comp-"), launcher_dag.removeprefix("comp-")))
    }
