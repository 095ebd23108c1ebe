"""Typed, validated settings for a distributed training job on the GPU node pool."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# DNS-1035 label (PyTorchJob names, Service names derived from them). Kept well below 63
# characters so that the pod and Service names the operators derive (<name>-master-0,
# <name>-node-0-0-xxxxx) stay valid.
_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
MAX_NAME_LENGTH = 40
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
# The pipeline's MLflow user (MLflow runs behind its basic-auth app). Training pods read it
# from the Secret themselves: credentials are never copied into a job spec, where anyone who
# may read TrainJobs could read them. (env var, Secret, key)
MLFLOW_AUTH_SECRET = "cxrflow-mlflow-auth"
SECRET_ENV: tuple[tuple[str, str, str], ...] = (
    ("MLFLOW_TRACKING_USERNAME", MLFLOW_AUTH_SECRET, "username"),
    ("MLFLOW_TRACKING_PASSWORD", MLFLOW_AUTH_SECRET, "password"),
)


class ClusterConfigError(ValueError):
    """A cluster job setting is invalid; the message names the parameter."""


def _require(ok: bool, parameter: str, message: str) -> None:
    """Raise ClusterConfigError naming `parameter` unless `ok`."""
    if not ok:
        raise ClusterConfigError(f"{parameter}: {message}")


def check_name(value: str, parameter: str) -> None:
    """Check a Kubernetes object name (DNS-1035 label, at most MAX_NAME_LENGTH characters)."""
    _require(
        isinstance(value, str) and bool(_NAME.match(value)) and len(value) <= MAX_NAME_LENGTH,
        parameter,
        f"{value!r} must be a DNS-1035 label of at most {MAX_NAME_LENGTH} characters "
        "(lower-case letters, digits and '-', starting with a letter)",
    )


def check_quantity(value: str, parameter: str) -> None:
    """Check a Kubernetes resource quantity such as '8', '500m' or '64Gi'."""
    _require(
        isinstance(value, str) and bool(_QUANTITY.match(value)),
        parameter,
        f"{value!r} is not a Kubernetes quantity (e.g. '8', '500m', '64Gi')",
    )


@dataclass(frozen=True)
class GpuPool:
    """Where GPU pods go: the pool's node label and taint, and the GPU resource name."""

    node_selector_key: str = "cxrflow.io/node-pool"
    node_selector_value: str = "gpu"
    taint_key: str = "nvidia.com/gpu"
    taint_value: str = ""
    taint_effect: str = "NoSchedule"
    gpu_resource: str = "nvidia.com/gpu"

    def __post_init__(self) -> None:
        """Validate at the edge."""
        _require(bool(self.node_selector_key), "node_selector_key", "must not be empty")
        _require(bool(self.node_selector_value), "node_selector_value", "must not be empty")
        _require(bool(self.taint_key), "taint_key", "must not be empty")
        _require(
            self.taint_effect in TAINT_EFFECTS,
            "taint_effect",
            f"{self.taint_effect!r} is not one of {TAINT_EFFECTS}",
        )
        _require("/" in self.gpu_resource, "gpu_resource", "must be an extended resource name")

    @classmethod
    def from_configmap(cls, data: Mapping[str, str]) -> GpuPool:
        """Read the `cxrflow-gpu-pool` ConfigMap's data (k8s/overlays/gpu-node-pool)."""
        keys = {
            "node-selector-key": "node_selector_key",
            "node-selector-value": "node_selector_value",
            "taint-key": "taint_key",
            "taint-value": "taint_value",
            "taint-effect": "taint_effect",
            "gpu-resource": "gpu_resource",
        }
        return cls(**{attr: data[key] for key, attr in keys.items() if key in data})

    def node_selector(self) -> dict[str, str]:
        """The pod nodeSelector."""
        return {self.node_selector_key: self.node_selector_value}

    def tolerations(self) -> list[dict[str, str]]:
        """Tolerations for the pool's taint (and the GPU resource taint some clouds add)."""
        own: dict[str, str] = {"key": self.taint_key, "effect": self.taint_effect}
        own.update(
            {"operator": "Equal", "value": self.taint_value}
            if self.taint_value
            else {"operator": "Exists"}
        )
        out = [own]
        if self.taint_key != self.gpu_resource:
            out.append({"key": self.gpu_resource, "operator": "Exists", "effect": "NoSchedule"})
        return out


