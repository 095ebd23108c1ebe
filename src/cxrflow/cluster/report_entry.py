"""The report fine-tuning entry point every process runs, in the pipeline's pod or on every node.

`python -m cxrflow.cluster.report_entry --data-dir ... --encoder-dir ... --out-dir ... [options]`
runs alone (one process), under `torchrun` (which sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_*)
and under `mpirun` as the Kubeflow Trainer `deepspeed-distributed` runtime starts it (OpenMPI
sets OMPI_COMM_WORLD_*; the job's command exports MASTER_ADDR/MASTER_PORT). Every rank runs
`run_report_stage`, which trains through the Hugging Face Trainer (with the ZeRO config of
`--deepspeed` or the preset) and stops after training on ranks > 0; rank 0 also evaluates,
logs and registers, and writes the stage's outcome as JSON to `--result-file`, which the
launcher reads once the job has succeeded. The pipeline's single-node step calls `run()`.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from cxrflow.cluster.pretrain_entry import (
    RESULT_FILE,
    dataclass_argv,
    parse_dataclass_args,
    rank,
    write_result,
)

MODULE = "cxrflow.cluster.report_entry"
PROGRAM: tuple[str, ...] = ("python", "-m", MODULE)
# OpenMPI's per-process variables and the torch.distributed names they stand for.
OMPI_TO_TORCH: tuple[tuple[str, str], ...] = (
    ("OMPI_COMM_WORLD_RANK", "RANK"),
    ("OMPI_COMM_WORLD_SIZE", "WORLD_SIZE"),
    ("OMPI_COMM_WORLD_LOCAL_RANK", "LOCAL_RANK"),
    ("OMPI_COMM_WORLD_LOCAL_SIZE", "LOCAL_WORLD_SIZE"),
)
DEFAULT_MASTER_PORT = "29500"


@dataclass(frozen=True)
class ReportArgs:
    """The arguments of one report stage run (the component's inputs, as plain values)."""

    data_dir: str
    encoder_dir: str
    out_dir: str
    data_version: str
    encoder_version: str = ""
    preset: str = "tiny"
    lm_dir: str = ""
    steps: int = 0
    deepspeed: str = ""  # "" keeps the preset's; "zero2", "zero3" or a JSON path
    pipeline_run: str = ""

    @classmethod
    def in_runs_dir(cls, runs_dir: str, **values: Any) -> ReportArgs:
        """The arguments with `out_dir` the run's folder under `runs_dir` (as the single-node
        step has always named it: data version, encoder version, preset)."""
        args = cls(out_dir="", **values)
        name = f"report-{args.data_version[:12]}-{args.encoder_version or 'local'}-{args.preset}"
        return replace(args, out_dir=str(Path(runs_dir) / name))

    def config(self) -> Any:
        """The ReportConfig: the preset, `steps` > 0 as max_steps, `deepspeed` if set."""
        from cxrflow.report.config import ReportConfig

        overrides: dict[str, Any] = {}
        if self.steps > 0:
            overrides["max_steps"] = self.steps
        if self.deepspeed:
            overrides["deepspeed"] = self.deepspeed
        return ReportConfig.named(self.preset, **overrides)

    def result_file(self) -> Path:
        """Where rank 0 writes the stage's outcome."""
        return Path(self.out_dir) / RESULT_FILE

    def to_argv(self) -> tuple[str, ...]:
        """Command-line arguments that `parse_args` turns back into these values."""
        return dataclass_argv(self)


def parse_args(argv: Sequence[str] | None = None) -> ReportArgs:
    """Parse the command line (see `ReportArgs` for the options)."""
    return parse_dataclass_args(ReportArgs, argv, module=MODULE, description=__doc__)


def torch_env_from_mpi(environ: MutableMapping[str, str] | None = None) -> bool:
    """Under mpirun (and not torchrun), set RANK/WORLD_SIZE/LOCAL_RANK from OpenMPI's variables.

    Without this, the report trainer would take a launcher-less process for a lone rank 0.
    MASTER_ADDR comes from the job's `mpirun -x` exports; MASTER_PORT defaults to 29500.
    True when the variables were set.
    """
    environ = os.environ if environ is None else environ
    if "RANK" in environ or "OMPI_COMM_WORLD_RANK" not in environ:
        return False
    for ompi, torch_name in OMPI_TO_TORCH:
        if ompi in environ:
            environ[torch_name] = environ[ompi]
    if "MASTER_ADDR" not in environ:
        raise RuntimeError(
            "running under mpirun without MASTER_ADDR: start it with -x MASTER_ADDR=<rank-0 host>"
        )
    environ.setdefault("MASTER_PORT", DEFAULT_MASTER_PORT)
    return True


def run(args: ReportArgs) -> dict[str, Any] | None:
    """Train on every rank; on rank 0 also evaluate and register, and return (and write) the
    stage's outcome. Ranks > 0 return None once training is done."""
    from cxrflow.report.stage import METRICS_FILE, run_report_stage

    torch_env_from_mpi()
    result_file = args.result_file()
    if rank() == 0:  # a stale outcome of an earlier attempt must not count
        result_file.unlink(missing_ok=True)
    try:
        out = run_report_stage(
            Path(args.data_dir),
            Path(args.encoder_dir),
            lm_dir=Path(args.lm_dir) if args.lm_dir else None,
            data_version=args.data_version,
            encoder_version=args.encoder_version,
            config=args.config(),
            out_dir=Path(args.out_dir),
            pipeline_run=args.pipeline_run,
        )
    except SystemExit as stop:  # the stage ends ranks > 0 after training with exit code 0
        if rank() > 0 and stop.code in (0, None):
            return None
        raise
    outcome = {
        "model_dir": str(out.model_dir),
        "model_version": out.model_version,
        "model_uri": out.model_uri,
        "mlflow_run_id": out.mlflow_run_id,
        "results": str(Path(args.out_dir) / METRICS_FILE),
        "table_markdown": out.table_markdown,
        "args": asdict(args),
    }
    write_result(result_file, outcome)
    return outcome


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry: parse, then run."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    run(parse_args(argv))


if __name__ == "__main__":
    main()
