"""Kubeflow Trainer v2 `TrainJob` (trainer.kubeflow.org/v1alpha1) for a cxrflow training stage."""

from __future__ import annotations

from typing import Any, Literal

from cxrflow.cluster.config import SECRET_ENV, ClusterConfigError, DistributedJobConfig
from cxrflow.cluster.pod import container_security_context, entrypoint, pod_security_context

API_VERSION = "trainer.kubeflow.org/v1alpha1"
KIND = "TrainJob"
GROUP, VERSION, PLURAL = "trainer.kubeflow.org", "v1alpha1", "trainjobs"
Runtime = Literal["torch-distributed", "deepspeed-distributed"]
RUNTIMES: tuple[str, ...] = ("torch-distributed", "deepspeed-distributed")
# How pod settings reach the runtime's pods: `runtimePatches` since Trainer 2.3,
# `podTemplateOverrides` in Trainer 2.1 and 2.2.
OverrideApi = Literal["runtimePatches", "podTemplateOverrides"]
OVERRIDE_APIS: tuple[str, ...] = ("runtimePatches", "podTemplateOverrides")
PATCH_MANAGER = "cxrflow.io/launcher"
# The trainer container in the Trainer's torch and MPI runtimes.
TRAINER_CONTAINER = "node"
# MPI hostfile that the deepspeed-distributed (MPI) runtime mounts on the launcher.
MPI_HOSTFILE = "/etc/mpi/hostfile"


def target_jobs(runtime: str) -> list[str]:
    """The runtime's replicated jobs that run training processes."""
    return ["launcher", "node"] if runtime == "deepspeed-distributed" else ["node"]


def mpi_master_host(cfg: DistributedJobConfig) -> str:
    """The launcher pod's DNS name in the TrainJob's JobSet (the first hostfile entry).

    JobSet names pods `<jobset>-<replicatedJob>-<jobIndex>-<podIndex>` under the headless
    Service `<jobset>`, and the Trainer names the JobSet after the TrainJob.
    """
    return f"{cfg.name}-launcher-0-0.{cfg.name}"


def trainer_command(cfg: DistributedJobConfig, runtime: str) -> list[str]:
    """The training container's command under the runtime's launcher."""
    if runtime == "deepspeed-distributed":
        # The MPI runtime writes one hostfile line per node with numProcPerNode slots, the
        # launcher (which also trains) first, so ranks 0..numProcPerNode-1 run on the launcher.
        # mpirun starts the other nodes' processes over SSH, outside their container's
        # environment: the settings and the rendezvous address travel as `-x` exports, and the
        # entry point turns OMPI_COMM_WORLD_* into RANK/WORLD_SIZE/LOCAL_RANK.
        exports = [
            f"MASTER_ADDR={mpi_master_host(cfg)}",
            f"MASTER_PORT={cfg.rdzv_port}",
            "CXRFLOW_WORLD_SIZE",
            *cfg.env,
            *(env for env, _, _ in SECRET_ENV),
        ]
        flags = [part for name in exports for part in ("-x", name)]
        return ["mpirun", "--hostfile", MPI_HOSTFILE, *flags, *entrypoint(cfg.args, cfg.program)]
    # The torch runtime sets PET_NNODES, PET_NPROC_PER_NODE, PET_NODE_RANK, PET_MASTER_ADDR and
    # PET_MASTER_PORT, which torchrun reads as its defaults: the command is the same on every node.
    return ["torchrun", "--no-python", *entrypoint(cfg.args, cfg.program)]


def _pod_spec_patch(cfg: DistributedJobConfig, override_api: str) -> dict[str, Any]:
    """Node selector, tolerations, volumes and mounts for the runtime's training pods."""
    spec: dict[str, Any] = {
        "nodeSelector": cfg.gpu_pool.node_selector(),
        "tolerations": cfg.gpu_pool.tolerations(),
        "volumes": cfg.storage.volumes(),
        "containers": [{"name": TRAINER_CONTAINER, "volumeMounts": cfg.storage.volume_mounts()}],
    }
    if override_api == "runtimePatches":
        spec["securityContext"] = pod_security_context()
        spec["containers"][0]["securityContext"] = container_security_context()
    if cfg.service_account:
        spec["serviceAccountName"] = cfg.service_account
    return spec


def _runtime_patches(cfg: DistributedJobConfig, runtime: str) -> list[dict[str, Any]]:
    """Trainer >= 2.3: one patch entry owned by cxrflow, per replicated job."""
    pod = {"metadata": {"labels": cfg.pod_labels()}, "spec": _pod_spec_patch(cfg, "runtimePatches")}
    jobs = [{"name": job, "template": {"spec": {"template": pod}}} for job in target_jobs(runtime)]
    return [
        {
            "manager": PATCH_MANAGER,
            "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": jobs}}},
        }
    ]


def _pod_template_overrides(cfg: DistributedJobConfig, runtime: str) -> list[dict[str, Any]]:
    """Trainer 2.1-2.2: the same settings as `podTemplateOverrides`."""
    return [
        {
            "targetJobs": [{"name": job} for job in target_jobs(runtime)],
            "metadata": {"labels": cfg.pod_labels()},
            "spec": _pod_spec_patch(cfg, "podTemplateOverrides"),
        }
    ]


def build_trainjob(
    cfg: DistributedJobConfig,
    runtime: Runtime = "torch-distributed",
    override_api: OverrideApi = "runtimePatches",
) -> dict[str, Any]:
    """A TrainJob running `cxrflow <args>` on `cfg.nodes` GPU nodes of the pool."""
    if runtime not in RUNTIMES:
        raise ClusterConfigError(f"runtime: {runtime!r} is not one of {RUNTIMES}")
    if override_api not in OVERRIDE_APIS:
        raise ClusterConfigError(f"override_api: {override_api!r} is not one of {OVERRIDE_APIS}")
    env = [
        *cfg.env_list(),
        {"name": "CXRFLOW_WORLD_SIZE", "value": str(cfg.world_size)},
    ]
    spec: dict[str, Any] = {
        "runtimeRef": {"apiGroup": GROUP, "kind": "ClusterTrainingRuntime", "name": runtime},
        "trainer": {
            "image": cfg.image,
            "command": trainer_command(cfg, runtime),
            "numNodes": cfg.nodes,
            "numProcPerNode": cfg.gpus_per_node,
            "resourcesPerNode": cfg.resources(),
            "env": env,
        },
    }
    if override_api == "runtimePatches":
        spec["runtimePatches"] = _runtime_patches(cfg, runtime)
    else:
        spec["podTemplateOverrides"] = _pod_template_overrides(cfg, runtime)
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": cfg.name,
            "namespace": cfg.namespace,
            "labels": {"app.kubernetes.io/part-of": "cxrflow", **cfg.labels},
        },
        "spec": spec,
    }