@dataclass(frozen=True)
class JobStorage:
    """Volumes of a training pod: data (read-only), checkpoints, a memory-backed /dev/shm."""

    data_pvc: str = "cxrflow-data"
    data_mount: str = "/data"
    checkpoint_pvc: str = "cxrflow-checkpoints"
    checkpoint_mount: str = "/checkpoints"
    shm_size: str = "32Gi"

    def __post_init__(self) -> None:
        """Validate at the edge."""
        _require(bool(self.data_pvc), "data_pvc", "must not be empty")
        _require(bool(self.checkpoint_pvc), "checkpoint_pvc", "must not be empty")
        for parameter in ("data_mount", "checkpoint_mount"):
            _require(getattr(self, parameter).startswith("/"), parameter, "must be absolute")
        _require(self.data_mount != self.checkpoint_mount, "checkpoint_mount", "equals data_mount")
        check_quantity(self.shm_size, "shm_size")

    def volumes(self) -> list[dict[str, Any]]:
        """Pod volumes."""
        return [
            {
                "name": "data",
                "persistentVolumeClaim": {"claimName": self.data_pvc, "readOnly": True},
            },
            {"name": "checkpoints", "persistentVolumeClaim": {"claimName": self.checkpoint_pvc}},
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": self.shm_size}},
        ]

    def volume_mounts(self) -> list[dict[str, Any]]:
        """Container volume mounts."""
        return [
            {"name": "data", "mountPath": self.data_mount, "readOnly": True},
            {"name": "checkpoints", "mountPath": self.checkpoint_mount},
            {"name": "dshm", "mountPath": "/dev/shm"},
        ]


@dataclass(frozen=True)
class DistributedJobConfig:
    """One multi-node, multi-GPU run of a cxrflow training entry point."""

    name: str
    image: str
    args: tuple[str, ...]
    namespace: str = "cxrflow"
    # The program that `args` follow on every node: the `cxrflow` console script by default, or
    # a stage's entry, e.g. ("python", "-m", "cxrflow.cluster.entry", "pretrain") as
    # `cxrflow.cluster.entry.program("pretrain")` gives it (`args`: the stage's Params as options).
    program: tuple[str, ...] = ("cxrflow",)
    nodes: int = 1
    gpus_per_node: int = 1
    cpu_per_node: str = "8"
    memory_per_node: str = "64Gi"
    env: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    gpu_pool: GpuPool = field(default_factory=GpuPool)
    storage: JobStorage = field(default_factory=JobStorage)
    service_account: str = ""
    max_restarts: int = 3
    rdzv_port: int = 23456

    def __post_init__(self) -> None:
        """Validate at the edge: every error names its parameter."""
        check_name(self.name, "name")
        check_name(self.namespace, "namespace")
        _require(bool(self.image) and ":" in self.image.rsplit("/", 1)[-1], "image", "needs a tag")
        _require(not self.image.endswith(":latest"), "image", "must be pinned, not ':latest'")
        _require(
            isinstance(self.args, tuple) and len(self.args) > 0,
            "args",
            "must be a non-empty tuple (the cxrflow sub-command and its options)",
        )
        _require(
            isinstance(self.program, tuple)
            and len(self.program) > 0
            and all(isinstance(p, str) and p for p in self.program),
            "program",
            "must be a non-empty tuple of non-empty strings (e.g. ('cxrflow',))",
        )
        _require(_is_int(self.nodes) and self.nodes >= 1, "nodes", f"{self.nodes!r} must be >= 1")
        _require(
            _is_int(self.gpus_per_node) and self.gpus_per_node >= 1,
            "gpus_per_node",
            f"{self.gpus_per_node!r} must be >= 1",
        )
        check_quantity(self.cpu_per_node, "cpu_per_node")
        check_quantity(self.memory_per_node, "memory_per_node")
        _require(
            _is_int(self.max_restarts) and self.max_restarts >= 0,
            "max_restarts",
            f"{self.max_restarts!r} must be >= 0",
        )
        _require(
            _is_int(self.rdzv_port) and 1024 <= self.rdzv_port <= 65535,
            "rdzv_port",
            f"{self.rdzv_port!r} must be in 1024..65535",
        )
        for key in self.env:
            _require(bool(_ENV_NAME.match(key)), "env", f"{key!r} is not a valid variable name")
        if self.service_account:
            check_name(self.service_account, "service_account")

    @property
    def world_size(self) -> int:
        """Total number of training processes (nodes x GPUs per node)."""
        return self.nodes * self.gpus_per_node

    def pod_labels(self) -> dict[str, str]:
        """Labels on every training pod (the NetworkPolicy lets these reach MLflow)."""
        return {
            "app.kubernetes.io/part-of": "cxrflow",
            "app.kubernetes.io/component": "training",
            "cxrflow.io/job": self.name,
            "cxrflow.io/mlflow-client": "true",
            **self.labels,
        }

    def env_list(self) -> list[dict[str, Any]]:
        """Container env as the Kubernetes API lists it: the settings, then the credentials
        each pod reads from its Secret itself (`SECRET_ENV`)."""
        plain = [{"name": k, "value": str(v)} for k, v in sorted(self.env.items())]
        return plain + [
            {"name": env, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
            for env, secret, key in SECRET_ENV
        ]

    def resources(self) -> dict[str, dict[str, str]]:
        """Per-node (= per-pod) requests and limits, GPUs included."""
        amounts = {
            "cpu": self.cpu_per_node,
            "memory": self.memory_per_node,
            self.gpu_pool.gpu_resource: str(self.gpus_per_node),
        }
        return {"requests": dict(amounts), "limits": dict(amounts)}


def _is_int(value: object) -> bool:
    """True for an int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)
