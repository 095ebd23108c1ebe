"""Multi-node report fine-tuning through the shared launcher, against the in-memory API (fake_kube).

The same JobLauncher as pre-training (test_launcher.py covers its log following, time limit,
clean-up and retries); here: the report job objects (DeepSpeed runtime, PyTorchJob fallback),
their world size, the success path returning the report model, the failure path.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from cxrflow.cluster import entry
from cxrflow.cluster.config import ClusterConfigError, GpuPool, JobStorage
from cxrflow.cluster.launcher import (
    JobFailedError,
    MultiNodeSettings,
    ReportModelMissingError,
    job_name,
)
from cxrflow.cluster.pod_logs import rank0_pod
from cxrflow.cluster.stage_specs import DEFAULT_REPORT_ZERO, build_job
from cxrflow.stages import report
from cxrflow.stages.contract import to_json
from tests.cluster.fake_kube import (
    COMPLETE_TRAINJOB,
    FAILED_TRAINJOB,
    IMAGE,
    OTHER_LOGS,
    POOL,
    RANK0_LOGS,
    RUNNING_PYTORCHJOB,
    RUNNING_TRAINJOB,
    SUCCEEDED_PYTORCHJOB,
    FakeCluster,
    job_command,
    launch_on,
    node_params,
)


@pytest.fixture
def shared(tmp_path) -> JobStorage:
    """Mount points of the job's volumes, as local directories."""
    (tmp_path / "data" / "ds").mkdir(parents=True)
    (tmp_path / "ckpt" / "encoder").mkdir(parents=True)
    return JobStorage(data_mount=str(tmp_path / "data"), checkpoint_mount=str(tmp_path / "ckpt"))


def _args(shared: JobStorage, **kw: Any) -> report.Params:
    values: dict[str, Any] = dict(
        data_dir=Path(shared.data_mount) / "ds",
        encoder_dir=Path(shared.checkpoint_mount) / "encoder",
        data_version="0123456789abcdef",
        encoder_version="7",
        preset="paper",  # global batch 128, 32 per GPU
        steps=20,
        pipeline_run="training-run-42",
    )
    values.update(kw)
    return report.Params.in_runs_dir(Path(shared.checkpoint_mount) / "runs", **values)


def _node_args(job: dict[str, Any]) -> report.Params:
    """The parameters the job's command gives `python -m cxrflow.cluster.entry report`."""
    return node_params(job, "report")


def _rank0_saves_the_model(job: dict[str, Any]) -> None:
    """What rank 0 leaves on the checkpoint volume when the stage succeeds."""
    args = _node_args(job)
    model = Path(args.out_dir) / "model"
    model.mkdir(parents=True, exist_ok=True)
    (model / "config.json").write_text('{"model_type": "llava"}')
    (model / "model.safetensors").write_bytes(b"weights")
    (Path(args.out_dir) / "report_metrics.json").write_text("{}")
    entry.result_file(args).write_text(
        json.dumps(
            {
                "model_dir": str(model),
                "model_version": "3",
                "model_uri": "models:/cxrflow-report-generator/3",
                "mlflow_run_id": "abc",
                "results": str(Path(args.out_dir) / "report_metrics.json"),
                "table_markdown": "| model | BLEU |",
                "params": to_json(args),
            }
        )
    )


def _launch(cluster: FakeCluster, args: report.Params, shared: JobStorage, **kw: Any):
    return launch_on(cluster, "report", args, shared, **kw)


def _job(shared: JobStorage, nodes: int, backend: str = "trainjob", gpus: int = 1, **kw: Any):
    args = _args(shared, **kw)
    return build_job(
        "report",
        args,
        MultiNodeSettings(nodes=nodes, gpus_per_node=gpus, storage=shared),
        name=job_name("report", args.pipeline_run, str(args.out_dir)),
        namespace="ml",
        image=IMAGE,
        backend=backend,
        pool=GpuPool(),
        env={"MLFLOW_TRACKING_URI": "http://mlflow:5000"},
    )


# --- success ---------------------------------------------------------------------------------


