"""TrainJob and PyTorchJob builders: required fields, replica counts, rendezvous, GPU placement."""

from __future__ import annotations

import copy
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from cxrflow import __version__
from cxrflow.cluster import (
    ClusterConfigError,
    DistributedJobConfig,
    GpuPool,
    JobStorage,
    build_pytorchjob,
    build_trainjob,
)
from cxrflow.cluster.pytorchjob import rendezvous_host
from tests.cluster.conftest import venv_tool

NODES = (1, 2, 4)
GPUS = 8
IMAGE = "ghcr.io/cxrflow/cxrflow-cuda:0.1.0"
ARGS = ("pretrain", "--config", "/data/configs/pretrain.yaml")


def _cfg(nodes: int, **kw: Any) -> DistributedJobConfig:
    return DistributedJobConfig(
        name=f"pretrain-{nodes}n",
        image=IMAGE,
        args=ARGS,
        nodes=nodes,
        gpus_per_node=GPUS,
        env={"MLFLOW_TRACKING_URI": "http://cxrflow-mlflow.cxrflow.svc.cluster.local:5000"},
        **kw,
    )


def _pod(spec: dict[str, Any]) -> dict[str, Any]:
    """A Pod object around a pod spec, for schema validation of the fragments."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "check"}, "spec": spec}


def _assert_gpu_placement(pod_spec: dict[str, Any], pool: GpuPool) -> None:
    assert pod_spec["nodeSelector"] == {pool.node_selector_key: pool.node_selector_value}
    assert {
        "key": pool.taint_key,
        "operator": "Equal",
        "value": pool.taint_value,
        "effect": pool.taint_effect,
    } in pod_spec["tolerations"] or {
        "key": pool.taint_key,
        "operator": "Exists",
        "effect": pool.taint_effect,
    } in pod_spec["tolerations"]
    shm = next(v for v in pod_spec["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"]["medium"] == "Memory" and shm["emptyDir"]["sizeLimit"]


def _assert_shm_mounted(container: dict[str, Any]) -> None:
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/dev/shm"]["name"] == "dshm"
    assert mounts["/data"]["readOnly"] is True
    assert "/checkpoints" in mounts


# --- TrainJob (Kubeflow Trainer v2) ------------------------------------------------------------


@pytest.mark.parametrize("nodes", NODES)
@pytest.mark.parametrize("runtime", ["torch-distributed", "deepspeed-distributed"])
def test_trainjob_has_the_fields_the_api_requires(nodes, runtime):
    cfg = _cfg(nodes)
    job = build_trainjob(cfg, runtime=runtime)
    assert job["apiVersion"] == "trainer.kubeflow.org/v1alpha1" and job["kind"] == "TrainJob"
    assert job["metadata"]["name"] == cfg.name and job["metadata"]["namespace"] == "cxrflow"
    spec = job["spec"]
    assert spec["runtimeRef"]["name"] == runtime
    assert spec["runtimeRef"]["apiGroup"] == "trainer.kubeflow.org"
    trainer = spec["trainer"]
    assert trainer["numNodes"] == nodes and trainer["numProcPerNode"] == GPUS
    assert trainer["image"] == IMAGE
    for part in ("requests", "limits"):
        assert trainer["resourcesPerNode"][part]["nvidia.com/gpu"] == str(GPUS)
    env = {e["name"]: e["value"] for e in trainer["env"] if "value" in e}
    assert env["CXRFLOW_WORLD_SIZE"] == str(nodes * GPUS) == str(cfg.world_size)
    # MLflow credentials: each pod reads the Secret; no value is copied into the job.
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in trainer["env"] if "valueFrom" in e}
    assert refs == {
        "MLFLOW_TRACKING_USERNAME": {"name": "cxrflow-mlflow-auth", "key": "username"},
        "MLFLOW_TRACKING_PASSWORD": {"name": "cxrflow-mlflow-auth", "key": "password"},
    }
    assert trainer["command"][-len(ARGS) - 1 :] == ["cxrflow", *ARGS]
    if runtime == "torch-distributed":
        assert trainer["command"][:2] == ["torchrun", "--no-python"]
    else:
        assert trainer["command"][:3] == ["mpirun", "--hostfile", "/etc/mpi/hostfile"]
        # mpirun starts the other nodes' processes outside their container's environment.
        exported = trainer["command"][trainer["command"].index("-x") :]
        assert {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"} <= set(exported)


@pytest.mark.parametrize("nodes", NODES)
def test_trainjob_runtime_patches_place_pods_on_the_gpu_pool(nodes):
    cfg = _cfg(nodes)
    job = build_trainjob(cfg)
    (patch,) = job["spec"]["runtimePatches"]
    assert patch["manager"]
    (replicated,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert replicated["name"] == "node"
    template = replicated["template"]["spec"]["template"]
    assert template["metadata"]["labels"]["cxrflow.io/mlflow-client"] == "true"
    pod = template["spec"]
    _assert_gpu_placement(pod, cfg.gpu_pool)
    (container,) = pod["containers"]
    assert container["name"] == "node" and "env" not in container
    _assert_shm_mounted(container)
    assert pod["securityContext"]["runAsNonRoot"] is True
    # The fragment is a valid pod spec once the runtime supplies the container's image.
    full = copy.deepcopy(pod)
    full["containers"][0]["image"] = IMAGE
    kubernetes_validate.validate(_pod(full), "1.30.0", strict=True)


def test_deepspeed_runtime_patches_launcher_and_nodes_alike():
    job = build_trainjob(_cfg(2), runtime="deepspeed-distributed")
    (patch,) = job["spec"]["runtimePatches"]
    jobs = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert [j["name"] for j in jobs] == ["launcher", "node"]
    assert jobs[0]["template"] == jobs[1]["template"]


@pytest.mark.parametrize("nodes", NODES)
def test_trainjob_pod_template_overrides_for_trainer_2_1(nodes):
    cfg = _cfg(nodes)
    job = build_trainjob(cfg, override_api="podTemplateOverrides")
    assert "runtimePatches" not in job["spec"]
    (override,) = job["spec"]["podTemplateOverrides"]
    assert override["targetJobs"] == [{"name": "node"}]
    _assert_gpu_placement(override["spec"], cfg.gpu_pool)
    _assert_shm_mounted(override["spec"]["containers"][0])


@pytest.mark.parametrize("nodes", NODES)
def test_trainjob_matches_the_published_trainer_api_models(nodes):
    models = pytest.importorskip("kubeflow_trainer_api.models", reason="dev extra")
    for runtime in ("torch-distributed", "deepspeed-distributed"):
        job = build_trainjob(_cfg(nodes), runtime=runtime)
        # Unknown or misspelled fields would be dropped and wrong types refused: the round trip
        # through the Trainer's own models must give back exactly what we built.
        assert models.TrainerV1alpha1TrainJob.from_dict(job).to_dict() == job
    broken = build_trainjob(_cfg(nodes))
    del broken["spec"]["runtimeRef"]
    with pytest.raises(ValueError):
        models.TrainerV1alpha1TrainJob.from_dict(broken)
    typo = build_trainjob(_cfg(nodes))
    typo["spec"]["trainer"]["numNode"] = typo["spec"]["trainer"].pop("numNodes")
    assert models.TrainerV1alpha1TrainJob.from_dict(typo).to_dict() != typo


# --- PyTorchJob (Training Operator v1) ---------------------------------------------------------


@pytest.mark.parametrize("nodes", NODES)
def test_pytorchjob_replicas_world_size_and_rendezvous(nodes):
    cfg = _cfg(nodes)
    job = build_pytorchjob(cfg)
    assert job["apiVersion"] == "kubeflow.org/v1" and job["kind"] == "PyTorchJob"
    assert job["metadata"]["name"] == cfg.name and job["metadata"]["namespace"] == "cxrflow"
    spec = job["spec"]
    replicas = spec["pytorchReplicaSpecs"]
    assert replicas["Master"]["replicas"] == 1
    if nodes == 1:
        assert "Worker" not in replicas
    else:
        assert replicas["Worker"]["replicas"] == nodes - 1
    assert sum(r["replicas"] for r in replicas.values()) == nodes
    assert spec["nprocPerNode"] == str(GPUS)
    assert sum(r["replicas"] for r in replicas.values()) * int(spec["nprocPerNode"]) == (
        cfg.world_size
    )
    elastic = spec["elasticPolicy"]
    assert elastic["minReplicas"] == elastic["maxReplicas"] == nodes
    assert elastic["rdzvBackend"] == "c10d" and elastic["rdzvHost"] == rendezvous_host(cfg)
    endpoint = f"--rdzv-endpoint={elastic['rdzvHost']}:{elastic['rdzvPort']}"
    commands = []
    for replica in replicas.values():
        assert replica["restartPolicy"] == "OnFailure"
        pod = replica["template"]["spec"]
        (container,) = pod["containers"]
        assert container["name"] == "pytorch" and container["image"] == IMAGE
        assert {
            "name": "pytorchjob-port",
            "containerPort": elastic["rdzvPort"],
            "protocol": "TCP",
        } in (container["ports"])
        command = container["command"]
        assert endpoint in command and f"--rdzv-id={elastic['rdzvId']}" in command
        assert f"--nnodes={nodes}:{nodes}" in command and f"--nproc-per-node={GPUS}" in command
        assert command[-len(ARGS) - 1 :] == ["cxrflow", *ARGS]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == str(GPUS)
        _assert_gpu_placement(pod, cfg.gpu_pool)
        _assert_shm_mounted(container)
        kubernetes_validate.validate(_pod(pod), "1.30.0", strict=True)
        commands.append(command)
    assert all(c == commands[0] for c in commands), "rendezvous differs between replicas"


@pytest.mark.parametrize("nodes", NODES)
def test_pytorchjob_matches_the_published_training_operator_models(nodes):
    training = pytest.importorskip("kubeflow.training", reason="dev extra")
    client = training.ApiClient()
    job = build_pytorchjob(_cfg(nodes))
    model = client._ApiClient__deserialize(job, "KubeflowOrgV1PyTorchJob")
    assert client.sanitize_for_serialization(model) == job
    broken = copy.deepcopy(job)
    del broken["spec"]["pytorchReplicaSpecs"]
    with pytest.raises(ValueError, match="pytorch_replica_specs"):
        client._ApiClient__deserialize(broken, "KubeflowOrgV1PyTorchJob")


# --- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "parameter"),
    [
        ({"nodes": 0}, "nodes"),
        ({"nodes": True}, "nodes"),
        ({"gpus_per_node": 0}, "gpus_per_node"),
        ({"name": "Pretrain_Job"}, "name"),
        ({"name": "x" * 41}, "name"),
        ({"image": "ghcr.io/cxrflow/cxrflow-cuda"}, "image"),
        ({"image": "ghcr.io/cxrflow/cxrflow-cuda:latest"}, "image"),
        ({"args": ()}, "args"),
        ({"cpu_per_node": "eight"}, "cpu_per_node"),
        ({"memory_per_node": "64 GB"}, "memory_per_node"),
        ({"max_restarts": -1}, "max_restarts"),
        ({"rdzv_port": 80}, "rdzv_port"),
        ({"env": {"1BAD": "x"}}, "env"),
        ({"program": ()}, "program"),
        ({"program": ("python", "")}, "program"),
    ],
)
def test_invalid_settings_are_refused_naming_the_parameter(override, parameter):
    kw = {"name": "pretrain", "image": IMAGE, "args": ARGS, **override}
    with pytest.raises(ClusterConfigError, match=rf"^{parameter}:"):
        DistributedJobConfig(**kw)


@pytest.mark.parametrize(
    ("cls", "kw", "parameter"),
    [
        (GpuPool, {"taint_effect": "Sometimes"}, "taint_effect"),
        (GpuPool, {"node_selector_key": ""}, "node_selector_key"),
        (GpuPool, {"gpu_resource": "gpu"}, "gpu_resource"),
        (JobStorage, {"shm_size": "lots"}, "shm_size"),
        (JobStorage, {"data_mount": "data"}, "data_mount"),
        (JobStorage, {"checkpoint_mount": "/data"}, "checkpoint_mount"),
    ],
)
def test_pool_and_storage_settings_are_validated(cls, kw, parameter):
    with pytest.raises(ClusterConfigError, match=rf"^{parameter}:"):
        cls(**kw)


def test_unknown_runtime_and_override_api_are_refused():
    with pytest.raises(ClusterConfigError, match=r"^runtime:"):
        build_trainjob(_cfg(1), runtime="mpi-distributed")  # type: ignore[arg-type]
    with pytest.raises(ClusterConfigError, match=r"^override_api:"):
        build_trainjob(_cfg(1), override_api="podSpecOverrides")  # type: ignore[arg-type]


def test_gpu_pool_reads_the_configmap_and_keeps_the_gpu_taint_toleration():
    pool = GpuPool.from_configmap(
        {
            "node-selector-key": "cloud.google.com/gke-nodepool",
            "node-selector-value": "a100",
            "taint-key": "dedicated",
            "taint-value": "training",
            "taint-effect": "NoSchedule",
            "image": "ignored",
        }
    )
    assert pool.node_selector() == {"cloud.google.com/gke-nodepool": "a100"}
    assert pool.tolerations() == [
        {"key": "dedicated", "effect": "NoSchedule", "operator": "Equal", "value": "training"},
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
    ]
    job = build_pytorchjob(_cfg(2, gpu_pool=pool, service_account="cxrflow-launcher"))
    pod = job["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]
    assert pod["nodeSelector"] == pool.node_selector()
    assert pod["serviceAccountName"] == "cxrflow-launcher"


# --- the generated launch commands run under the installed torchrun ----------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    torchrun = venv_tool("torchrun")
    if torchrun is None:
        pytest.skip("torchrun is not installed")
    assert command[0] == "torchrun"
    return subprocess.run(
        [torchrun, *command[1:]],
        capture_output=True,
        text=True,
        timeout=120,
        # The console script is on PATH in the image; here it sits beside the interpreter.
        env={
            **os.environ,
            **env,
            "OMP_NUM_THREADS": "1",
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
        },
    )


def test_pytorchjob_command_is_accepted_by_torchrun():
    cfg = DistributedJobConfig(name="smoke", image=IMAGE, args=("version",), gpus_per_node=2)
    pod = build_pytorchjob(cfg)["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    command = [
        f"--rdzv-endpoint=127.0.0.1:{_free_port()}" if a.startswith("--rdzv-endpoint=") else a
        for a in pod["containers"][0]["command"]
    ]
    result = _torchrun(command, {})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == [__version__, __version__]  # one line per process


def test_trainjob_command_runs_from_the_runtime_environment():
    cfg = DistributedJobConfig(name="smoke", image=IMAGE, args=("version",), gpus_per_node=2)
    command = build_trainjob(cfg)["spec"]["trainer"]["command"]
    # What the torch-distributed runtime sets on each node.
    env = {
        "PET_NNODES": "1",
        "PET_NPROC_PER_NODE": "2",
        "PET_NODE_RANK": "0",
        "PET_MASTER_ADDR": "127.0.0.1",
        "PET_MASTER_PORT": str(_free_port()),
    }
    result = _torchrun(command, env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == [__version__, __version__]
