"""The entry point every process of a multi-node stage runs: `python -m cxrflow.cluster.entry`.

Its command line (both stages' Params through `to_argv` / `parse`), rank 0 versus the other
ranks, the mpirun environment, and two torchrun "nodes" behind the launcher.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from cxrflow.cluster import entry
from cxrflow.cluster.config import JobStorage
from cxrflow.cluster.launcher import MultiNodeSettings, launch
from cxrflow.ssl.initialisation import EncoderInit
from cxrflow.stages import pretrain, report
from cxrflow.stages.contract import to_argv, to_json
from tests.cluster.conftest import venv_tool
from tests.cluster.fake_kube import FakeCluster
from tests.ssl.conftest import make_image_dataset

TORCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_PORT")


# --- the command line --------------------------------------------------------------------------


def test_pretrain_params_round_trip_through_the_command_line():
    params = pretrain.Params(
        data_dir=Path("/data/ds"),
        out_dir=Path("/checkpoints/runs/x"),
        data_version="abc",
        preset="tiny",
        steps=7,
        batch_size=16,
        seed=3,
        init=EncoderInit.parse("/checkpoints/hf/dinov2-small"),
        dvc_remote="s3://bucket/dvc",
        pipeline_run="run-1",
        probe=False,
        register=True,
    )
    assert entry.parse(("pretrain", *to_argv(params))) == ("pretrain", params)
    random_init = replace(params, init=None, data_version="")
    assert "--init" not in to_argv(random_init)  # None: the default applies
    champion = replace(params, init=EncoderInit.parse("models:/cxrflow-encoder@champion"))
    assert entry.parse(["pretrain", *to_argv(champion)]) == ("pretrain", champion)
    assert entry.parse(["pretrain", *to_argv(random_init)]) == ("pretrain", random_init)
    assert entry.command("pretrain", params) == (
        "python",
        "-m",
        entry.MODULE,
        "pretrain",
        *to_argv(params),
    )
    with pytest.raises(SystemExit):
        entry.parse(["pretrain", "--data-dir", "/data/ds"])  # out-dir is required


def test_runs_dir_keys_the_pretrain_run_folder_by_data_version_and_settings():
    runs = Path("/checkpoints/runs")

    def out_dir(**kw: Any) -> Path:
        return pretrain.Params.in_runs_dir(runs, data_dir=Path("/d"), **kw).out_dir

    a = out_dir(data_version="v1", steps=5)
    assert a.parent == runs
    assert a == out_dir(data_version="v1", steps=5)
    assert a != out_dir(data_version="v2", steps=5)
    assert a != out_dir(data_version="v1", steps=6)
    assert a != out_dir(data_version="v1", steps=5, init="/checkpoints/hf")
    assert a != out_dir(data_version="v1", steps=5, init="champion")


def test_report_params_round_trip_and_name_the_runs_folder_as_before():
    params = report.Params.in_runs_dir(
        Path("/checkpoints/runs"),
        data_dir=Path("/data/ds"),
        encoder_dir=Path("/checkpoints/enc"),
        data_version="0123456789abcdef0123",
        encoder_version="7",
        preset="paper",
        steps=5,
        deepspeed="zero3",
    )
    assert params.out_dir == Path("/checkpoints/runs/report-0123456789ab-7-paper")
    assert entry.parse(("report", *to_argv(params))) == ("report", params)
    with_lm = replace(params, lm_dir=Path("/checkpoints/llama"))
    assert entry.parse(("report", *to_argv(with_lm))) == ("report", with_lm)
    config = params.config()
    assert config.max_steps == 5 and config.deepspeed == "zero3"
    default = report.Params(Path("d"), Path("e"), Path("o"), "v")
    assert default.config().deepspeed == ""  # the tiny preset's


def test_unknown_stages_are_refused():
    with pytest.raises(SystemExit, match="unknown stage: ingest"):
        entry.parse(["ingest", "--data-dir", "/d"])
    with pytest.raises(SystemExit, match=r"unknown stage: \(none\)"):
        entry.parse([])
    with pytest.raises(ValueError, match="stage: 'ingest' is not one of pretrain, report"):
        entry.program("ingest")


# --- the mpirun environment ----------------------------------------------------------------------


def test_mpi_ranks_become_torch_distributed_variables():
    env = {
        "OMPI_COMM_WORLD_RANK": "3",
        "OMPI_COMM_WORLD_SIZE": "4",
        "OMPI_COMM_WORLD_LOCAL_RANK": "1",
        "OMPI_COMM_WORLD_LOCAL_SIZE": "2",
        "MASTER_ADDR": "job-launcher-0-0.job",
    }
    assert entry.torch_env_from_mpi(env)
    assert (env["RANK"], env["WORLD_SIZE"], env["LOCAL_RANK"]) == ("3", "4", "1")
    assert env["LOCAL_WORLD_SIZE"] == "2" and env["MASTER_PORT"] == "29500"
    torchrun = {"RANK": "1", "OMPI_COMM_WORLD_RANK": "0"}
    assert not entry.torch_env_from_mpi(torchrun) and torchrun["RANK"] == "1"  # torchrun wins
    assert not entry.torch_env_from_mpi({})  # a lone process
    with pytest.raises(RuntimeError, match="MASTER_ADDR"):
        entry.torch_env_from_mpi({"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "2"})


def _without_torch_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """No launcher variables; the ones the entry sets are undone after the test."""
    for name in TORCH_VARIABLES:
        monkeypatch.setenv(name, "")  # records the original value for monkeypatch's undo
        monkeypatch.delenv(name)


# --- rank 0 versus the other ranks ---------------------------------------------------------------


def _fake_stage(monkeypatch: pytest.MonkeyPatch, stage: str, result: Any) -> list[Any]:
    """Replace `stage`'s run: every rank records its params; rank 0 returns `result`."""
    calls: list[Any] = []

    def run(params: Any) -> Any:
        calls.append(params)
        return result(params) if os.environ.get("RANK", "0") == "0" else None

    monkeypatch.setitem(entry.STAGES, stage, entry.EntryStage(entry.STAGES[stage].params, run))
    return calls