def test_deepspeed_trainjob_success_streams_the_launcher_and_returns_the_report_model(
    shared, caplog
):
    caplog.set_level(logging.INFO)
    cluster = FakeCluster(
        [{}, RUNNING_TRAINJOB, RUNNING_TRAINJOB, RUNNING_TRAINJOB, COMPLETE_TRAINJOB],
        rank_logs={"rank0": RANK0_LOGS, "other": OTHER_LOGS},
        config_maps={"cxrflow-gpu-pool": POOL},  # trainer-runtime: torch-distributed (pretrain)
        on_create=_rank0_saves_the_model,
    )
    args = _args(shared)
    outcome = _launch(cluster, args, shared)

    (job,) = cluster.created
    name = job["metadata"]["name"]
    assert job["kind"] == "TrainJob"
    assert name == job_name("report", args.pipeline_run, str(args.out_dir))
    assert job["metadata"]["labels"]["cxrflow.io/stage"] == "report"
    assert job["spec"]["runtimeRef"] == {
        "apiGroup": "trainer.kubeflow.org",
        "kind": "ClusterTrainingRuntime",
        "name": "deepspeed-distributed",
    }
    trainer = job["spec"]["trainer"]
    assert trainer["numNodes"] == 2 and trainer["numProcPerNode"] == 2
    command = trainer["command"]
    assert command[:3] == ["mpirun", "--hostfile", "/etc/mpi/hostfile"]
    exports = [command[i + 1] for i, part in enumerate(command) if part == "-x"]
    assert f"MASTER_ADDR={name}-launcher-0-0.{name}" in exports
    assert "MLFLOW_TRACKING_URI" in exports and "CXRFLOW_WORLD_SIZE" in exports
    assert not any("AWS_" in e for e in exports)
    # Every node runs the same stage arguments, with ZeRO-2 as the paper preset names none.
    assert _node_args(job) == replace(args, deepspeed=DEFAULT_REPORT_ZERO)
    env = {e["name"]: e["value"] for e in trainer["env"] if "value" in e}
    assert env["CXRFLOW_WORLD_SIZE"] == "4" and "AWS_SECRET_ACCESS_KEY" not in env
    # The launcher pod is rank 0 under MPI: its lines, once each, and nobody else's.
    streamed = [r.getMessage() for r in caplog.records if r.name.endswith("launcher.job")]
    assert streamed == [f"[{name}-launcher-0-0-x0z] {line}" for _, line in RANK0_LOGS]
    assert cluster.deleted == [name]
    assert outcome["model_dir"] == f"{args.out_dir}/model"
    assert outcome["model_version"] == "3"
    assert outcome["results"].endswith("report_metrics.json")
    assert outcome["params"] == to_json(replace(args, deepspeed=DEFAULT_REPORT_ZERO))
    assert outcome["job"] == f"TrainJob ml/{name}"


def test_pytorchjob_fallback_runs_torchrun_and_returns_the_report_model(shared):
    cluster = FakeCluster(
        [{}, RUNNING_PYTORCHJOB, SUCCEEDED_PYTORCHJOB],
        rank_logs={"rank0": RANK0_LOGS},
        config_maps={"cxrflow-gpu-pool": {**POOL, "backend": "pytorchjob"}},
        on_create=_rank0_saves_the_model,
    )
    args = _args(shared, deepspeed="zero3")
    outcome = _launch(cluster, args, shared, nodes=4, gpus_per_node=1, image="")
    (job,) = cluster.created
    assert job["kind"] == "PyTorchJob"
    assert job_command(job)[0] == "torchrun" and "--nnodes=4:4" in job_command(job)
    assert _node_args(job) == args  # an explicit ZeRO stage is kept
    assert outcome["model_version"] == "3"


def test_runtime_from_the_settings_or_the_configmap(shared):
    for settings_runtime, pool, expected in [
        ("torch-distributed", POOL, "torch-distributed"),
        ("", {**POOL, "report-trainer-runtime": "torch-distributed"}, "torch-distributed"),
    ]:
        cluster = FakeCluster(
            [COMPLETE_TRAINJOB],
            config_maps={"cxrflow-gpu-pool": pool},
            on_create=_rank0_saves_the_model,
        )
        _launch(cluster, _args(shared), shared, runtime=settings_runtime)
        (job,) = cluster.created
        assert job["spec"]["runtimeRef"]["name"] == expected
        assert job["spec"]["trainer"]["command"][:2] == ["torchrun", "--no-python"]


# --- failure -----------------------------------------------------------------------------------


def test_failed_job_fails_the_step_with_the_jobs_message(shared):
    cluster = FakeCluster(
        [RUNNING_TRAINJOB, RUNNING_TRAINJOB, FAILED_TRAINJOB],
        rank_logs={"rank0": [(1.0, "step 1"), (40.0, "RuntimeError: CUDA out of memory")]},
        config_maps={"cxrflow-gpu-pool": POOL},
        on_create=_rank0_saves_the_model,  # even with files there, a failed job is a failure
    )
    with pytest.raises(JobFailedError) as err:
        _launch(cluster, _args(shared), shared)
    (job,) = cluster.created
    message = str(err.value)
    assert f"TrainJob ml/{job['metadata']['name']} failed" in message
    assert "TrainingRuntimeFailed" in message and "exceeded its backoff limit" in message
    assert "CUDA out of memory" in message
    assert cluster.deleted == [job["metadata"]["name"]]


