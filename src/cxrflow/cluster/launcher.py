"""Run a stage as a multi-node TrainJob or PyTorchJob from a pipeline step: create, follow, collect.

A stage's step with `nodes > 1` does not train: `launch(stage, params, settings)` creates a
Kubeflow Trainer `TrainJob` (or a Training Operator `PyTorchJob`) that runs
`python -m cxrflow.cluster.entry STAGE --option value ...` on every node (under torchrun, or
under mpirun on the Trainer's `deepspeed-distributed` runtime), follows the job's status
conditions, streams the logs of the rank-0 pod into its own log, fails with the job's message
when the job fails or a time limit passes, deletes the job (unless asked to keep it), and
finally reads the outcome rank 0 wrote and checks that the outputs it names are on the shared
volume. What differs between stages (runtime, shared inputs, outputs, world-size checks) is data
in `cxrflow.cluster.stage_specs.SPECS`.

The Kubernetes API objects are arguments (`kubernetes.client.CustomObjectsApi` and `CoreV1Api`
in production, `cxrflow.cluster.kube.kube_apis()` builds them), so that tests can pass a small
in-memory stand-in implementing the few methods used.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes.client.exceptions import ApiException

from cxrflow.cluster import entry
from cxrflow.cluster.config import ClusterConfigError, GpuPool, JobStorage
from cxrflow.cluster.errors import (
    EncoderMissingError,
    JobFailedError,
    JobTimeoutError,
    LaunchError,
    ReportModelMissingError,
)
from cxrflow.cluster.kube import (
    JobRef,
    api_message,
    current_namespace,
    forwarded_env,
    kube_apis,
    read_pool_config,
)
from cxrflow.cluster.pod_logs import PodLogFollower, rank0_pod
from cxrflow.cluster.stage_specs import build_job, check_shared_paths, job_name, spec_of
from cxrflow.cluster.status import JobPhase, JobState, job_state

__all__ = [
    "EncoderMissingError",
    "JobFailedError",
    "JobLauncher",
    "JobTimeoutError",
    "LaunchError",
    "LaunchResult",
    "MultiNodeSettings",
    "ReportModelMissingError",
    "check_shared_paths",
    "collect_outcome",
    "job_name",
    "launch",
    "raise_on_sigterm",
]

log = logging.getLogger(__name__)


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
                    f"could not create {ref}: {exc.status} {api_message(exc)}"
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


def _read_path(value: Any) -> Any:
    """The file a parameter reads: a path, or a value's `local_path` (a registry init reads
    none: the pods download it from MLflow)."""
    return getattr(value, "local_path", value)


def launch(
    stage: str,
    params: Any,
    settings: MultiNodeSettings,
    *,
    custom_api: Any = None,
    core_api: Any = None,
    environ: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Run `stage` (a key of stage_specs.SPECS) with `params` (its `Params`) as a multi-node job.

    Returns the outcome rank 0 wrote, as the single-node path returns it (the stage result's
    JSON plus `params`, see cxrflow.cluster.entry), plus `job` (kind namespace/name). Raises
    ClusterConfigError before creating anything when the settings or paths cannot work, a
    LaunchError when the job fails, times out or leaves its outputs missing (the stage spec's
    `missing_error`). `environ` gives the settings forwarded to the job (os.environ by default).
    """
    spec = spec_of(stage)
    expected = entry.STAGES[spec.stage].params
    if not isinstance(params, expected):
        raise ClusterConfigError(
            f"params: {type(params).__name__} is not {expected.__module__}.{expected.__name__}"
        )
    params = spec.prepare(params)
    if settings.nodes < 2:
        raise ClusterConfigError(f"nodes: {settings.nodes!r} must be >= 2 for a multi-node job")
    if custom_api is None or core_api is None:
        custom_api, core_api = kube_apis()
    namespace = settings.namespace or current_namespace()
    pool_data = read_pool_config(core_api, namespace)
    backend = settings.backend or pool_data.get("backend") or "trainjob"
    image = settings.image or pool_data.get("image", "")
    if not image:
        raise ClusterConfigError(
            "image: no job image given and none in the cxrflow-gpu-pool ConfigMap"
        )
    check_shared_paths(
        settings.storage,
        reads={name: _read_path(getattr(params, name)) for name in spec.reads},
        writes={"out_dir": params.out_dir},
    )
    job = build_job(
        stage,
        params,
        settings,
        name=job_name(stage, params.pipeline_run, str(params.out_dir)),
        namespace=namespace,
        image=image,
        backend=backend,
        pool=GpuPool.from_configmap(pool_data),
        env=forwarded_env(environ),
        runtime=spec.runtime_for(settings.runtime, pool_data),
        override_api=pool_data.get("trainer-override-api", "runtimePatches"),
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
    outcome = collect_outcome(
        entry.result_file(params), spec.missing, error=spec.missing_error, sleep=sleep
    )
    outcome["job"] = str(result.job)
    return outcome
