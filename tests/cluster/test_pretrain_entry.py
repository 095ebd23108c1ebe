"""The entry point every node runs, alone and as two torchrun "nodes" behind the launcher."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from cxrflow.cluster.config import JobStorage
from cxrflow.cluster.launcher import MultiNodeSettings, launch_pretrain
from cxrflow.cluster.pretrain_entry import MODULE, PretrainArgs, parse_args, run
from tests.cluster.conftest import venv_tool
from tests.cluster.fake_kube import FakeCluster
from tests.ssl.conftest import make_image_dataset


def test_arguments_round_trip_through_the_command_line():
    args = PretrainArgs(
        data_dir="/data/ds",
        out_dir="/checkpoints/runs/x",
        data_version="abc",
        preset="tiny",
        steps=7,
        batch_size=16,
        seed=3,
        init_from="",
        dvc_remote="s3://bucket/dvc",
        pipeline_run="run-1",
    )
    assert parse_args(args.to_argv()) == args
    with pytest.raises(SystemExit):
        parse_args(["--data-dir", "/data/ds"])  # out-dir and data-version are required


def test_runs_dir_keys_the_run_folder_by_data_version_and_settings():
    a = PretrainArgs.in_runs_dir("/checkpoints/runs", data_dir="/d", data_version="v1", steps=5)
    assert Path(a.out_dir).parent == Path("/checkpoints/runs")
    assert (
        a.out_dir
        == PretrainArgs.in_runs_dir(
            "/checkpoints/runs", data_dir="/d", data_version="v1", steps=5
        ).out_dir
    )
    assert (
        a.out_dir
        != PretrainArgs.in_runs_dir(
            "/checkpoints/runs", data_dir="/d", data_version="v2", steps=5
        ).out_dir
    )


def test_rank0_runs_the_stage_and_writes_its_outcome_other_ranks_only_train(monkeypatch, tmp_path):
    calls: list[tuple[str, Any]] = []

    def fake_stage(data_dir, out_dir, config, **kw):
        calls.append(("stage", kw))
        return SimpleNamespace(
            encoder_dir=out_dir / "encoder", encoder_version="3", mlflow_run_id="r", metrics={}
        )

    def fake_pretrain(config, data_dir, out_dir, **kw):
        calls.append(("pretrain", kw))

    monkeypatch.setattr("cxrflow.stages.pretrain.run_pretrain_stage", fake_stage)
    monkeypatch.setattr("cxrflow.ssl.train.pretrain", fake_pretrain)
    args = PretrainArgs(
        data_dir=str(tmp_path / "d"),
        out_dir=str(tmp_path / "o"),
        data_version="v",
        pipeline_run="run-9",
        dvc_remote="/remote",
    )
    monkeypatch.setenv("RANK", "1")
    assert run(args) is None
    assert calls == [("pretrain", {"init_from": None, "progress": False})]
    assert not args.result_file().exists()

    monkeypatch.setenv("RANK", "0")
    outcome = run(args)
    assert calls[-1][0] == "stage"
    assert calls[-1][1]["pipeline_run"] == "run-9" and calls[-1][1]["dvc_remote"] == "/remote"
    assert json.loads(args.result_file().read_text()) == outcome
    assert outcome["encoder_version"] == "3"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_nodes_train_under_torchrun_and_the_launcher_collects_the_encoder(tmp_path):
    """The TrainJob's own command, run as two single-GPU-less "nodes" on this machine.

    The stand-in API "runs" the created TrainJob by starting its command once per node with the
    variables the torch-distributed runtime sets (PET_*), then reports the job Complete.
    """
    torchrun = venv_tool("torchrun")
    if torchrun is None:
        pytest.skip("torchrun is not installed")
    shared = JobStorage(data_mount=str(tmp_path / "data"), checkpoint_mount=str(tmp_path / "ckpt"))
    make_image_dataset(Path(shared.data_mount) / "ds", n=8, size=64)
    args = PretrainArgs.in_runs_dir(
        f"{shared.checkpoint_mount}/runs",
        data_dir=f"{shared.data_mount}/ds",
        data_version="0123456789abcdef",
        steps=2,
        batch_size=4,
        pipeline_run="e2e",
    )
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "OMP_NUM_THREADS": "1",
        # The image has python and the package on PATH; here they sit beside the interpreter.
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
    }
    finished: list[int] = []

    def run_nodes(job: dict[str, Any]) -> None:
        trainer = job["spec"]["trainer"]
        port = str(_free_port())
        job_env = {e["name"]: e["value"] for e in trainer["env"]}
        nodes = [
            subprocess.Popen(
                [torchrun, *trainer["command"][1:]],
                env={
                    **env,
                    **job_env,
                    "PET_NNODES": str(trainer["numNodes"]),
                    "PET_NPROC_PER_NODE": str(trainer["numProcPerNode"]),
                    "PET_NODE_RANK": str(rank),
                    "PET_MASTER_ADDR": "127.0.0.1",
                    "PET_MASTER_PORT": port,
                },
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for rank in range(trainer["numNodes"])
        ]
        for node in nodes:
            out, _ = node.communicate(timeout=600)
            assert node.returncode == 0, out[-3000:]
            finished.append(node.returncode)

    cluster = FakeCluster(
        [{"conditions": [{"type": "Complete", "status": "True", "reason": "JobsCompleted"}]}],
        on_create=run_nodes,
    )
    outcome = launch_pretrain(
        args,
        MultiNodeSettings(
            nodes=2,
            gpus_per_node=1,
            image="ghcr.io/cxrflow/cxrflow-cuda:0.1.0",
            namespace="ml",
            storage=shared,
        ),
        custom_api=cluster,
        core_api=cluster,
        environ=env,
        clock=cluster.clock,
        sleep=cluster.sleep,
    )
    assert finished == [0, 0]
    encoder = Path(outcome["encoder_dir"])
    assert encoder == Path(args.out_dir) / "encoder"
    assert (encoder / "config.json").is_file() and (encoder / "model.safetensors").is_file()
    # One world of two ranks, not two worlds of one: exactly one rank registered an encoder.
    from mlflow import MlflowClient

    from cxrflow.stages.pretrain import ENCODER_MODEL_NAME

    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    versions = client.search_model_versions(f"name='{ENCODER_MODEL_NAME}'")
    assert [str(v.version) for v in versions] == [outcome["encoder_version"]] == ["1"]
    assert outcome["args"] == asdict(args)
    (job,) = cluster.created
    assert job["spec"]["trainer"]["command"][:5] == [
        "torchrun",
        "--no-python",
        "python",
        "-m",
        MODULE,
    ]
