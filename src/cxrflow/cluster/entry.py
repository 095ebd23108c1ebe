"""The entry point every process of a multi-node stage runs: `python -m cxrflow.cluster.entry`.

`python -m cxrflow.cluster.entry STAGE --option value ...` parses the stage's `Params` from the
command line (the options are its fields, see `cxrflow.stages.contract`), runs the stage and,
on rank 0, writes the stage's result as JSON to `<out_dir>/stage_result.json`, which the
launcher reads from the shared volume once the job has succeeded. It runs alone, under
`torchrun` (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_* set) and under `mpirun` as the Kubeflow
Trainer's `deepspeed-distributed` runtime starts it (OpenMPI's OMPI_COMM_WORLD_* variables are
translated to torch.distributed's).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cxrflow.stages import pretrain as pretrain_stage
from cxrflow.stages import report as report_stage
from cxrflow.stages.contract import from_argv, to_argv, to_json, write_json_atomic

MODULE = "cxrflow.cluster.entry"
RESULT_FILE = "stage_result.json"
# OpenMPI's per-process variables and the torch.distributed names they stand for.
OMPI_TO_TORCH: tuple[tuple[str, str], ...] = (
    ("OMPI_COMM_WORLD_RANK", "RANK"),
    ("OMPI_COMM_WORLD_SIZE", "WORLD_SIZE"),
    ("OMPI_COMM_WORLD_LOCAL_RANK", "LOCAL_RANK"),
    ("OMPI_COMM_WORLD_LOCAL_SIZE", "LOCAL_WORLD_SIZE"),
)
DEFAULT_MASTER_PORT = "29500"


@dataclass(frozen=True)
class EntryStage:
    """A stage that can run on every process of a distributed job."""

    params: type
    run: Callable[[Any], Any]


STAGES: dict[str, EntryStage] = {
    "pretrain": EntryStage(pretrain_stage.Params, pretrain_stage.run),
    "report": EntryStage(report_stage.Params, report_stage.run),
}


def program(stage: str) -> tuple[str, ...]:
    """The command that runs `stage` (before its options)."""
    if stage not in STAGES:
        raise ValueError(f"stage: {stage!r} is not one of {', '.join(STAGES)}")
    return ("python", "-m", MODULE, stage)


def command(stage: str, params: Any) -> tuple[str, ...]:
    """The whole command line of one process of `stage` with `params`."""
    return (*program(stage), *to_argv(params))


def result_file(params: Any) -> Path:
    """Where rank 0 writes the stage's outcome: in the run's own directory."""
    return Path(params.out_dir) / RESULT_FILE


def rank() -> int:
    """This process's global rank (0 without a launcher)."""
    return int(os.environ.get("RANK", "0"))


def torch_env_from_mpi(environ: MutableMapping[str, str] | None = None) -> bool:
    """Under mpirun (and not torchrun), set RANK/WORLD_SIZE/LOCAL_RANK from OpenMPI's variables.

    Without this, a launcher-less process would take itself for a lone rank 0. MASTER_ADDR
    comes from the job's `mpirun -x` exports; MASTER_PORT defaults to 29500. True when the
    variables were set.
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


def outcome_of(result: Any, params: Any) -> dict[str, Any]:
    """The stage's result as JSON, with the parameters it ran with."""
    data = result.to_json() if hasattr(result, "to_json") else to_json(result)
    return {**data, "params": to_json(params)}


def run(stage: str, params: Any) -> dict[str, Any] | None:
    """Run `stage` on this process; on rank 0 also write (and return) its outcome."""
    torch_env_from_mpi()
    path = result_file(params)
    if rank() == 0:  # a stale outcome of an earlier attempt must not count
        path.unlink(missing_ok=True)
    result = STAGES[stage].run(params)
    if result is None:  # ranks > 0
        return None
    outcome = outcome_of(result, params)
    write_json_atomic(path, outcome)
    return outcome


def parse(argv: Sequence[str]) -> tuple[str, Any]:
    """`STAGE --option value ...` -> (stage, its Params)."""
    if not argv or argv[0] not in STAGES:
        raise SystemExit(
            f"usage: python -m {MODULE} {{{','.join(STAGES)}}} --option value ...\n"
            f"unknown stage: {argv[0] if argv else '(none)'}"
        )
    stage = argv[0]
    return stage, from_argv(STAGES[stage].params, argv[1:], prog=f"python -m {MODULE} {stage}")


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry: parse, then run."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    stage, params = parse(list(sys.argv[1:] if argv is None else argv))
    run(stage, params)


if __name__ == "__main__":
    main()
