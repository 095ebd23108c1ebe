"""Kubernetes settings of pipeline tasks (kfp-kubernetes): GPU pool, volumes, config, secrets,
resources, security context and the PHI label.

Locally (`kfp.local`) these settings are ignored; on a cluster they land in the compiled IR
under `platforms.kubernetes.deploymentSpec.executors.<exec>` and, for the accelerator, in
`deploymentSpec.executors.<exec>.container.resources.accelerator`.
"""

from __future__ import annotations

from dataclasses import dataclass

from kfp import kubernetes
from kfp.dsl import PipelineTask
from kfp.kubernetes import common

from cxrflow.cluster.config import (
    MLFLOW_AUTH_SECRET,
    ClusterConfigError,
    GpuPool,
    check_quantity,
)
from cxrflow.keys import KEY_FILE_ENV_VAR

MLFLOW_CONFIG_MAP = "cxrflow-mlflow-config"
MLFLOW_URI_KEY = "tracking-uri"
DEID_KEY_SECRET = "cxrflow-deid-key"
DEID_KEY_MOUNT = "/var/run/secrets/cxrflow/deid"
# CXRFLOW_DEID_KEY_FILE comes from a ConfigMap, not `task.set_env_variable`: kfp.local applies
# plain task env vars (they would point local runs at the cluster's mount path) but ignores
# kfp-kubernetes settings. The ConfigMap holds `deid-key-file: <DEID_KEY_MOUNT>/key`.
PIPELINE_CONFIG_MAP = "cxrflow-pipeline-config"
DEID_KEY_FILE_KEY = "deid-key-file"
# The DVC remote and the S3 endpoint (MinIO) of the data versions, from the same ConfigMap.
DVC_REMOTE_KEY = "dvc-remote"
DVC_REMOTE_ENV = "CXRFLOW_DVC_REMOTE"
S3_ENDPOINT_KEY = "s3-endpoint-url"
S3_ENDPOINT_ENV = "AWS_ENDPOINT_URL"
# Object-store credentials: the version step pushes the data to the DVC remote, later steps
# pull from it. The same Secret holds MinIO's credentials (k8s/README.md).
OBJECT_STORE_SECRET = "cxrflow-object-store"
OBJECT_STORE_ENV = {"access-key": "AWS_ACCESS_KEY_ID", "secret-key": "AWS_SECRET_ACCESS_KEY"}
# The pipeline's MLflow user (MLflow runs behind its basic-auth app: moving the champion alias
# needs a credential).
MLFLOW_AUTH_ENV = {"username": "MLFLOW_TRACKING_USERNAME", "password": "MLFLOW_TRACKING_PASSWORD"}
# The uid/gid of the cxrflow images (docker/): numeric, so the kubelet can check runAsNonRoot.
RUN_AS_USER = 1000
RUN_AS_GROUP = 1000
# Pods that hold raw PHI or the de-identification key: the egress NetworkPolicy
# `cxrflow-phi-egress` (k8s/base/networkpolicy.yaml) selects them by this label.
PHI_LABEL = "cxrflow.io/phi"
PHI_LABEL_VALUE = "true"
DATA_MOUNT = "/data"
CHECKPOINT_MOUNT = "/checkpoints"
SHM_VOLUME = "dshm"
# Ingestion pods (single-pod ingest, shards, merge): a request the scheduler can plan with and
# a limit that bounds a bad file's damage. The per-file ResourceLimits keep one file far below
# it (cxrflow.ingest.limits); the limit catches what slips through (the pod is killed instead
# of starving its node).
INGEST_MEMORY_REQUEST = "2Gi"
INGEST_MEMORY_LIMIT = "4Gi"


@dataclass(frozen=True)
class TaskResources:
    """CPU and memory requests and limits of one task's container."""

    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str

    def __post_init__(self) -> None:
        """Validate at the edge: every error names its field."""
        for name in ("cpu_request", "cpu_limit", "memory_request", "memory_limit"):
            check_quantity(getattr(self, name), name)


# Gate and publish: an MLflow query or a registry update.
SMALL = TaskResources("250m", "1", "512Mi", "2Gi")
# Split, versioning (DVC hashes and pushes the dataset), evaluation.
STANDARD = TaskResources("1", "4", "2Gi", "8Gi")
# Ingestion: the memory bounds above; decoding runs on `ingest_workers` processes.
INGEST = TaskResources("1", "4", INGEST_MEMORY_REQUEST, INGEST_MEMORY_LIMIT)
# A launcher follows a TrainJob/PyTorchJob through the API and copies its outputs.
LAUNCHER = TaskResources("250m", "1", "512Mi", "1Gi")
# Heads on the CPU: embeddings of the whole dataset through the encoder, then the probes.
CPU_TRAINING = TaskResources("4", "8", "8Gi", "16Gi")
# In-pod GPU training: data-loader workers, and the memory /dev/shm (up to its size limit)
# counts against the container's memory limit.
GPU = TaskResources("8", "16", "32Gi", "96Gi")


def _mounted(task: PipelineTask, mount_path: str) -> bool:
    """True when the task already mounts a PVC at `mount_path`."""
    config = common.get_existing_kubernetes_config_as_message(task)
    return any(m.mount_path == mount_path for m in config.pvc_mount)


def _mount_pvc(task: PipelineTask, pvc: str | None, mount_path: str) -> None:
    """Mount `pvc` at `mount_path` unless none is given or one is already there."""
    if pvc and not _mounted(task, mount_path):
        kubernetes.mount_pvc(task, pvc_name=pvc, mount_path=mount_path)


