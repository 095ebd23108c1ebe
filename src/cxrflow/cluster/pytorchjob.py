"""Training Operator v1 `PyTorchJob` (kubeflow.org/v1) for a cxrflow training stage."""

from __future__ import annotations

from typing import Any

from cxrflow.cluster.config import DistributedJobConfig
from cxrflow.cluster.pod import container_security_context, entrypoint, pod_security_context

API_VERSION = "kubeflow.org/v1"
KIND = "PyTorchJob"
GROUP, VERSION, PLURAL = "kubeflow.org", "v1", "pytorchjobs"
# The operator requires a container of this name, and takes the rendezvous/master port from the
# container port of this name.
CONTAINER = "pytorch"
PORT_NAME = "pytorchjob-port"


def rendezvous_host(cfg: DistributedJobConfig) -> str:
    """The Master pod's per-replica Service name, created by the operator."""
    return f"{cfg.name}-master-0"


def torchrun_command(cfg: DistributedJobConfig) -> list[str]:
    """The same command on every replica: c10d rendezvous hosted by the Master pod."""
    return [
        "torchrun",
        f"--nnodes={cfg.nodes}:{cfg.nodes}",
        f"--nproc-per-node={cfg.gpus_per_node}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={rendezvous_host(cfg)}:{cfg.rdzv_port}",
        f"--rdzv-id={cfg.name}",
        f"--max-restarts={cfg.max_restarts}",
        "--no-python",
        *entrypoint(cfg.args, cfg.program),
    ]


def _template(cfg: DistributedJobConfig) -> dict[str, Any]:
    """The pod template shared by Master and Worker replicas."""
    container = {
        "name": CONTAINER,
        "image": cfg.image,
        "command": torchrun_command(cfg),
        "env": [
            *cfg.env_list(),
            {"name": "CXRFLOW_WORLD_SIZE", "value": str(cfg.world_size)},
        ],
        "ports": [{"name": PORT_NAME, "containerPort": cfg.rdzv_port, "protocol": "TCP"}],
        "resources": cfg.resources(),
        "volumeMounts": cfg.storage.volume_mounts(),
        "securityContext": container_security_context(),
    }
    spec: dict[str, Any] = {
        "containers": [container],
        "nodeSelector": cfg.gpu_pool.node_selector(),
        "tolerations": cfg.gpu_pool.tolerations(),
        "volumes": cfg.storage.volumes(),
        "securityContext": pod_security_context(),
    }
    if cfg.service_account:
        spec["serviceAccountName"] = cfg.service_account
    return {"metadata": {"labels": cfg.pod_labels()}, "spec": spec}


def build_pytorchjob(cfg: DistributedJobConfig) -> dict[str, Any]:
    """A PyTorchJob: Master x1 + Worker x(nodes-1), fixed-size c10d elastic rendezvous."""
    replicas: dict[str, Any] = {
        "Master": {"replicas": 1, "restartPolicy": "OnFailure", "template": _template(cfg)}
    }
    if cfg.nodes > 1:
        replicas["Worker"] = {
            "replicas": cfg.nodes - 1,
            "restartPolicy": "OnFailure",
            "template": _template(cfg),
        }
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": cfg.name,
            "namespace": cfg.namespace,
            "labels": {"app.kubernetes.io/part-of": "cxrflow", **cfg.labels},
        },
        "spec": {
            # The operator turns these into PET_* variables; they agree with torchrun's flags.
            "nprocPerNode": str(cfg.gpus_per_node),
            "elasticPolicy": {
                "rdzvBackend": "c10d",
                "rdzvHost": rendezvous_host(cfg),
                "rdzvPort": cfg.rdzv_port,
                "rdzvId": cfg.name,
                "minReplicas": cfg.nodes,
                "maxReplicas": cfg.nodes,
                "maxRestarts": cfg.max_restarts,
            },
            "runPolicy": {"cleanPodPolicy": "Running", "backoffLimit": cfg.max_restarts},
            "pytorchReplicaSpecs": replicas,
        },
    }