def test_succeeded_job_without_the_model_is_an_error(shared):
    cluster = FakeCluster([COMPLETE_TRAINJOB], config_maps={"cxrflow-gpu-pool": POOL})
    with pytest.raises(ReportModelMissingError, match=entry.RESULT_FILE):
        _launch(cluster, _args(shared), shared)

    def no_weights(job: dict[str, Any]) -> None:
        _rank0_saves_the_model(job)
        (Path(_node_args(job).out_dir) / "model" / "model.safetensors").unlink()

    cluster = FakeCluster(
        [COMPLETE_TRAINJOB], config_maps={"cxrflow-gpu-pool": POOL}, on_create=no_weights
    )
    with pytest.raises(ReportModelMissingError, match=r"lacks \*\.safetensors"):
        _launch(cluster, _args(shared), shared)

    def no_metrics(job: dict[str, Any]) -> None:
        _rank0_saves_the_model(job)
        (Path(_node_args(job).out_dir) / "report_metrics.json").unlink()

    cluster = FakeCluster(
        [COMPLETE_TRAINJOB], config_maps={"cxrflow-gpu-pool": POOL}, on_create=no_metrics
    )
    with pytest.raises(ReportModelMissingError, match=r"report metrics .* are missing after"):
        _launch(cluster, _args(shared), shared)


def test_paths_off_the_shared_volumes_and_one_node_are_refused(shared, tmp_path):
    cluster = FakeCluster([COMPLETE_TRAINJOB], config_maps={"cxrflow-gpu-pool": POOL})
    with pytest.raises(ClusterConfigError, match=r"^encoder_dir: "):
        _launch(cluster, _args(shared, encoder_dir=tmp_path / "elsewhere"), shared)
    with pytest.raises(ClusterConfigError, match=r"^lm_dir: "):
        _launch(cluster, _args(shared, lm_dir=tmp_path / "llama"), shared)
    with pytest.raises(ClusterConfigError, match=r"^nodes: "):
        _launch(cluster, _args(shared), shared, nodes=1)
    assert cluster.created == []


# --- the job objects for 1, 2 and 4 nodes -------------------------------------------------------


@pytest.mark.parametrize("nodes", [1, 2, 4])
@pytest.mark.parametrize("backend", ["trainjob", "pytorchjob"])
def test_world_size_is_consistent_for_1_2_4_nodes(shared, nodes, backend):
    job = _job(shared, nodes=nodes, backend=backend, gpus=1)
    if backend == "trainjob":
        trainer = job["spec"]["trainer"]
        assert job["spec"]["runtimeRef"]["name"] == "deepspeed-distributed"
        assert trainer["numNodes"] == nodes and trainer["numProcPerNode"] == 1
        assert trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == "1"
        env = trainer["env"]
        patch = job["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]
        assert [j["name"] for j in patch["replicatedJobs"]] == ["launcher", "node"]
    else:
        spec = job["spec"]
        replicas = spec["pytorchReplicaSpecs"]
        assert 1 + replicas.get("Worker", {}).get("replicas", 0) == nodes
        assert spec["elasticPolicy"]["minReplicas"] == spec["elasticPolicy"]["maxReplicas"]
        assert spec["elasticPolicy"]["maxReplicas"] == nodes
        container = replicas["Master"]["template"]["spec"]["containers"][0]
        assert f"--nnodes={nodes}:{nodes}" in container["command"]
        env = container["env"]
    assert {e["name"]: e["value"] for e in env if "value" in e}["CXRFLOW_WORLD_SIZE"] == str(nodes)
    # The global batch of 128 splits evenly: 32 per GPU, accumulation 4 / nodes.
    assert _node_args(job).config().accumulation_steps(nodes) == 4 // nodes


def test_global_batch_must_split_over_the_world(shared):
    with pytest.raises(ClusterConfigError, match=r"^global_batch_size: .*4 nodes x 2 GPUs"):
        _job(shared, nodes=4, gpus=2)  # 128 over 8 GPUs x 32 per GPU
    with pytest.raises(ClusterConfigError, match=r"^global_batch_size: "):
        _job(shared, nodes=2, preset="tiny")  # the CPU preset: one batch of 8 on one device


def test_rank0_of_the_deepspeed_runtime_is_the_launcher_pod(shared):
    pod = rank0_pod(_job(shared, nodes=2))
    assert "jobset.sigs.k8s.io/replicatedjob-name=launcher" in pod.label_selector
    assert pod.container == "node"