def _encoder(params: pretrain.Params) -> pretrain.Result:
    return pretrain.Result(params.out_dir / "encoder", "3", "r", {"probe_auprc_macro": 0.5})


def _report_model(params: report.Params) -> report.Result:
    return report.Result(
        metrics={},
        train=None,  # type: ignore[arg-type]  (not part of the outcome)
        model_dir=params.out_dir / "model",
        table_markdown="| table |",
        samples=pd.DataFrame(),
        mlflow_run_id="abc",
        model_uri="models:/cxrflow-report-generator/3",
        model_version="3",
        results=params.out_dir / report.METRICS_FILE,
    )


def test_rank0_runs_the_pretrain_stage_and_writes_its_outcome_other_ranks_do_not(
    monkeypatch, tmp_path
):
    calls = _fake_stage(monkeypatch, "pretrain", _encoder)
    params = pretrain.Params(
        data_dir=tmp_path / "d",
        out_dir=tmp_path / "o",
        data_version="v",
        pipeline_run="run-9",
        dvc_remote="/remote",
    )
    monkeypatch.setenv("RANK", "1")
    assert entry.run("pretrain", params) is None
    assert not entry.result_file(params).exists()

    monkeypatch.setenv("RANK", "0")
    outcome = entry.run("pretrain", params)
    assert calls == [params, params]  # every rank, the same parameters
    assert entry.result_file(params) == params.out_dir / entry.RESULT_FILE
    assert json.loads(entry.result_file(params).read_text()) == outcome
    assert outcome == {
        "encoder_dir": str(tmp_path / "o" / "encoder"),
        "encoder_version": "3",
        "mlflow_run_id": "r",
        "metrics": {"probe_auprc_macro": 0.5},
        "params": to_json(params),
    }
    assert outcome["params"]["pipeline_run"] == "run-9"
    assert outcome["params"]["dvc_remote"] == "/remote"


def test_ranks_above_0_of_the_real_pretrain_stage_only_train(monkeypatch, tmp_path):
    trained: list[tuple[Path, Path, dict[str, Any]]] = []
    monkeypatch.setattr(
        "cxrflow.stages.pretrain.pretrain",
        lambda config, data_dir, out_dir, **kw: trained.append((data_dir, out_dir, kw)),
    )
    params = pretrain.Params(data_dir=tmp_path / "d", out_dir=tmp_path / "o", steps=3)
    monkeypatch.setenv("RANK", "1")
    assert entry.run("pretrain", params) is None
    assert trained == [(tmp_path / "d", tmp_path / "o", {"init": None, "progress": False})]
    assert not entry.result_file(params).exists()


