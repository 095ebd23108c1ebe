"""The report entry point: arguments, MPI environment, rank 0 versus the other ranks."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from cxrflow.cluster import report_entry
from cxrflow.cluster.report_entry import ReportArgs, parse_args, torch_env_from_mpi


def test_arguments_round_trip_and_name_the_runs_folder_as_before():
    args = ReportArgs.in_runs_dir(
        "/checkpoints/runs",
        data_dir="/data/ds",
        encoder_dir="/checkpoints/enc",
        data_version="0123456789abcdef0123",
        encoder_version="7",
        preset="paper",
        steps=5,
        deepspeed="zero3",
    )
    assert args.out_dir == "/checkpoints/runs/report-0123456789ab-7-paper"
    assert parse_args(args.to_argv()) == args
    config = args.config()
    assert config.max_steps == 5 and config.deepspeed == "zero3"
    assert ReportArgs("d", "e", "o", "v").config().deepspeed == ""  # the tiny preset's


def test_mpi_ranks_become_torch_distributed_variables():
    env = {
        "OMPI_COMM_WORLD_RANK": "3",
        "OMPI_COMM_WORLD_SIZE": "4",
        "OMPI_COMM_WORLD_LOCAL_RANK": "1",
        "OMPI_COMM_WORLD_LOCAL_SIZE": "2",
        "MASTER_ADDR": "job-launcher-0-0.job",
    }
    assert torch_env_from_mpi(env)
    assert (env["RANK"], env["WORLD_SIZE"], env["LOCAL_RANK"]) == ("3", "4", "1")
    assert env["LOCAL_WORLD_SIZE"] == "2" and env["MASTER_PORT"] == "29500"
    torchrun = {"RANK": "1", "OMPI_COMM_WORLD_RANK": "0"}
    assert not torch_env_from_mpi(torchrun) and torchrun["RANK"] == "1"  # torchrun wins
    assert not torch_env_from_mpi({})  # a lone process
    with pytest.raises(RuntimeError, match="MASTER_ADDR"):
        torch_env_from_mpi({"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "2"})


def _stage(calls: list[dict], tmp_path: Path):
    def run_report_stage(data_dir, encoder_dir, **kw):
        calls.append({"data_dir": data_dir, "encoder_dir": encoder_dir, **kw})
        import os

        if os.environ.get("RANK", "0") != "0":
            raise SystemExit(0)  # what the stage does on ranks > 0 after training
        model = kw["out_dir"] / "model"
        model.mkdir(parents=True, exist_ok=True)
        return SimpleNamespace(
            model_dir=model,
            model_version="3",
            model_uri="models:/cxrflow-report-generator/3",
            mlflow_run_id="abc",
            table_markdown="| table |",
        )

    return run_report_stage


def test_rank0_writes_the_outcome_other_ranks_only_train(monkeypatch, tmp_path):
    import cxrflow.report.stage as stage

    calls: list[dict] = []
    monkeypatch.setattr(stage, "run_report_stage", _stage(calls, tmp_path))
    args = ReportArgs.in_runs_dir(
        str(tmp_path), data_dir="/d", encoder_dir="/e", data_version="v", steps=3
    )
    args.result_file().parent.mkdir(parents=True)
    args.result_file().write_text('{"stale": true}')

    monkeypatch.setenv("RANK", "1")
    assert report_entry.run(args) is None
    assert json.loads(args.result_file().read_text()) == {"stale": True}  # rank 0's file

    monkeypatch.setenv("RANK", "0")
    outcome = report_entry.run(args)
    assert outcome is not None and outcome["model_version"] == "3"
    assert json.loads(args.result_file().read_text()) == outcome
    assert outcome["results"] == str(Path(args.out_dir) / "report_metrics.json")
    assert [c["config"].max_steps for c in calls] == [3, 3]  # every rank, the same config
