"""The stages that run as multi-node jobs, described as data, and the job object of one run.

A `StageSpec` says what the launcher needs to know of a stage: the entry stage every process
runs (`python -m cxrflow.cluster.entry STAGE`, a key of `cxrflow.cluster.entry.STAGES`), the
Trainer runtime of its TrainJob and whether the cluster may choose another, which of its
`Params` fields must lie on the shared volumes, which outputs its outcome names and what they
must hold once the job has succeeded, its check of the world size and any change to its
parameters before they go to the job. `SPECS` holds the two such stages (pre-training and report
fine-tuning); `build_job` turns a stage, its parameters and the settings into the TrainJob or
PyTorchJob object, named by `job_name`, after `check_shared_paths` has found the paths it reads
and writes on the job's volumes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from cxrflow.cluster import entry, pytorchjob, trainjob
from cxrflow.cluster.config import (
    ClusterConfigError,
    DistributedJobConfig,
    GpuPool,
    JobStorage,
    check_name,
)
from cxrflow.cluster.errors import EncoderMissingError, LaunchError, ReportModelMissingError
from cxrflow.stages.contract import to_argv

if TYPE_CHECKING:
    from cxrflow.cluster.launcher import MultiNodeSettings

BACKENDS: tuple[str, ...] = ("trainjob", "pytorchjob")
# The ZeRO stage of a multi-node report job whose parameters and preset name none.
DEFAULT_REPORT_ZERO = "zero2"


@dataclass(frozen=True)
class Output:
    """A path that the stage's outcome names under `key` and that must be on the shared volume.

    With `files` or `globs`: a directory holding each of `files` and at least one match of each
    pattern in `globs`; `message` (with `{path}` and `{lacks}`) says what it lacks. Without: a
    file; `message` (with `{path}`) says it is missing.
    """

    key: str
    message: str
    files: tuple[str, ...] = ()
    globs: tuple[str, ...] = ()

    def missing(self, outcome: Mapping[str, Any]) -> str:
        """What of this output is not there ("" when all is)."""
        path = Path(outcome.get(self.key) or "")
        if not self.files and not self.globs:
            return "" if path.is_file() else self.message.format(path=path)
        lacks = [f for f in self.files if not (path / f).is_file()]
        lacks += [g for g in self.globs if not any(path.glob(g))]
        return self.message.format(path=path, lacks=", ".join(lacks)) if lacks else ""


def _any_world(params: Any, nodes: int, gpus_per_node: int) -> None:
    """No constraint on the world size."""


def _as_given(params: Any) -> Any:
    return params


@dataclass(frozen=True)
class StageSpec:
    """What the launcher needs to know to run one stage as a multi-node job."""

    # The stage every process runs: a key of cxrflow.cluster.entry.STAGES.
    stage: str
    # The Trainer runtime of its TrainJob (the PyTorchJob backend always runs torchrun).
    runtime: str
    # The ConfigMap key that may name another runtime (as may the settings' `runtime`); None:
    # always `runtime`, whatever the settings and the ConfigMap say.
    runtime_key: str | None
    # Params fields that must lie on a shared volume (read by the job; `out_dir` is written).
    reads: tuple[str, ...]
    # What the outcome names and must be on the shared volume once the job has succeeded.
    outputs: tuple[Output, ...]
    # Raised when an output is missing.
    missing_error: type[LaunchError]
    # (params, nodes, gpus_per_node): raises ClusterConfigError when the world does not fit.
    check_world: Callable[[Any, int, int], None] = _any_world
    # The parameters the job runs with, from the caller's.
    prepare: Callable[[Any], Any] = _as_given

    def runtime_for(self, settings_runtime: str, pool: Mapping[str, str]) -> str:
        """The TrainJob's runtime: the settings', else the ConfigMap's, else the default."""
        if self.runtime_key is None:
            return self.runtime
        return settings_runtime or pool.get(self.runtime_key) or self.runtime

    def missing(self, outcome: Mapping[str, Any]) -> str:
        """The first output the outcome lacks on the shared volume ("" when none)."""
        for output in self.outputs:
            problem = output.missing(outcome)
            if problem:
                return problem
        return ""


def _check_pretrain_world(params: Any, nodes: int, gpus_per_node: int) -> None:
    """The global batch splits over all processes and accumulation steps."""
    world_size = nodes * gpus_per_node
    config = params.config()
    per_step = world_size * config.grad_accum_steps
    if config.batch_size % per_step:
        raise ClusterConfigError(
            f"batch_size: {config.batch_size} is not divisible by world size {world_size} "
            f"x grad_accum_steps {config.grad_accum_steps} ({nodes} nodes x "
            f"{gpus_per_node} GPUs)"
        )