def test_rank0_replaces_a_stale_report_outcome_other_ranks_leave_it(monkeypatch, tmp_path):
    calls = _fake_stage(monkeypatch, "report", _report_model)
    params = report.Params.in_runs_dir(
        tmp_path, data_dir=Path("/d"), encoder_dir=Path("/e"), data_version="v", steps=3
    )
    result_file = entry.result_file(params)
    result_file.parent.mkdir(parents=True)
    result_file.write_text('{"stale": true}')

    monkeypatch.setenv("RANK", "1")
    assert entry.run("report", params) is None
    assert json.loads(result_file.read_text()) == {"stale": True}  # rank 0's file

    monkeypatch.setenv("RANK", "0")
    outcome = entry.run("report", params)
    assert outcome is not None and outcome["model_version"] == "3"
    assert json.loads(result_file.read_text()) == outcome
    assert outcome["results"] == str(Path(params.out_dir) / "report_metrics.json")
    assert outcome["model_dir"] == str(params.out_dir / "model")
    assert outcome["params"] == to_json(params)
    assert [c.config().max_steps for c in calls] == [3, 3]  # every rank, the same config


def test_a_failing_rank0_leaves_no_stale_outcome(monkeypatch, tmp_path):
    def fails(params: Any) -> Any:
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setitem(entry.STAGES, "pretrain", entry.EntryStage(pretrain.Params, fails))
    params = pretrain.Params(data_dir=tmp_path / "d", out_dir=tmp_path / "o")
    entry.result_file(params).parent.mkdir(parents=True)
    entry.result_file(params).write_text('{"encoder_dir": "/old"}')
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(RuntimeError, match="out of memory"):
        entry.run("pretrain", params)
    assert not entry.result_file(params).exists()


def test_under_mpirun_the_ompi_rank_decides(monkeypatch, tmp_path):
    calls = _fake_stage(monkeypatch, "report", _report_model)
    _without_torch_variables(monkeypatch)
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "1")
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    monkeypatch.setenv("MASTER_ADDR", "job-launcher-0-0.job")
    params = report.Params(Path("/d"), Path("/e"), tmp_path / "o")
    assert entry.run("report", params) is None
    assert os.environ["RANK"] == "1" and os.environ["WORLD_SIZE"] == "2"
    assert len(calls) == 1 and not entry.result_file(params).exists()

    _without_torch_variables(monkeypatch)
    monkeypatch.delenv("MASTER_ADDR")
    with pytest.raises(RuntimeError, match="MASTER_ADDR"):
        entry.run("report", params)


def test_main_parses_the_command_line_and_runs_the_stage(monkeypatch, tmp_path):
    calls = _fake_stage(monkeypatch, "pretrain", _encoder)
    params = pretrain.Params(data_dir=tmp_path / "d", out_dir=tmp_path / "o", seed=4)
    monkeypatch.setenv("RANK", "0")
    entry.main(["pretrain", *to_argv(params)])
    assert calls == [params]
    assert json.loads(entry.result_file(params).read_text())["encoder_version"] == "3"


# --- two torchrun "nodes" behind the launcher ----------------------------------------------------


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
    params = pretrain.Params.in_runs_dir(
        Path(shared.checkpoint_mount) / "runs",
        data_dir=Path(shared.data_mount) / "ds",
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
        job_env = {e["name"]: e["value"] for e in trainer["env"] if "value" in e}
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
    outcome = launch(
        "pretrain",
        params,
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
    assert encoder == Path(params.out_dir) / "encoder"
    assert (encoder / "config.json").is_file() and (encoder / "model.safetensors").is_file()
    # One world of two ranks, not two worlds of one: exactly one rank registered an encoder.
    from mlflow import MlflowClient

    from cxrflow.tags import ENCODER_MODEL

    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    versions = client.search_model_versions(f"name='{ENCODER_MODEL}'")
    assert [str(v.version) for v in versions] == [outcome["encoder_version"]] == ["1"]
    assert outcome["params"] == to_json(params)
    (job,) = cluster.created
    assert job["spec"]["trainer"]["command"][:6] == [
        "torchrun",
        "--no-python",
        "python",
        "-m",
        entry.MODULE,
        "pretrain",
    ]
