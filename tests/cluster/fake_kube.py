"""An in-memory stand-in for the two Kubernetes APIs the launcher uses (no cluster here).

It implements only the methods the launcher calls (`cxrflow.cluster.launcher`, `.kube`,
`.pod_logs`), with the argument names, return types (dicts for custom objects,
`kubernetes.client` models for pods and ConfigMaps, an undecoded response for logs) and errors
(`ApiException` 404/409/400) of the real client.
It records what was created and deleted, answers status reads from a scripted sequence, and
serves log lines on a fake clock. It labels the job's pods the way the Trainer (JobSet) and the
Training Operator label theirs, so a launcher that looks for the wrong pod or container finds
nothing or the wrong lines. It does not schedule, run or validate anything.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes.client.exceptions import ApiException

from kubernetes import client

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)

# Job statuses, a GPU-pool ConfigMap and log lines as the launcher tests script them.
IMAGE = "ghcr.io/cxrflow/cxrflow-cuda:0.1.0"
RUNNING_TRAINJOB = {"jobsStatus": [{"name": "node", "active": 2, "ready": 2, "failed": 0}]}
COMPLETE_TRAINJOB = {
    "conditions": [
        {"type": "Created", "status": "True", "reason": "JobsCreationSucceeded"},
        {"type": "Complete", "status": "True", "reason": "JobsCompleted", "message": "done"},
    ]
}
FAILED_TRAINJOB = {
    "conditions": [
        {
            "type": "Failed",
            "status": "True",
            "reason": "TrainingRuntimeFailed",
            "message": "jobset failed: node-0 exceeded its backoff limit",
        }
    ]
}
RUNNING_PYTORCHJOB = {"conditions": [{"type": "Running", "status": "True", "reason": "Running"}]}
SUCCEEDED_PYTORCHJOB = {
    "conditions": [
        {"type": "Running", "status": "False", "reason": "Succeeded"},
        {"type": "Succeeded", "status": "True", "reason": "PyTorchJobSucceeded", "message": "ok"},
    ]
}
POOL = {
    "node-selector-key": "cloud.example/pool",
    "node-selector-value": "a100",
    "taint-key": "nvidia.com/gpu",
    "taint-value": "present",
    "taint-effect": "NoSchedule",
    "gpu-resource": "nvidia.com/gpu",
    "image": IMAGE,
    "backend": "trainjob",
    "trainer-runtime": "torch-distributed",
}
RANK0_LOGS = [
    (1.0, "rank 0: world size 4, resuming at step 0"),
    (31.5, "step 10 loss 9.87"),
    (31.5, "step 10 koleo -1.2"),  # two lines with the same timestamp
    (62.0, "step 20 loss 8.76"),
    (95.0, "exported the encoder"),
]
OTHER_LOGS = [(1.0, "rank 2 of 4 ready"), (60.0, "rank 2 done")]


def api_error(status: int, reason: str, message: str = "") -> ApiException:
    """An ApiException as the client raises it, with a Status body."""
    exc = ApiException(status=status, reason=reason)
    exc.body = json.dumps({"kind": "Status", "status": "Failure", "message": message or reason})
    return exc


@dataclass
class FakePod:
    name: str
    labels: dict[str, str]
    container: str
    logs: list[tuple[float, str]] = field(default_factory=list)  # (time written, line)
    started_at: float = 0.0
    created_at: float = 0.0


def _stamp(t: float) -> str:
    """RFC 3339 with nanoseconds, trailing zeros trimmed, as the kubelet writes it."""
    moment = EPOCH + timedelta(seconds=t)
    fraction = f"{moment.microsecond:06d}000".rstrip("0")
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + "Z"


def _matches(selector: str, labels: dict[str, str]) -> bool:
    """Equality-based label selectors (`k=v,k2=v2`), the only kind the launcher uses."""
    for term in filter(None, selector.split(",")):
        key, sep, value = term.partition("=")
        if not sep or "!" in key:
            raise api_error(400, "BadRequest", f"unsupported selector term {term!r}")
        if labels.get(key) != value:
            return False
    return True


def controller_pods(job: dict[str, Any]) -> list[FakePod]:
    """The pods a controller would create for the job, labelled as it labels them."""
    name = job["metadata"]["name"]
    if job["kind"] == "TrainJob":
        nodes = job["spec"]["trainer"]["numNodes"]
        # The MPI (deepspeed-distributed) runtime runs the launcher as node 0 and nodes - 1
        # `node` pods; the torch runtime `nodes` of them.
        mpi = job["spec"]["runtimeRef"]["name"] == "deepspeed-distributed"
        roles = [("launcher", 0)] + [("node", i) for i in range(nodes - 1)] if mpi else []
        roles = roles or [("node", i) for i in range(nodes)]
        return [
            FakePod(
                name=f"{name}-{replicated}-0-{i}-x{i}z",
                labels={
                    "jobset.sigs.k8s.io/jobset-name": name,
                    "jobset.sigs.k8s.io/replicatedjob-name": replicated,
                    "jobset.sigs.k8s.io/job-index": "0",
                    "batch.kubernetes.io/job-completion-index": str(i),
                },
                container="node",
            )
            for replicated, i in roles
        ]
    replicas = job["spec"]["pytorchReplicaSpecs"]
    pods = [
        FakePod(
            name=f"{name}-master-0",
            labels={
                "training.kubeflow.org/job-name": name,
                "training.kubeflow.org/replica-type": "master",
                "training.kubeflow.org/replica-index": "0",
            },
            container="pytorch",
        )
    ]
    for i in range(replicas.get("Worker", {}).get("replicas", 0)):
        pods.append(
            FakePod(
                name=f"{name}-worker-{i}",
                labels={
                    "training.kubeflow.org/job-name": name,
                    "training.kubeflow.org/replica-type": "worker",
                    "training.kubeflow.org/replica-index": str(i),
                },
                container="pytorch",
            )
        )
    return pods


class _LogResponse:
    """What `read_namespaced_pod_log(..., _preload_content=False)` returns: undecoded bytes."""

    def __init__(self, text: str) -> None:
        self.data = text.encode()


class FakeCluster:
    """CustomObjectsApi + CoreV1Api + a clock, in memory.

    `statuses`: the `.status` returned by successive reads of a job (the last one repeats).
    `rank_logs`: log lines per pod role ("rank0", "other"), as (seconds after creation, line).
    `on_create`: called with each created body (a test can write the job's outputs there).
    `log_latency_s`: how long after the call the kubelet serves each log read (cycled): it
    reads "since N seconds" and "up to now" on its own, later clock.
    """

    def __init__(
        self,
        statuses: Sequence[dict[str, Any]],
        *,
        rank_logs: dict[str, list[tuple[float, str]]] | None = None,
        config_maps: dict[str, dict[str, str]] | None = None,
        pods_start_after_s: float = 0.0,
        on_create: Callable[[dict[str, Any]], None] | None = None,
        delete_takes_reads: int = 0,
        log_latency_s: Sequence[float] = (),
    ) -> None:
        self.now = 0.0
        self.statuses = list(statuses)
        self.rank_logs = rank_logs or {}
        self.config_maps = config_maps or {}
        self.pods_start_after_s = pods_start_after_s
        self.on_create = on_create
        self.delete_takes_reads = delete_takes_reads
        self.log_latency_s = list(log_latency_s)
        self.objects: dict[tuple[str, str, str, str, str], dict[str, Any]] = {}
        self.pods: dict[str, list[FakePod]] = {}
        self.created: list[dict[str, Any]] = []
        self.deleted: list[str] = []
        self.status_reads = 0
        self.log_reads: list[dict[str, Any]] = []
        self.sleeps: list[float] = []
        self._terminating: dict[str, int] = {}

    # -- the clock the launcher is given ----------------------------------------------------------
    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    # -- CustomObjectsApi ------------------------------------------------------------------------
    def create_namespaced_custom_object(self, group, version, namespace, plural, body, **kw):
        key = (group, version, namespace, plural, body["metadata"]["name"])
        if body.get("apiVersion") != f"{group}/{version}":
            raise api_error(400, "BadRequest", "apiVersion does not match the URL")
        if body["metadata"].get("namespace") not in (None, namespace):
            raise api_error(400, "BadRequest", "the namespace of the body does not match")
        if key in self.objects:
            raise api_error(409, "Conflict", f'{plural} "{key[-1]}" already exists')
        stored = json.loads(json.dumps(body))  # the server keeps its own copy
        self.objects[key] = stored
        self.created.append(stored)
        self.status_reads = 0
        pods = controller_pods(stored)
        for pod in pods:
            pod.created_at = self.now
            pod.started_at = self.now + self.pods_start_after_s
            role = "rank0" if pod is pods[0] else "other"
            pod.logs = [(self.now + t, line) for t, line in self.rank_logs.get(role, [])]
        self.pods[key[-1]] = pods
        if self.on_create is not None:
            self.on_create(stored)
        return stored

    def get_namespaced_custom_object(self, group, version, namespace, plural, name, **kw):
        key = (group, version, namespace, plural, name)
        if key not in self.objects:
            raise api_error(404, "NotFound", f'{plural} "{name}" not found')
        if name in self._terminating:
            self._terminating[name] -= 1
            if self._terminating[name] < 0:
                del self.objects[key], self._terminating[name]
                self.pods.pop(name, None)
                raise api_error(404, "NotFound", f'{plural} "{name}" not found')
        obj = dict(self.objects[key])
        if self.statuses and "status" not in self.objects[key]:
            obj["status"] = self.statuses[min(self.status_reads, len(self.statuses) - 1)]
            self.status_reads += 1
        return obj

    def delete_namespaced_custom_object(self, group, version, namespace, plural, name, **kw):
        key = (group, version, namespace, plural, name)
        if key not in self.objects:
            raise api_error(404, "NotFound", f'{plural} "{name}" not found')
        self.deleted.append(name)
        if self.delete_takes_reads:
            self._terminating[name] = self.delete_takes_reads
        else:
            del self.objects[key]
            self.pods.pop(name, None)
        return {"kind": "Status", "status": "Success"}

    # -- CoreV1Api -------------------------------------------------------------------------------
    def list_namespaced_pod(self, namespace, label_selector="", **kw):
        items = []
        for job, pods in self.pods.items():
            if not any(k[2] == namespace and k[4] == job for k in self.objects):
                continue
            for pod in pods:
                if not _matches(label_selector, pod.labels):
                    continue
                phase = "Running" if self.now >= pod.started_at else "Pending"
                items.append(
                    client.V1Pod(
                        metadata=client.V1ObjectMeta(
                            name=pod.name,
                            namespace=namespace,
                            labels=dict(pod.labels),
                            creation_timestamp=EPOCH + timedelta(seconds=pod.created_at),
                        ),
                        spec=client.V1PodSpec(containers=[client.V1Container(name=pod.container)]),
                        status=client.V1PodStatus(phase=phase),
                    )
                )
        return client.V1PodList(items=items)

    def read_namespaced_pod_log(
        self, name, namespace, container=None, timestamps=False, since_seconds=None, **kw
    ):
        self.log_reads.append({"pod": name, "container": container, "since_seconds": since_seconds})
        pod = next((p for pods in self.pods.values() for p in pods if p.name == name), None)
        if pod is None:
            raise api_error(404, "NotFound", f'pods "{name}" not found')
        if container is not None and container != pod.container:
            raise api_error(400, "BadRequest", f"container {container} is not valid for pod {name}")
        if self.now < pod.started_at:
            raise api_error(400, "BadRequest", f'container "{pod.container}" is waiting to start')
        latency = (
            self.log_latency_s[len(self.log_reads) % len(self.log_latency_s)]
            if (self.log_latency_s)
            else 0.0
        )
        served_at = self.now + latency
        since = -float("inf") if since_seconds is None else served_at - since_seconds
        lines = [
            (f"{_stamp(t)} {line}" if timestamps else line)
            for t, line in pod.logs
            if since <= t <= served_at
        ]
        text = "".join(f"{line}\n" for line in lines)
        return _LogResponse(text) if kw.get("_preload_content") is False else text

    def read_namespaced_config_map(self, name, namespace, **kw):
        if name not in self.config_maps:
            raise api_error(404, "NotFound", f'configmaps "{name}" not found')
        return client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name=name, namespace=namespace),
            data=dict(self.config_maps[name]),
        )


# Environment of the launcher step: the MLflow address travels to the job, a secret must not.
LAUNCHER_ENV = {
    "MLFLOW_TRACKING_URI": "http://cxrflow-mlflow.cxrflow:5000",
    "AWS_SECRET_ACCESS_KEY": "must-not-travel",
}


def job_command(job: dict[str, Any]) -> list[str]:
    """The command of the job's training container (the same on every node)."""
    if job["kind"] == "TrainJob":
        return job["spec"]["trainer"]["command"]
    master = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    return master["containers"][0]["command"]


def node_params(job: dict[str, Any], stage: str) -> Any:
    """The Params that the job's command gives `python -m cxrflow.cluster.entry STAGE`."""
    from cxrflow.cluster import entry

    command = job_command(job)
    start = command.index(entry.MODULE) + 2
    assert command[start - 4 : start] == list(entry.program(stage))
    parsed_stage, params = entry.parse(command[start - 1 :])
    assert parsed_stage == stage
    return params


def launch_on(
    cluster: FakeCluster, stage: str, params: Any, storage: Any, **kw: Any
) -> dict[str, Any]:
    """`launcher.launch(stage, params, ...)` on `cluster`: 2 nodes x 2 GPUs in "ml"."""
    from cxrflow.cluster.launcher import MultiNodeSettings, launch

    settings = dict(nodes=2, gpus_per_node=2, namespace="ml", storage=storage, poll_interval_s=30)
    settings.update(kw)
    return launch(
        stage,
        params,
        MultiNodeSettings(**settings),
        custom_api=cluster,
        core_api=cluster,
        environ=LAUNCHER_ENV,
        clock=cluster.clock,
        sleep=cluster.sleep,
    )
