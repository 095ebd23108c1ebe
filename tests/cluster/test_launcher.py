"""The multi-node launcher against an in-memory stand-in of the Kubernetes API (fake_kube).

What the stand-in cannot show (a controller scheduling pods, a real rendezvous) is covered
elsewhere: the job objects by tests/cluster/test_jobs.py, the command under torchrun below.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from cxrflow.cluster import entry
from cxrflow.cluster.config import ClusterConfigError, GpuPool, JobStorage
from cxrflow.cluster.launcher import (
    EncoderMissingError,
    JobFailedError,
    JobLauncher,
    JobTimeoutError,
    LaunchError,
    MultiNodeSettings,
    check_shared_paths,
    job_name,
)
from cxrflow.cluster.pod_logs import rank0_pod
from cxrflow.cluster.stage_specs import SPECS, build_job
from cxrflow.ssl.initialisation import EncoderInit
from cxrflow.stages import pretrain, report
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
    api_error,
    launch_on,
    node_params,
)


@pytest.fixture
def shared(tmp_path) -> JobStorage:
    """Mount points of the job's volumes, as local directories."""
    (tmp_path / "data" / "ds").mkdir(parents=True)
    (tmp_path / "ckpt").mkdir()
    return JobStorage(data_mount=str(tmp_path / "data"), checkpoint_mount=str(tmp_path / "ckpt"))


def _args(shared: JobStorage, **kw: Any) -> pretrain.Params:
    values: dict[str, Any] = dict(
        data_dir=Path(shared.data_mount) / "ds",
        data_version="0123456789abcdef",
        steps=20,
        batch_size=32,
        pipeline_run="training-run-42",
    )
    values.update(kw)
    return pretrain.Params.in_runs_dir(Path(shared.checkpoint_mount) / "runs", **values)


def _node_args(job: dict[str, Any]) -> pretrain.Params:
    """The parameters the job's command gives `python -m cxrflow.cluster.entry pretrain`."""
    return node_params(job, "pretrain")


def _rank0_writes_outputs(job: dict[str, Any]) -> None:
    """What rank 0 leaves on the checkpoint volume when the stage succeeds."""
    args = _node_args(job)
    encoder = Path(args.out_dir) / "encoder"
    encoder.mkdir(parents=True, exist_ok=True)
    (encoder / "config.json").write_text('{"model_type": "dinov2"}')
    (encoder / "model.safetensors").write_bytes(b"weights")
    entry.result_file(args).write_text(
        json.dumps(
            {
                "encoder_dir": str(encoder),
                "encoder_version": "7",
                "mlflow_run_id": "abc",
                "metrics": {},
                "params": to_json(args),
            }
        )
    )


def _launch(cluster: FakeCluster, args: pretrain.Params, shared: JobStorage, **kw: Any):
    return launch_on(cluster, "pretrain", args, shared, **kw)


def _streamed(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "cxrflow.cluster.launcher.job"]


# --- success ---------------------------------------------------------------------------------


def test_trainjob_success_creates_the_job_streams_rank0_and_returns_the_encoder(shared, caplog):
    caplog.set_level(logging.INFO)
    cluster = FakeCluster(
        [{}, RUNNING_TRAINJOB, RUNNING_TRAINJOB, RUNNING_TRAINJOB, COMPLETE_TRAINJOB],
        rank_logs={"rank0": RANK0_LOGS, "other": OTHER_LOGS},
        config_maps={"cxrflow-gpu-pool": POOL},
        on_create=_rank0_writes_outputs,
    )
    args = _args(shared)
    outcome = _launch(cluster, args, shared)

    (job,) = cluster.created
    assert job["apiVersion"] == "trainer.kubeflow.org/v1alpha1" and job["kind"] == "TrainJob"
    assert job["metadata"]["namespace"] == "ml"
    assert job["metadata"]["name"] == job_name("pretrain", args.pipeline_run, str(args.out_dir))
    assert job["metadata"]["labels"]["cxrflow.io/stage"] == "pretrain"
    trainer = job["spec"]["trainer"]
    assert job["spec"]["runtimeRef"]["name"] == "torch-distributed"
    assert trainer["numNodes"] == 2 and trainer["numProcPerNode"] == 2 and trainer["image"] == IMAGE
    assert trainer["command"][:2] == ["torchrun", "--no-python"]
    assert _node_args(job) == args  # every node runs the same stage arguments
    env = {e["name"]: e["value"] for e in trainer["env"] if "value" in e}
    assert env["MLFLOW_TRACKING_URI"] == "http://cxrflow-mlflow.cxrflow:5000"
    assert env["CXRFLOW_WORLD_SIZE"] == "4"
    assert "AWS_SECRET_ACCESS_KEY" not in env  # credentials never enter a job spec
    pod = job["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"][
        "replicatedJobs"
    ][0]["template"]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"cloud.example/pool": "a100"}  # from the ConfigMap

    # Every rank-0 line once, in order; nothing from the other nodes.
    assert _streamed(caplog) == [
        f"[{cluster_pod}] {line}"
        for cluster_pod in [f"{job['metadata']['name']}-node-0-0-x0z"]
        for _, line in RANK0_LOGS
    ]
    # The job is gone afterwards, and the encoder is where the nodes wrote it.
    assert cluster.deleted == [job["metadata"]["name"]]
    assert outcome["encoder_dir"] == f"{args.out_dir}/encoder"
    assert outcome["encoder_version"] == "7"
    assert outcome["params"] == to_json(args)
    assert outcome["job"] == f"TrainJob ml/{job['metadata']['name']}"
    assert any("is Succeeded" in r.getMessage() for r in caplog.records)


