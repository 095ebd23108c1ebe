"""Run a TrainJob or PyTorchJob to completion from a pipeline step: create, follow, collect.

The pre-training step with `nodes > 1` does not train: it creates a Kubeflow Trainer `TrainJob`
(or a Training Operator `PyTorchJob`) that runs `python -m cxrflow.cluster.pretrain_entry` under
torchrun on every node, follows the job's status conditions, streams the logs of the rank-0 pod
into its own log, fails with the job's message when the job fails or a time limit passes, deletes
the job (unless asked to keep it), and finally checks that the encoder the job exported is on
the shared checkpoint volume. Report fine-tuning with `nodes > 1` goes the same way
(`launch_report`, `python -m cxrflow.cluster.report_entry` on every node, by default on the
Trainer's MPI-based `deepspeed-distributed` runtime) and collects the saved report model; both
are `launch_stage` with a stage's job builder and outcome check.

The Kubernetes API objects are constructor arguments (`kubernetes.client.CustomObjectsApi` and
`CoreV1Api` in production, `kube_apis()` builds them), so that tests can pass a small in-memory
stand-in implementing the few methods used here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from kubernetes.client.exceptions import ApiException

from cxrflow.cluster import pytorchjob, trainjob
from cxrflow.cluster.config import (
    ClusterConfigError,
    DistributedJobConfig,
    GpuPool,
    JobStorage,
    check_name,
)
from cxrflow.cluster.pretrain_entry import PROGRAM as PRETRAIN_PROGRAM
from cxrflow.cluster.pretrain_entry import PretrainArgs
from cxrflow.cluster.report_entry import PROGRAM as REPORT_PROGRAM
from cxrflow.cluster.report_entry import ReportArgs
from cxrflow.cluster.status import JobPhase, JobState, job_state

log = logging.getLogger(__name__)
# The job's rank-0 output, line by line, as the step's own log.
job_log = logging.getLogger(f"{__name__}.job")

SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
DEFAULT_NAMESPACE = "cxrflow"
POOL_CONFIG_MAP = "cxrflow-gpu-pool"
BACKENDS: tuple[str, ...] = ("trainjob", "pytorchjob")
# Environment the job's processes need from the step (MLflow's address, the experiment): plain
# settings only. Credentials are never copied into a job spec, where anyone who may read
# TrainJobs could read them.
FORWARDED_ENV: tuple[str, ...] = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_S3_ENDPOINT_URL",
    "CXRFLOW_EXPERIMENT",
    "CXRFLOW_GIT_COMMIT",
)
# What a Hugging Face DINOv2 export holds at the least (cxrflow.models.hf.save_hf_dinov2).
ENCODER_FILES: tuple[str, ...] = ("config.json", "model.safetensors")
# What a saved report model holds at the least (weights: one or more *.safetensors files).
REPORT_MODEL_FILES: tuple[str, ...] = ("config.json",)
# The Trainer runtime of each stage's TrainJob: pre-training's entry reads torchrun's variables;
# the report entry also runs under the MPI-based DeepSpeed runtime.
PRETRAIN_RUNTIME = "torch-distributed"
REPORT_RUNTIME = "deepspeed-distributed"
# The ZeRO stage of a multi-node report job whose preset names none.
DEFAULT_REPORT_ZERO = "zero2"


class LaunchError(RuntimeError):
    """The distributed job could not be created, did not succeed, or left no encoder."""


class JobFailedError(LaunchError):
    """The job reached its Failed condition."""


class JobTimeoutError(LaunchError):
    """The job did not finish within the time limit."""


class EncoderMissingError(LaunchError):
    """The job succeeded but its exported encoder is not on the shared volume."""


class ReportModelMissingError(LaunchError):
    """The job succeeded but the saved report model or its metrics are not on the shared volume."""


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


def _api_message(exc: ApiException) -> str:
    """The Status message the API server sent with an error, else its reason."""
    try:
        body = json.loads(exc.body) if exc.body else {}
    except (TypeError, ValueError):
        body = {}
    return str(body.get("message") or exc.reason or exc)


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


@dataclass(frozen=True)
class LaunchResult:
    """How a job ended."""

    job: JobRef
    state: JobState
    log_lines: int
    tail: tuple[str, ...] = field(default=())


class JobLauncher:
    """Create a job, follow it to a terminal state, delete or keep it."""

    def __init__(
        self,
        custom_api: Any,
        core_api: Any,
        *,
        poll_interval_s: float = 30.0,
        timeout_s: float = 0.0,
        keep_job: bool = False,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        emit: Callable[[str, str], None] | None = None,
        max_api_errors: int = 10,
    ) -> None:
        """`timeout_s` of 0 waits without limit; `keep_job` keeps the job (and its pods)."""
        if poll_interval_s < 0 or timeout_s < 0:
            raise ClusterConfigError("poll_interval_s/timeout_s: must be >= 0")
        self.custom_api = custom_api
        self.core_api = core_api
        self.poll_interval_s = poll_interval_s
        self.timeout_s = timeout_s
        self.keep_job = keep_job
        self.clock = clock
        self.sleep = sleep
        self.emit = emit
        self.max_api_errors = max_api_errors

    def run(self, job: Mapping[str, Any]) -> LaunchResult:
        """Create `job` (or adopt a live one of the same name) and follow it to the end.

        Raises JobFailedError with the job's reason and message, JobTimeoutError after
        `timeout_s`, LaunchError when the API refuses the job or it disappears.
        """
        ref = JobRef.of(job)
        follower = PodLogFollower(
            self.core_api, ref.namespace, rank0_pod(job), emit=self.emit, clock=self.clock
        )
        self._create(ref, job)
        try:
            state = self._follow(ref, follower)
        except BaseException:
            if self.keep_job:
                log.warning("keeping %s for inspection (delete it when done)", ref)
            raise
        finally:
            if not self.keep_job:
                self._delete(ref)
        return LaunchResult(ref, state, follower.lines, tuple(follower.tail))

    def _get(self, ref: JobRef) -> dict[str, Any]:
        return self.custom_api.get_namespaced_custom_object(*ref.api_args(), ref.name)

    def _create(self, ref: JobRef, job: Mapping[str, Any]) -> None:
        """Create the job; on a name clash adopt a live job, replace a failed one."""
        try:
            self.custom_api.create_namespaced_custom_object(*ref.api_args(), dict(job))
            log.info("created %s", ref)
            return
        except ApiException as exc:
            if exc.status != 409:
                raise LaunchError(
                    f"could not create {ref}: {exc.status} {_api_message(exc)}"
                ) from exc
        # A retried step finds the job of its previous attempt: the same name is the same run.
        existing = job_state(self._get(ref))
        if existing.phase is not JobPhase.FAILED:
            log.info(
                "%s exists (%s): following it instead of starting another", ref, existing.phase
            )
            return
        log.info(
            "%s exists and failed (%s): replacing it", ref, existing.message or existing.reason
        )
        self._delete(ref)
        self._wait_gone(ref)
        self.custom_api.create_namespaced_custom_object(*ref.api_args(), dict(job))
        log.info("created %s", ref)

    def _wait_gone(self, ref: JobRef, limit_s: float = 300.0) -> None:
        start = self.clock()
        while True:
            try:
                self._get(ref)
            except ApiException as exc:
                if exc.status == 404:
                    return
                raise
            if self.clock() - start > limit_s:
                raise LaunchError(f"{ref} was deleted but is still there after {limit_s:.0f} s")
            self.sleep(max(self.poll_interval_s, 1.0))

    def _delete(self, ref: JobRef) -> None:
        try:
            self.custom_api.delete_namespaced_custom_object(
                *ref.api_args(), ref.name, propagation_policy="Background"
            )
            log.info("deleted %s", ref)
        except ApiException as exc:
            if exc.status != 404:
                log.warning("could not delete %s: %s %s", ref, exc.status, exc.reason)

    def _follow(self, ref: JobRef, follower: PodLogFollower) -> JobState:
        start = self.clock()
        last: JobState | None = None
        errors = 0
        while True:
            try:
                obj = self._get(ref)
                errors = 0
            except ApiException as exc:
                if exc.status == 404:
                    raise LaunchError(f"{ref} disappeared (deleted by someone else?)") from exc
                errors += 1
                if errors > self.max_api_errors:
                    raise LaunchError(f"cannot read {ref}: {exc.status} {exc.reason}") from exc
                log.warning("reading %s failed (%s), retrying", ref, exc.status)
                self.sleep(self.poll_interval_s)
                continue
            state = job_state(obj)
            if state != last:
                detail = ": ".join(p for p in (state.reason, state.message) if p)
                log.info("%s is %s%s", ref, state.phase.value, f" ({detail})" if detail else "")
                last = state
            # Read the logs after the status: a terminal status means the pods have stopped
            # writing, so this read drains them.
            follower.poll()
            if state.phase is JobPhase.FAILED:
                tail = "\n".join(f"  {line}" for line in follower.tail)
                raise JobFailedError(
                    f"{ref} failed: {state.reason}: {state.message or 'no message'}"
                    + (f"\nlast lines of the rank-0 pod:\n{tail}" if tail else "")
                )
            if state.phase is JobPhase.SUCCEEDED:
                return state
            elapsed = self.clock() - start
            if self.timeout_s and elapsed >= self.timeout_s:
                raise JobTimeoutError(
                    f"{ref} did not finish within {self.timeout_s:.0f} s "
                    f"(last {state.phase.value}: {state.reason} {state.message})".rstrip()
                )
            self.sleep(self.poll_interval_s)


def raise_on_sigterm() -> None:
    """Turn SIGTERM (a cancelled run's pod being stopped) into SystemExit, so that the launcher's
    clean-up deletes the job instead of leaving it holding GPUs. Main thread only."""
    import signal
    import sys

    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


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


def job_name(stage: str, *keys: str) -> str:
    """A stable job name for one stage of one pipeline run: a retried step finds its job."""
    digest = hashlib.sha256("\0".join(keys).encode()).hexdigest()[:10]
    name = f"cxrflow-{stage}-{digest}"
    check_name(name, "name")
    return name


def _under(path: str, mount: str) -> bool:
    p, m = PurePosixPath(path), PurePosixPath(mount)
    return p == m or m in p.parents


def check_shared_paths(
    storage: JobStorage, *, reads: Mapping[str, str], writes: Mapping[str, str]
) -> None:
    """Refuse paths the job's pods would not see: they mount only the job's volumes.

    `reads` may lie on the data or the checkpoint volume; `writes` only on the checkpoint
    volume (the data volume is mounted read-only in training pods). Keys name the parameters.
    """
    for parameter, path in reads.items():
        if path and not (
            _under(path, storage.data_mount) or _under(path, storage.checkpoint_mount)
        ):
            raise ClusterConfigError(
                f"{parameter}: {path!r} is on neither shared volume the job mounts "
                f"({storage.data_mount}, {storage.checkpoint_mount})"
            )
    for parameter, path in writes.items():
        if not _under(path, storage.checkpoint_mount):
            raise ClusterConfigError(
                f"{parameter}: {path!r} must be on the checkpoint volume "
                f"({storage.checkpoint_mount}) for the job's nodes to write it"
            )


@dataclass(frozen=True)
class MultiNodeSettings:
    """Where and how a multi-node training job runs. Empty strings take the cluster's
    `cxrflow-gpu-pool` ConfigMap value (backend, image, runtime), else the stage's default."""

    nodes: int
    gpus_per_node: int = 1
    backend: str = ""
    image: str = ""
    namespace: str = ""
    cpu_per_node: str = "8"
    memory_per_node: str = "64Gi"
    timeout_s: float = 0.0
    poll_interval_s: float = 30.0
    keep_job: bool = False
    storage: JobStorage = field(default_factory=JobStorage)
    # The Trainer runtime (TrainJob backend only): "" for the stage's default.
    runtime: str = ""


class StageArgs(Protocol):
    """What the launcher needs of a stage's arguments (PretrainArgs, ReportArgs)."""

    out_dir: str
    pipeline_run: str

    def to_argv(self) -> tuple[str, ...]: ...

    def result_file(self) -> Path: ...


def build_stage_job(
    stage: str,
    program: tuple[str, ...],
    args: StageArgs,
    settings: MultiNodeSettings,
    *,
    name: str,
    namespace: str,
    image: str,
    backend: str,
    pool: GpuPool,
    env: Mapping[str, str],
    runtime: str = "torch-distributed",
    override_api: str = "runtimePatches",
) -> dict[str, Any]:
    """The TrainJob (`runtime`) or PyTorchJob (torchrun) running `program <args>` on every node."""
    if backend not in BACKENDS:
        raise ClusterConfigError(f"backend: {backend!r} is not one of {BACKENDS}")
    cfg = DistributedJobConfig(
        name=name,
        image=image,
        args=args.to_argv(),
        program=program,
        namespace=namespace,
        nodes=settings.nodes,
        gpus_per_node=settings.gpus_per_node,
        cpu_per_node=settings.cpu_per_node,
        memory_per_node=settings.memory_per_node,
        env=dict(env),
        labels={"cxrflow.io/stage": stage},
        gpu_pool=pool,
        storage=settings.storage,
    )
    if backend == "pytorchjob":
        return pytorchjob.build_pytorchjob(cfg)
    return trainjob.build_trainjob(
        cfg,
        runtime=runtime,  # type: ignore[arg-type]  (checked by build_trainjob)
        override_api=override_api,  # type: ignore[arg-type]  (checked by build_trainjob)
    )


def build_pretrain_job(
    args: PretrainArgs,
    settings: MultiNodeSettings,
    *,
    name: str,
    namespace: str,
    image: str,
    backend: str,
    pool: GpuPool,
    env: Mapping[str, str],
    override_api: str = "runtimePatches",
    runtime: str = PRETRAIN_RUNTIME,
) -> dict[str, Any]:
    """The TrainJob (torch-distributed runtime) or PyTorchJob running the entry on every node."""
    world_size = settings.nodes * settings.gpus_per_node
    config = args.config()
    per_step = world_size * config.grad_accum_steps
    if config.batch_size % per_step:
        raise ClusterConfigError(
            f"batch_size: {config.batch_size} is not divisible by world size {world_size} "
            f"x grad_accum_steps {config.grad_accum_steps} ({settings.nodes} nodes x "
            f"{settings.gpus_per_node} GPUs)"
        )
    return build_stage_job(
        "pretrain",
        PRETRAIN_PROGRAM,
        args,
        settings,
        name=name,
        namespace=namespace,
        image=image,
        backend=backend,
        pool=pool,
        env=env,
        runtime=runtime,
        override_api=override_api,
    )


def build_report_job(
    args: ReportArgs,
    settings: MultiNodeSettings,
    *,
    name: str,
    namespace: str,
    image: str,
    backend: str,
    pool: GpuPool,
    env: Mapping[str, str],
    override_api: str = "runtimePatches",
    runtime: str = REPORT_RUNTIME,
) -> dict[str, Any]:
    """The TrainJob (deepspeed-distributed runtime: mpirun) or PyTorchJob (torchrun) running the
    report entry on every node; the global batch must split over all GPUs."""
    world_size = settings.nodes * settings.gpus_per_node
    try:
        args.config().accumulation_steps(world_size)
    except ValueError as exc:
        raise ClusterConfigError(
            f"global_batch_size: {exc} ({settings.nodes} nodes x {settings.gpus_per_node} GPUs)"
        ) from exc
    return build_stage_job(
        "report",
        REPORT_PROGRAM,
        args,
        settings,
        name=name,
        namespace=namespace,
        image=image,
        backend=backend,
        pool=pool,
        env=env,
        runtime=runtime,
        override_api=override_api,
    )


def collect_outcome(
    result_file: Path,
    missing: Callable[[dict[str, Any]], str],
    *,
    error: type[LaunchError] = LaunchError,
    attempts: int = 6,
    delay_s: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """The stage outcome rank 0 wrote, once `missing(outcome)` finds nothing missing.

    A few attempts: a ReadWriteMany volume (NFS and friends) may show another node's files a
    little late.
    """
    problem = ""
    for attempt in range(attempts):
        if attempt:
            sleep(delay_s)
        if not result_file.is_file():
            problem = f"the job's result file {result_file} is missing"
            continue
        outcome = json.loads(result_file.read_text())
        problem = missing(outcome)
        if not problem:
            return outcome
    raise error(f"{problem} after the job succeeded (is {result_file.parent} shared?)")


def _missing_encoder(outcome: dict[str, Any]) -> str:
    encoder_dir = Path(outcome.get("encoder_dir") or "")
    missing = [f for f in ENCODER_FILES if not (encoder_dir / f).is_file()]
    return f"the exported encoder {encoder_dir} lacks {', '.join(missing)}" if missing else ""


def _missing_report_model(outcome: dict[str, Any]) -> str:
    model_dir = Path(outcome.get("model_dir") or "")
    lacks = [f for f in REPORT_MODEL_FILES if not (model_dir / f).is_file()]
    if model_dir.is_dir() and not any(model_dir.glob("*.safetensors")):
        lacks.append("*.safetensors")
    if not model_dir.is_dir():
        lacks = [*REPORT_MODEL_FILES, "*.safetensors"]
    if lacks:
        return f"the saved report model {model_dir} lacks {', '.join(lacks)}"
    results = Path(outcome.get("results") or "")
    return "" if results.is_file() else f"the report metrics {results} are missing"


def launch_stage(
    stage: str,
    args: StageArgs,
    settings: MultiNodeSettings,
    *,
    build: Callable[..., dict[str, Any]],
    missing: Callable[[dict[str, Any]], str],
    missing_error: type[LaunchError],
    reads: Mapping[str, str],
    default_runtime: str,
    custom_api: Any = None,
    core_api: Any = None,
    environ: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    runtime_key: str = "trainer-runtime",
) -> dict[str, Any]:
    """Run one stage as a multi-node job and return the outcome rank 0 wrote.

    `build(args, settings, name=, namespace=, image=, backend=, pool=, env=, override_api=,
    runtime=)` makes the job object; `missing(outcome)` names what the outcome lacks on the
    shared volume (raised as `missing_error`, see collect_outcome); `reads` are the inputs that
    must lie on a shared volume (`args.out_dir` is the one written). The returned dict gains
    `job` (kind namespace/name).
    """
    if settings.nodes < 2:
        raise ClusterConfigError(f"nodes: {settings.nodes!r} must be >= 2 for a multi-node job")
    if custom_api is None or core_api is None:
        custom_api, core_api = kube_apis()
    namespace = settings.namespace or current_namespace()
    pool_data = read_pool_config(core_api, namespace)
    backend = settings.backend or pool_data.get("backend") or "trainjob"
    image = settings.image or pool_data.get("image", "")
    runtime = settings.runtime or pool_data.get(runtime_key) or default_runtime
    if not image:
        raise ClusterConfigError(
            "image: no job image given and none in the cxrflow-gpu-pool ConfigMap"
        )
    check_shared_paths(settings.storage, reads=reads, writes={"out_dir": args.out_dir})
    job = build(
        args,
        settings,
        name=job_name(stage, args.pipeline_run, args.out_dir),
        namespace=namespace,
        image=image,
        backend=backend,
        pool=GpuPool.from_configmap(pool_data),
        env=forwarded_env(environ),
        override_api=pool_data.get("trainer-override-api", "runtimePatches"),
        runtime=runtime,
    )
    launcher = JobLauncher(
        custom_api,
        core_api,
        poll_interval_s=settings.poll_interval_s,
        timeout_s=settings.timeout_s,
        keep_job=settings.keep_job,
        clock=clock,
        sleep=sleep,
    )
    result = launcher.run(job)
    outcome = collect_outcome(args.result_file(), missing, error=missing_error, sleep=sleep)
    outcome["job"] = str(result.job)
    return outcome


def launch_pretrain(
    args: PretrainArgs,
    settings: MultiNodeSettings,
    *,
    custom_api: Any = None,
    core_api: Any = None,
    environ: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Run pre-training as a multi-node job and return the stage outcome rank 0 wrote.

    The returned dict holds `encoder_dir`, `encoder_version`, `mlflow_run_id` and `metrics`, as
    the single-node path returns them, plus `job` (kind namespace/name). The entry reads
    torchrun's variables: the TrainJob uses the torch-distributed runtime whatever the
    ConfigMap's `trainer-runtime` says.
    """
    return launch_stage(
        "pretrain",
        args,
        replace(settings, runtime=PRETRAIN_RUNTIME),
        build=build_pretrain_job,
        missing=_missing_encoder,
        missing_error=EncoderMissingError,
        reads={"data_dir": args.data_dir, "init_from": args.init_from},
        default_runtime=PRETRAIN_RUNTIME,
        custom_api=custom_api,
        core_api=core_api,
        environ=environ,
        clock=clock,
        sleep=sleep,
    )


def launch_report(
    args: ReportArgs,
    settings: MultiNodeSettings,
    *,
    custom_api: Any = None,
    core_api: Any = None,
    environ: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Run report fine-tuning as a multi-node job and return the outcome rank 0 wrote.

    The returned dict holds `model_dir`, `model_version`, `model_uri`, `mlflow_run_id`,
    `results` and `table_markdown`, as the single-node path returns them, plus `job`. A TrainJob
    uses the `deepspeed-distributed` runtime unless `settings.runtime` or the ConfigMap's
    `report-trainer-runtime` names another; without a ZeRO config in `args` or the preset the
    job runs ZeRO-2 (DEFAULT_REPORT_ZERO).
    """
    if not args.deepspeed and not args.config().deepspeed:
        args = replace(args, deepspeed=DEFAULT_REPORT_ZERO)
    return launch_stage(
        "report",
        args,
        settings,
        build=build_report_job,
        missing=_missing_report_model,
        missing_error=ReportModelMissingError,
        reads={
            "data_dir": args.data_dir,
            "encoder_dir": args.encoder_dir,
            "lm_dir": args.lm_dir,
        },
        default_runtime=REPORT_RUNTIME,
        runtime_key="report-trainer-runtime",
        custom_api=custom_api,
        core_api=core_api,
        environ=environ,
        clock=clock,
        sleep=sleep,
    )