def apply_gpu_settings(
    task: PipelineTask,
    pool: GpuPool,
    *,
    gpus: int,
    shm_size: str,
    data_pvc: str | None,
    checkpoint_pvc: str | None,
) -> PipelineTask:
    """Schedule `task` on the GPU pool with `gpus` GPUs, a memory /dev/shm and its volumes."""
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 1:
        raise ClusterConfigError(f"gpus: {gpus!r} must be an integer >= 1")
    check_quantity(shm_size, "shm_size")
    kubernetes.add_node_selector(task, pool.node_selector_key, pool.node_selector_value)
    for tol in pool.tolerations():
        kubernetes.add_toleration(
            task,
            key=tol["key"],
            operator=tol["operator"],
            value=tol.get("value") or None,
            effect=tol["effect"],
        )
    task.set_accelerator_type(pool.gpu_resource).set_accelerator_limit(gpus)
    kubernetes.empty_dir_mount(
        task, volume_name=SHM_VOLUME, mount_path="/dev/shm", medium="Memory", size_limit=shm_size
    )
    _mount_pvc(task, data_pvc, DATA_MOUNT)
    _mount_pvc(task, checkpoint_pvc, CHECKPOINT_MOUNT)
    return task


def apply_launcher_settings(task: PipelineTask, *, checkpoint_pvc: str | None) -> PipelineTask:
    """A step that launches a multi-node job: no GPU, no GPU pool; it mounts the checkpoint
    volume that the job's nodes write, to collect the encoder they export there. (It creates
    the job with the run's ServiceAccount: run the pipeline as `cxrflow-launcher`.)"""
    _mount_pvc(task, checkpoint_pvc, CHECKPOINT_MOUNT)
    return task


def apply_resources(task: PipelineTask, resources: TaskResources) -> PipelineTask:
    """CPU and memory requests and limits of `task`."""
    return (
        task.set_cpu_request(resources.cpu_request)
        .set_cpu_limit(resources.cpu_limit)
        .set_memory_request(resources.memory_request)
        .set_memory_limit(resources.memory_limit)
    )


def apply_ingest_resources(
    task: PipelineTask,
    memory_request: str = INGEST_MEMORY_REQUEST,
    memory_limit: str = INGEST_MEMORY_LIMIT,
) -> PipelineTask:
    """Resources of an ingestion task (ingest, ingest shard, merge shards)."""
    return apply_resources(
        task, TaskResources(INGEST.cpu_request, INGEST.cpu_limit, memory_request, memory_limit)
    )


def apply_phi_label(task: PipelineTask) -> PipelineTask:
    """Label a task that holds raw PHI or the de-id key for the egress NetworkPolicy."""
    return kubernetes.add_pod_label(task, PHI_LABEL, PHI_LABEL_VALUE)


def apply_common_settings(
    task: PipelineTask,
    *,
    data_pvc: str | None = "cxrflow-data",
    deid_key: bool = False,
    mlflow_config_map: str = MLFLOW_CONFIG_MAP,
    deid_key_secret: str = DEID_KEY_SECRET,
    pipeline_config_map: str = PIPELINE_CONFIG_MAP,
) -> PipelineTask:
    """Settings of every task: MLflow's address and credentials, the DVC remote, the
    object-store credentials, the data PVC, the non-root identity, the key where needed.

    `deid_key=True` (ingestion and the shard/merge steps) mounts the de-identification key
    Secret as a file at DEID_KEY_MOUNT/key and sets CXRFLOW_DEID_KEY_FILE from the pipeline
    ConfigMap's `deid-key-file`: the key itself is never an env value or a parameter.

    The tasks read these ConfigMaps and Secrets from the namespace the run's pods run in (the
    profile namespace in multi-user Kubeflow: k8s/README.md).
    """
    kubernetes.use_config_map_as_env(
        task,
        config_map_name=mlflow_config_map,
        config_map_key_to_env={MLFLOW_URI_KEY: "MLFLOW_TRACKING_URI"},
    )
    pipeline_env = {DVC_REMOTE_KEY: DVC_REMOTE_ENV, S3_ENDPOINT_KEY: S3_ENDPOINT_ENV}
    if deid_key:
        pipeline_env[DEID_KEY_FILE_KEY] = KEY_FILE_ENV_VAR
    kubernetes.use_config_map_as_env(
        task, config_map_name=pipeline_config_map, config_map_key_to_env=pipeline_env
    )
    kubernetes.use_secret_as_env(
        task, secret_name=OBJECT_STORE_SECRET, secret_key_to_env=dict(OBJECT_STORE_ENV)
    )
    kubernetes.use_secret_as_env(
        task, secret_name=MLFLOW_AUTH_SECRET, secret_key_to_env=dict(MLFLOW_AUTH_ENV)
    )
    # kfp-kubernetes sets the identity; the KFP backend (2.17+) adds allowPrivilegeEscalation
    # false, drop ALL and the RuntimeDefault seccomp profile itself (set_security_context's
    # contract), which together meet the `restricted` Pod Security Standard.
    kubernetes.set_security_context(
        task, run_as_user=RUN_AS_USER, run_as_group=RUN_AS_GROUP, run_as_non_root=True
    )
    _mount_pvc(task, data_pvc, DATA_MOUNT)
    if deid_key:
        kubernetes.use_secret_as_volume(
            task, secret_name=deid_key_secret, mount_path=DEID_KEY_MOUNT
        )
    return task
