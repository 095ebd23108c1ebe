"""The Kubernetes API as the launcher uses it: clients, namespace, GPU-pool ConfigMap, job refs.

The API objects are passed around as plain arguments (`kubernetes.client.CustomObjectsApi` and
`CoreV1Api` in production, `kube_apis()` builds them), so that tests can pass a small in-memory
stand-in implementing the few methods used (tests/cluster/fake_kube.py).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes.client.exceptions import ApiException

from cxrflow.cluster import pytorchjob, trainjob
from cxrflow.cluster.config import ClusterConfigError

log = logging.getLogger(__name__)

SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
DEFAULT_NAMESPACE = "cxrflow"
POOL_CONFIG_MAP = "cxrflow-gpu-pool"
# Environment the job's processes need from the step (MLflow's address, the experiment): plain
# settings only. Credentials are never copied into a job spec, where anyone who may read
# TrainJobs could read them.
FORWARDED_ENV: tuple[str, ...] = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_S3_ENDPOINT_URL",
    "CXRFLOW_EXPERIMENT",
    "CXRFLOW_GIT_COMMIT",
)


@dataclass(frozen=True)
class JobRef:
    """Where a TrainJob or PyTorchJob lives in the API."""

    kind: str
    group: str
    version: str
    plural: str
    namespace: str
    name: str

    @classmethod
    def of(cls, job: Mapping[str, Any]) -> JobRef:
        """The reference of a job object from `build_trainjob` or `build_pytorchjob`."""
        kinds = {
            trainjob.KIND: (trainjob.GROUP, trainjob.VERSION, trainjob.PLURAL),
            pytorchjob.KIND: (pytorchjob.GROUP, pytorchjob.VERSION, pytorchjob.PLURAL),
        }
        kind = job.get("kind")
        if kind not in kinds:
            raise ClusterConfigError(f"kind: {kind!r} is neither TrainJob nor PyTorchJob")
        group, version, plural = kinds[str(kind)]
        if job.get("apiVersion") != f"{group}/{version}":
            raise ClusterConfigError(f"apiVersion: {job.get('apiVersion')!r} for kind {kind}")
        meta = job.get("metadata") or {}
        return cls(str(kind), group, version, plural, str(meta["namespace"]), str(meta["name"]))

    def api_args(self) -> tuple[str, str, str, str]:
        """(group, version, namespace, plural), as CustomObjectsApi takes them."""
        return self.group, self.version, self.namespace, self.plural

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


def api_message(exc: ApiException) -> str:
    """The Status message the API server sent with an error, else its reason."""
    try:
        body = json.loads(exc.body) if exc.body else {}
    except (TypeError, ValueError):
        body = {}
    return str(body.get("message") or exc.reason or exc)


def kube_apis() -> tuple[Any, Any]:
    """CustomObjectsApi and CoreV1Api: in-cluster credentials in a pod, kubeconfig elsewhere."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.CustomObjectsApi(), client.CoreV1Api()


def current_namespace(default: str = DEFAULT_NAMESPACE) -> str:
    """The namespace this pod runs in (its ServiceAccount's), else `default`."""
    try:
        return SA_NAMESPACE_FILE.read_text().strip() or default
    except OSError:
        return default


def read_pool_config(core_api: Any, namespace: str, name: str = POOL_CONFIG_MAP) -> dict[str, str]:
    """The `cxrflow-gpu-pool` ConfigMap's data (k8s/overlays/gpu-node-pool); {} without one."""
    try:
        return dict(core_api.read_namespaced_config_map(name, namespace).data or {})
    except ApiException as exc:
        if exc.status in (403, 404):
            log.info(
                "no readable ConfigMap %s/%s (%s): default GPU pool", namespace, name, exc.status
            )
            return {}
        raise


def forwarded_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The step's settings that the job's processes need (FORWARDED_ENV), where set."""
    environ = os.environ if environ is None else environ
    return {k: environ[k] for k in FORWARDED_ENV if environ.get(k)}
