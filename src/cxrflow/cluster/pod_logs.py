"""Follow a distributed job's rank-0 pod: find it by its controller's labels, stream its log.

The job's rank-0 output becomes the launching step's own log (logger
`cxrflow.cluster.launcher.job`), each line once, across overlapping reads and pod replacements.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException

from cxrflow.cluster import pytorchjob, trainjob
from cxrflow.cluster.kube import JobRef

log = logging.getLogger(__name__)
# The job's rank-0 output, line by line, as the step's own log (the launcher's name: pipelines
# and tests select these lines by it).
job_log = logging.getLogger("cxrflow.cluster.launcher.job")


@dataclass(frozen=True)
class Rank0Pod:
    """How to find the pod of node rank 0 and its training container."""

    label_selector: str
    container: str


def rank0_pod(job: Mapping[str, Any]) -> Rank0Pod:
    """The rank-0 pod of a job, by the labels its controller puts on its pods.

    TrainJob: the Trainer runs a JobSet of the same name; node rank 0 is completion index 0 of
    the `node` replicated job (the `launcher` job for the MPI runtime). PyTorchJob: the operator
    labels the Master replica's pod with the job name, replica type and index.
    """
    ref = JobRef.of(job)
    if ref.kind == trainjob.KIND:
        runtime = job["spec"]["runtimeRef"]["name"]
        replicated = "launcher" if runtime == "deepspeed-distributed" else "node"
        selector = (
            f"jobset.sigs.k8s.io/jobset-name={ref.name},"
            f"jobset.sigs.k8s.io/replicatedjob-name={replicated},"
            "batch.kubernetes.io/job-completion-index=0"
        )
        return Rank0Pod(selector, trainjob.TRAINER_CONTAINER)
    selector = (
        f"training.kubeflow.org/job-name={ref.name},"
        "training.kubeflow.org/replica-type=master,"
        "training.kubeflow.org/replica-index=0"
    )
    return Rank0Pod(selector, pytorchjob.CONTAINER)


_TIMESTAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def _timestamp_key(stamp: str) -> tuple[str, int] | None:
    """Sortable key of an RFC 3339 (nano) timestamp as the kubelet writes it (UTC)."""
    match = _TIMESTAMP.match(stamp)
    if match is None:
        return None
    seconds, fraction, _zone = match.groups()
    return seconds, int(((fraction or "") + "000000000")[:9])


def _created(pod: Any) -> tuple[float, str]:
    """Sort key of pods: creation time, then name."""
    created = pod.metadata.creation_timestamp
    return (created.timestamp() if created is not None else 0.0, pod.metadata.name)


class PodLogFollower:
    """Stream the new lines of one container of the rank-0 pod, poll by poll.

    Each poll reads the log with timestamps, since shortly before the previous read (so nothing
    is lost between reads), and emits only lines newer than the last one emitted. A new pod
    (the controller replaced a failed one) is followed from its first line.
    """

    def __init__(
        self,
        core_api: Any,
        namespace: str,
        pod: Rank0Pod,
        *,
        emit: Callable[[str, str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        overlap_s: float = 10.0,
        tail: int = 30,
    ) -> None:
        self.core_api = core_api
        self.namespace = namespace
        self.pod = pod
        self.emit = emit or (lambda pod_name, line: job_log.info("[%s] %s", pod_name, line))
        self.clock = clock
        self.overlap_s = overlap_s
        self.tail: deque[str] = deque(maxlen=tail)
        self.lines = 0
        self._pod_name: str | None = None
        self._last_read: float | None = None
        self._last_key: tuple[str, int] | None = None
        self._emitted_at_last_key = 0

    def _current_pod(self) -> Any | None:
        """The newest pod matching the selector, or None while there is none."""
        pods = self.core_api.list_namespaced_pod(
            self.namespace, label_selector=self.pod.label_selector
        ).items
        if not pods:
            return None
        return max(pods, key=_created)

    def poll(self) -> int:
        """Emit the lines written since the last poll; the number emitted."""
        try:
            pod = self._current_pod()
        except ApiException as exc:
            log.warning("cannot list the rank-0 pod (%s): %s", exc.status, exc.reason)
            return 0
        if pod is None:
            return 0
        if pod.metadata.name != self._pod_name:
            self._pod_name = pod.metadata.name
            self._last_read = self._last_key = None
            self._emitted_at_last_key = 0
            log.info(
                "following the logs of pod %s (container %s)", pod.metadata.name, self.pod.container
            )
        if (pod.status.phase or "Pending") == "Pending":
            return 0
        kwargs: dict[str, Any] = {"container": self.pod.container, "timestamps": True}
        now = self.clock()
        if self._last_read is not None:
            kwargs["since_seconds"] = max(1, math.ceil(now - self._last_read + self.overlap_s))
        try:
            # Undecoded: the client would otherwise parse a one-line JSON log as JSON.
            response = self.core_api.read_namespaced_pod_log(
                pod.metadata.name, self.namespace, _preload_content=False, **kwargs
            )
        except ApiException as exc:
            if exc.status in (400, 404):  # container not started yet, or the pod just went
                return 0
            log.warning(
                "cannot read the logs of %s (%s): %s", pod.metadata.name, exc.status, exc.reason
            )
            return 0
        self._last_read = now
        data = response if isinstance(response, str | bytes) else response.data
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
        return self._emit_new(pod.metadata.name, text)

    def _emit_new(self, pod_name: str, text: str) -> int:
        """Emit the lines of `text` newer than the last emitted one (reads overlap in time)."""
        emitted = 0
        seen_at_last = 0  # lines of this read stamped like the last emitted line
        for raw in text.splitlines():
            stamp, _, line = raw.partition(" ")
            key = _timestamp_key(stamp)
            if key is None:  # not timestamped (should not happen): keep it whole
                line = raw
            elif self._last_key is not None and key < self._last_key:
                continue
            elif key == self._last_key:
                seen_at_last += 1
                if seen_at_last <= self._emitted_at_last_key:
                    continue
                self._emitted_at_last_key += 1
            else:
                self._last_key, self._emitted_at_last_key, seen_at_last = key, 1, 1
            self.emit(pod_name, line)
            self.tail.append(line)
            emitted += 1
        self.lines += emitted
        return emitted