def test_pytorchjob_backend_from_the_configmap_follows_the_master_pod(shared, caplog):
    caplog.set_level(logging.INFO)
    cluster = FakeCluster(
        [{}, RUNNING_PYTORCHJOB, RUNNING_PYTORCHJOB, RUNNING_PYTORCHJOB, SUCCEEDED_PYTORCHJOB],
        rank_logs={"rank0": RANK0_LOGS, "other": OTHER_LOGS},
        config_maps={"cxrflow-gpu-pool": {**POOL, "backend": "pytorchjob"}},
        on_create=_rank0_writes_outputs,
    )
    args = _args(shared)
    outcome = _launch(cluster, args, shared, nodes=4, gpus_per_node=8, image="")

    (job,) = cluster.created
    assert job["kind"] == "PyTorchJob" and job["apiVersion"] == "kubeflow.org/v1"
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert replicas["Master"]["replicas"] + replicas["Worker"]["replicas"] == 4
    assert replicas["Master"]["template"]["spec"]["containers"][0]["image"] == IMAGE
    assert _node_args(job) == args
    assert [line.split("] ", 1)[1] for line in _streamed(caplog)] == [t for _, t in RANK0_LOGS]
    assert all(r["container"] == "pytorch" for r in cluster.log_reads)
    assert outcome["encoder_version"] == "7"


def test_logs_wait_for_the_pod_and_overlapping_reads_emit_each_line_once(shared):
    lines: list[str] = []
    cluster = FakeCluster(
        [{}] + [RUNNING_TRAINJOB] * 8 + [COMPLETE_TRAINJOB],
        rank_logs={"rank0": [(50.0 + t, line) for t, line in RANK0_LOGS]},
        pods_start_after_s=45.0,  # the pods are Pending for the first polls
        log_latency_s=[0.0, 4.0, 0.5, 6.0],  # the kubelet serves some reads late
    )
    job = _job(shared, nodes=2)
    launcher = JobLauncher(
        cluster,
        cluster,
        poll_interval_s=20,
        clock=cluster.clock,
        sleep=cluster.sleep,
        emit=lambda pod, line: lines.append(line),
    )
    result = launcher.run(job)
    assert lines == [t for _, t in RANK0_LOGS]
    assert result.log_lines == len(RANK0_LOGS)
    reads = [r["since_seconds"] for r in cluster.log_reads]
    assert reads[0] is None and all(s is not None and s >= 20 for s in reads[1:])


# --- failure, timeout, clean-up ----------------------------------------------------------------


def _job(shared: JobStorage, nodes: int, backend: str = "trainjob", gpus: int = 1, **kw: Any):
    args = _args(shared, **kw)
    return build_job(
        "pretrain",
        args,
        MultiNodeSettings(nodes=nodes, gpus_per_node=gpus, storage=shared),
        name=job_name("pretrain", args.pipeline_run, str(args.out_dir)),
        namespace="ml",
        image=IMAGE,
        backend=backend,
        pool=GpuPool(),
        env={},
    )


