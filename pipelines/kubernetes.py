"""Kubernetes settings of pipeline tasks (kfp-kubernetes): GPU pool, volumes, config, secrets.

Locally (`kfp.local`) these settings are ignored; on a cluster they land in the compiled IR
under `platforms.kubernetes.deploymentSpec.executors.<exec>` and, for the accelerator, in
`deploymentSpec.executors.<exec>.container.resources.accelerator`.
"""

from __future__ import annotations

from kfp import kubernetes
from kfp.dsl import PipelineTask
from kfp.kubernetes import common

from cxrflow.cluster.config import ClusterConfigError, GpuPool, check_quantity
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
DATA_MOUNT = "/data"
CHECKPOINT_MOUNT = "/checkpoints"
SHM_VOLUME = "dshm"
# Ingestion pods (single-pod ingest, shards, merge): a request the scheduler can plan with and
# a limit that bounds a bad file's damage. The per-file ResourceLimits keep one file far below
# it (cxrflow.ingest.limits); the limit catches what slips through (the pod is killed instead
# of starving its node).
INGEST_MEMORY_REQUEST = "2Gi"
INGEST_MEMORY_LIMIT = "4Gi"


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


def apply_ingest_resources(
    task: PipelineTask,
    memory_request: str = INGEST_MEMORY_REQUEST,
    memory_limit: str = INGEST_MEMORY_LIMIT,
) -> PipelineTask:
    """Memory request and limit of an ingestion task (ingest, ingest shard, merge shards)."""
    return task.set_memory_request(memory_request).set_memory_limit(memory_limit)


def apply_common_settings(
    task: PipelineTask,
    *,
    data_pvc: str | None = "cxrflow-data",
    deid_key: bool = False,
    mlflow_config_map: str = MLFLOW_CONFIG_MAP,
    deid_key_secret: str = DEID_KEY_SECRET,
    pipeline_config_map: str = PIPELINE_CONFIG_MAP,
) -> PipelineTask:
    """Settings of every task: MLflow from the ConfigMap, the data PVC, the key where needed.

    `deid_key=True` (ingestion and the shard/merge steps) mounts the de-identification key
    Secret as a file at DEID_KEY_MOUNT/key and sets CXRFLOW_DEID_KEY_FILE from the pipeline
    ConfigMap's `deid-key-file`: the key itself is never an env value or a parameter.
    """
    kubernetes.use_config_map_as_env(
        task,
        config_map_name=mlflow_config_map,
        config_map_key_to_env={MLFLOW_URI_KEY: "MLFLOW_TRACKING_URI"},
    )
    _mount_pvc(task, data_pvc, DATA_MOUNT)
    if deid_key:
        kubernetes.use_secret_as_volume(
            task, secret_name=deid_key_secret, mount_path=DEID_KEY_MOUNT
        )
        kubernetes.use_config_map_as_env(
            task,
            config_map_name=pipeline_config_map,
            config_map_key_to_env={DEID_KEY_FILE_KEY: KEY_FILE_ENV_VAR},
        )
    return task