def _check_report_world(params: Any, nodes: int, gpus_per_node: int) -> None:
    """The global batch splits over all GPUs in per-device batches."""
    try:
        params.config().accumulation_steps(nodes * gpus_per_node)
    except ValueError as exc:
        raise ClusterConfigError(
            f"global_batch_size: {exc} ({nodes} nodes x {gpus_per_node} GPUs)"
        ) from exc


def _report_zero(params: Any) -> Any:
    """ZeRO-2 unless the parameters or the preset name a DeepSpeed config."""
    if not params.deepspeed and not params.config().deepspeed:
        return replace(params, deepspeed=DEFAULT_REPORT_ZERO)
    return params


SPECS: dict[str, StageSpec] = {
    # The entry reads torchrun's variables: the torch-distributed runtime, whatever the
    # ConfigMap's `trainer-runtime` says. Outcome: encoder_dir, encoder_version, mlflow_run_id,
    # metrics (a Hugging Face DINOv2 export holds at the least config.json and the weights).
    "pretrain": StageSpec(
        stage="pretrain",
        runtime="torch-distributed",
        runtime_key=None,
        reads=("data_dir", "init"),
        outputs=(
            Output(
                "encoder_dir",
                "the exported encoder {path} lacks {lacks}",
                files=("config.json", "model.safetensors"),
            ),
        ),
        missing_error=EncoderMissingError,
        check_world=_check_pretrain_world,
    ),
    # mpirun under the MPI-based DeepSpeed runtime unless the settings or the ConfigMap's
    # `report-trainer-runtime` name another. Outcome: model_dir, model_version, model_uri,
    # mlflow_run_id, results, table_markdown.
    "report": StageSpec(
        stage="report",
        runtime="deepspeed-distributed",
        runtime_key="report-trainer-runtime",
        reads=("data_dir", "encoder_dir", "lm_dir"),
        outputs=(
            Output(
                "model_dir",
                "the saved report model {path} lacks {lacks}",
                files=("config.json",),
                globs=("*.safetensors",),
            ),
            Output("results", "the report metrics {path} are missing"),
        ),
        missing_error=ReportModelMissingError,
        check_world=_check_report_world,
        prepare=_report_zero,
    ),
}


def spec_of(stage: str) -> StageSpec:
    """The spec of `stage`, or ClusterConfigError naming the known ones."""
    if stage not in SPECS:
        raise ClusterConfigError(f"stage: {stage!r} is not one of {', '.join(SPECS)}")
    return SPECS[stage]


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
    storage: JobStorage,
    *,
    reads: Mapping[str, str | Path | None],
    writes: Mapping[str, str | Path],
) -> None:
    """Refuse paths the job's pods would not see: they mount only the job's volumes.

    `reads` may lie on the data or the checkpoint volume (None or "": not set, nothing to
    check); `writes` only on the checkpoint volume (the data volume is mounted read-only in
    training pods). Keys name the parameters.
    """
    for parameter, value in reads.items():
        path = "" if value is None else str(value)
        if path and not (
            _under(path, storage.data_mount) or _under(path, storage.checkpoint_mount)
        ):
            raise ClusterConfigError(
                f"{parameter}: {path!r} is on neither shared volume the job mounts "
                f"({storage.data_mount}, {storage.checkpoint_mount})"
            )
    for parameter, value in writes.items():
        path = str(value)
        if not _under(path, storage.checkpoint_mount):
            raise ClusterConfigError(
                f"{parameter}: {path!r} must be on the checkpoint volume "
                f"({storage.checkpoint_mount}) for the job's nodes to write it"
            )


def build_job(
    stage: str,
    params: Any,
    settings: MultiNodeSettings,
    *,
    name: str,
    namespace: str,
    image: str,
    backend: str,
    pool: GpuPool,
    env: Mapping[str, str],
    runtime: str = "",
    override_api: str = "runtimePatches",
) -> dict[str, Any]:
    """The TrainJob (on `runtime`, by default the stage's) or PyTorchJob (torchrun) running
    `python -m cxrflow.cluster.entry STAGE <params as options>` on every node."""
    spec = spec_of(stage)
    spec.check_world(params, settings.nodes, settings.gpus_per_node)
    if backend not in BACKENDS:
        raise ClusterConfigError(f"backend: {backend!r} is not one of {BACKENDS}")
    cfg = DistributedJobConfig(
        name=name,
        image=image,
        args=to_argv(params),
        program=entry.program(spec.stage),
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
        runtime=runtime or spec.runtime,  # type: ignore[arg-type]  (checked by build_trainjob)
        override_api=override_api,  # type: ignore[arg-type]  (checked by build_trainjob)
    )