def test_failed_job_fails_the_step_with_its_message_and_last_lines(shared):
    cluster = FakeCluster(
        [RUNNING_TRAINJOB, RUNNING_TRAINJOB, FAILED_TRAINJOB],
        rank_logs={"rank0": [(1.0, "step 1"), (40.0, "RuntimeError: CUDA out of memory")]},
        on_create=_rank0_writes_outputs,  # even with files there, a failed job is a failure
    )
    job = _job(shared, nodes=2)
    name = job["metadata"]["name"]
    with pytest.raises(JobFailedError) as err:
        JobLauncher(cluster, cluster, clock=cluster.clock, sleep=cluster.sleep).run(job)
    message = str(err.value)
    assert f"TrainJob ml/{name} failed" in message
    assert "TrainingRuntimeFailed" in message and "exceeded its backoff limit" in message
    assert "CUDA out of memory" in message  # the rank-0 pod's last lines
    assert cluster.deleted == [name]


def test_failed_job_is_kept_when_asked(shared):
    cluster = FakeCluster([FAILED_TRAINJOB])
    job = _job(shared, nodes=2)
    launcher = JobLauncher(
        cluster, cluster, keep_job=True, clock=cluster.clock, sleep=cluster.sleep
    )
    with pytest.raises(JobFailedError):
        launcher.run(job)
    assert cluster.deleted == []


def test_launch_raises_on_a_failed_job_and_returns_nothing(shared):
    cluster = FakeCluster(
        [RUNNING_TRAINJOB, FAILED_TRAINJOB], config_maps={"cxrflow-gpu-pool": POOL}
    )
    with pytest.raises(JobFailedError, match="exceeded its backoff limit"):
        _launch(cluster, _args(shared), shared)


def test_timeout_names_the_job_and_deletes_it(shared):
    cluster = FakeCluster([RUNNING_TRAINJOB])  # never finishes
    job = _job(shared, nodes=4)
    launcher = JobLauncher(
        cluster,
        cluster,
        poll_interval_s=60,
        timeout_s=600,
        clock=cluster.clock,
        sleep=cluster.sleep,
    )
    with pytest.raises(JobTimeoutError, match=rf"TrainJob ml/{job['metadata']['name']} did not"):
        launcher.run(job)
    assert 600 <= cluster.now <= 660
    assert cluster.deleted == [job["metadata"]["name"]]


def test_cancellation_deletes_the_job(shared):
    cluster = FakeCluster([RUNNING_TRAINJOB])

    def cancelled(seconds: float) -> None:
        raise SystemExit(143)  # what raise_on_sigterm turns SIGTERM into

    job = _job(shared, nodes=2)
    with pytest.raises(SystemExit):
        JobLauncher(cluster, cluster, clock=cluster.clock, sleep=cancelled).run(job)
    assert cluster.deleted == [job["metadata"]["name"]]


def test_succeeded_job_without_an_encoder_is_an_error(shared):
    cluster = FakeCluster([COMPLETE_TRAINJOB], config_maps={"cxrflow-gpu-pool": POOL})
    with pytest.raises(EncoderMissingError, match=entry.RESULT_FILE):
        _launch(cluster, _args(shared), shared)

    def no_weights(job: dict[str, Any]) -> None:
        _rank0_writes_outputs(job)
        (Path(_node_args(job).out_dir) / "encoder" / "model.safetensors").unlink()

    cluster = FakeCluster(
        [COMPLETE_TRAINJOB], config_maps={"cxrflow-gpu-pool": POOL}, on_create=no_weights
    )
    with pytest.raises(EncoderMissingError, match=r"encoder .* lacks model\.safetensors after"):
        _launch(cluster, _args(shared), shared)


def test_refused_job_reports_the_api_message(shared):
    class Refusing(FakeCluster):
        def create_namespaced_custom_object(self, *a, **kw):
            raise api_error(422, "Unprocessable Entity", 'TrainJob "x" is invalid: spec.trainer')

    cluster = Refusing([])
    with pytest.raises(LaunchError, match=r"could not create TrainJob .*422.*spec\.trainer"):
        JobLauncher(cluster, cluster, clock=cluster.clock, sleep=cluster.sleep).run(
            _job(shared, nodes=2)
        )


# --- a retried step finds the job of its previous attempt ---------------------------------------


