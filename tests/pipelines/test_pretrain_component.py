"""The pre-training component's two paths: in-pod on one node, the launcher on more."""

from pathlib import Path
from types import SimpleNamespace

import pytest

from components.pretrain import pretrain


def _outcome(tmp_path: Path) -> dict:
    encoder = tmp_path / "runs" / "enc"
    encoder.mkdir(parents=True)
    (encoder / "config.json").write_text("{}")
    return {"encoder_dir": str(encoder), "encoder_version": "5", "job": "TrainJob ml/x"}


def _call(tmp_path: Path, **kw):
    artifact = SimpleNamespace(path=str(tmp_path / "artifact"), metadata={})
    out = pretrain.python_func(
        data_dir="/data/ds",
        data_version="0123456789abcdef",
        runs_dir="/checkpoints/runs",
        encoder=artifact,
        pipeline_run="run-1",
        **kw,
    )
    return out, artifact


def test_one_node_trains_in_the_pod(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(
        "cxrflow.cluster.entry.run", lambda stage, args: seen.append(args) or _outcome(tmp_path)
    )
    monkeypatch.setattr(
        "cxrflow.cluster.launcher.launch",
        lambda *a, **kw: pytest.fail("one node must not launch a job"),
    )
    out, artifact = _call(tmp_path, steps=4)
    (args,) = seen
    assert str(args.out_dir).startswith("/checkpoints/runs/pretrain-0123456789ab-")
    assert args.steps == 4 and args.pipeline_run == "run-1"
    assert out.encoder_version == "5" and out.encoder_dir.endswith("enc")
    assert (Path(artifact.path) / "config.json").is_file()
    assert artifact.metadata["registered_version"] == "5"


def test_more_nodes_launch_a_job_with_the_same_stage_arguments(monkeypatch, tmp_path):
    launched = []

    def fake_launch(stage, args, settings):
        launched.append((args, settings))
        return _outcome(tmp_path)

    monkeypatch.setattr("cxrflow.cluster.launcher.launch", fake_launch)
    monkeypatch.setattr("cxrflow.cluster.launcher.raise_on_sigterm", lambda: None)
    monkeypatch.setattr(
        "cxrflow.cluster.entry.run", lambda stage, args: pytest.fail("must not train in-pod")
    )
    out, artifact = _call(
        tmp_path,
        steps=4,
        nodes=4,
        gpus_per_node=8,
        job_backend="pytorchjob",
        job_image="reg/cxrflow-cuda:1",
        job_timeout_hours=2.0,
        keep_job=True,
    )
    ((args, settings),) = launched
    assert (
        str(args.out_dir).startswith("/checkpoints/runs/pretrain-0123456789ab-") and args.steps == 4
    )
    assert (settings.nodes, settings.gpus_per_node, settings.backend) == (4, 8, "pytorchjob")
    assert settings.image == "reg/cxrflow-cuda:1" and settings.timeout_s == 7200.0
    assert settings.keep_job is True
    assert out.encoder_version == "5"
    assert (Path(artifact.path) / "config.json").is_file()


def test_zero_nodes_is_refused(tmp_path):
    with pytest.raises(ValueError, match="nodes"):
        _call(tmp_path, nodes=0)