def test_retried_step_follows_the_running_job_instead_of_starting_another(shared):
    cluster = FakeCluster([RUNNING_TRAINJOB, COMPLETE_TRAINJOB])
    job = _job(shared, nodes=2)
    cluster.create_namespaced_custom_object(
        "trainer.kubeflow.org", "v1alpha1", "ml", "trainjobs", job
    )
    JobLauncher(cluster, cluster, clock=cluster.clock, sleep=cluster.sleep).run(job)
    assert len(cluster.created) == 1


def test_retried_step_replaces_a_failed_job(shared):
    cluster = FakeCluster([RUNNING_TRAINJOB, COMPLETE_TRAINJOB], delete_takes_reads=2)
    job = _job(shared, nodes=2)
    old = {**job, "status": FAILED_TRAINJOB}
    cluster.create_namespaced_custom_object(
        "trainer.kubeflow.org", "v1alpha1", "ml", "trainjobs", old
    )
    JobLauncher(cluster, cluster, poll_interval_s=5, clock=cluster.clock, sleep=cluster.sleep).run(
        job
    )
    assert len(cluster.created) == 2 and "status" not in cluster.created[1]
    assert cluster.deleted == [job["metadata"]["name"]] * 2  # the failed one, then the new one


# --- the job objects for 1, 2 and 4 nodes -------------------------------------------------------


@pytest.mark.parametrize("nodes", [1, 2, 4])
@pytest.mark.parametrize("backend", ["trainjob", "pytorchjob"])
def test_world_size_is_consistent_for_1_2_4_nodes(shared, nodes, backend):
    gpus = 8
    job = _job(shared, nodes=nodes, backend=backend, gpus=gpus, batch_size=640)
    if backend == "trainjob":
        trainer = job["spec"]["trainer"]
        assert trainer["numNodes"] == nodes and trainer["numProcPerNode"] == gpus
        env = trainer["env"]
        assert trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == str(gpus)
    else:
        spec = job["spec"]
        replicas = spec["pytorchReplicaSpecs"]
        workers = replicas.get("Worker", {}).get("replicas", 0)
        assert replicas["Master"]["replicas"] == 1 and 1 + workers == nodes
        policy = spec["elasticPolicy"]
        assert policy["minReplicas"] == policy["maxReplicas"] == nodes
        assert spec["nprocPerNode"] == str(gpus)
        container = replicas["Master"]["template"]["spec"]["containers"][0]
        assert f"--nnodes={nodes}:{nodes}" in container["command"]
        assert f"--nproc-per-node={gpus}" in container["command"]
        env = container["env"]
    plain = {e["name"]: e["value"] for e in env if "value" in e}
    assert plain["CXRFLOW_WORLD_SIZE"] == str(nodes * gpus)
    assert _node_args(job).batch_size == 640  # the global batch, split over nodes x gpus


def test_global_batch_must_split_over_the_world(shared):
    with pytest.raises(ClusterConfigError, match=r"^batch_size: 30 .* world size 8"):
        _job(shared, nodes=4, gpus=2, batch_size=30)


def test_rank0_pod_selectors_follow_the_controllers_labels(shared):
    trainjob = rank0_pod(_job(shared, nodes=2))
    assert trainjob.container == "node"
    assert "jobset.sigs.k8s.io/replicatedjob-name=node" in trainjob.label_selector
    assert "batch.kubernetes.io/job-completion-index=0" in trainjob.label_selector
    pytorch = rank0_pod(_job(shared, nodes=2, backend="pytorchjob"))
    assert pytorch.container == "pytorch"
    assert "training.kubeflow.org/replica-type=master" in pytorch.label_selector


# --- paths the job's pods cannot see are refused before anything is created -----------------------


def test_paths_off_the_shared_volumes_are_refused(shared, tmp_path):
    args = _args(shared)
    with pytest.raises(ClusterConfigError, match=r"^data_dir: "):
        check_shared_paths(shared, reads={"data_dir": str(tmp_path / "elsewhere")}, writes={})
    with pytest.raises(ClusterConfigError, match=r"^out_dir: .* checkpoint volume"):
        check_shared_paths(shared, reads={}, writes={"out_dir": f"{shared.data_mount}/runs"})
    cluster = FakeCluster([COMPLETE_TRAINJOB], config_maps={"cxrflow-gpu-pool": POOL})
    local = pretrain.Params.in_runs_dir(
        Path(".cxrflow/runs"), data_dir=args.data_dir, data_version="x"
    )
    with pytest.raises(ClusterConfigError, match=r"^out_dir: "):
        _launch(cluster, local, shared)
    elsewhere = dataclasses.replace(args, init=EncoderInit.parse(tmp_path / "elsewhere"))
    with pytest.raises(ClusterConfigError, match=r"^init: '.*elsewhere' is on neither"):
        _launch(cluster, elsewhere, shared)
    assert cluster.created == []


def test_shared_paths_take_paths_and_skip_unset_ones(shared, tmp_path):
    check_shared_paths(
        shared,
        reads={"data_dir": Path(shared.data_mount) / "ds", "init_from": None, "lm_dir": ""},
        writes={"out_dir": Path(shared.checkpoint_mount) / "runs" / "x"},
    )
    with pytest.raises(ClusterConfigError, match=r"^init_from: "):
        check_shared_paths(shared, reads={"init_from": tmp_path / "elsewhere"}, writes={})
    # a registry init names no file (the pods download it from MLflow): nothing to check
    registry = EncoderInit.parse("models:/cxrflow-encoder@champion")
    check_shared_paths(shared, reads={"init": registry.local_path}, writes={})
    with pytest.raises(ClusterConfigError, match=r"^out_dir: .* checkpoint volume"):
        check_shared_paths(shared, reads={}, writes={"out_dir": Path(shared.data_mount) / "runs"})


def test_one_node_is_not_a_job_and_an_image_is_required(shared):
    cluster = FakeCluster([COMPLETE_TRAINJOB])
    with pytest.raises(ClusterConfigError, match=r"^nodes: "):
        _launch(cluster, _args(shared), shared, nodes=1)
    with pytest.raises(ClusterConfigError, match=r"^image: "):
        _launch(cluster, _args(shared), shared, image="")  # and no ConfigMap
    assert cluster.created == []


def test_unknown_stages_and_another_stages_params_are_refused(shared):
    cluster = FakeCluster([COMPLETE_TRAINJOB], config_maps={"cxrflow-gpu-pool": POOL})
    with pytest.raises(ClusterConfigError, match=r"^stage: 'ingest' is not one of pretrain"):
        launch_on(cluster, "ingest", _args(shared), shared)
    other = report.Params(Path("/data/ds"), Path("/checkpoints/enc"), Path("/checkpoints/r"))
    with pytest.raises(ClusterConfigError, match=r"^params: Params is not .*pretrain\.Params"):
        _launch(cluster, other, shared)
    assert cluster.created == []


def test_pretrain_always_runs_on_the_torch_runtime(shared):
    """The pre-training entry reads torchrun's variables: neither the settings nor the
    ConfigMap's `trainer-runtime` change the runtime."""
    pool = {**POOL, "trainer-runtime": "deepspeed-distributed"}
    cluster = FakeCluster(
        [COMPLETE_TRAINJOB], config_maps={"cxrflow-gpu-pool": pool}, on_create=_rank0_writes_outputs
    )
    _launch(cluster, _args(shared), shared, runtime="deepspeed-distributed")
    (job,) = cluster.created
    assert job["spec"]["runtimeRef"]["name"] == "torch-distributed"
    assert job["spec"]["trainer"]["command"][:2] == ["torchrun", "--no-python"]


def test_every_spec_names_an_entry_stage_its_params_and_its_results_fields():
    results = {"pretrain": pretrain.Result, "report": report.Result}
    assert set(SPECS) == set(results)
    for name, spec in SPECS.items():
        assert spec.stage == name and spec.stage in entry.STAGES
        fields = {f.name for f in dataclasses.fields(entry.STAGES[spec.stage].params)}
        assert set(spec.reads) <= fields and {"out_dir", "pipeline_run"} <= fields
        outcome_keys = {f.name for f in dataclasses.fields(results[name])}
        assert spec.outputs and {o.key for o in spec.outputs} <= outcome_keys


def test_job_name_is_a_stable_valid_name():
    a = job_name("pretrain", "run-1", "/checkpoints/runs/x")
    assert a == job_name("pretrain", "run-1", "/checkpoints/runs/x")
    assert a != job_name("pretrain", "run-2", "/checkpoints/runs/x")
    assert a.startswith("cxrflow-pretrain-") and len(a) <= 40
