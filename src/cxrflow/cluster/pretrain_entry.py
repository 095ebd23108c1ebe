"""The pre-training entry point every process runs, in the pipeline's pod or on every node of a job.

`python -m cxrflow.cluster.pretrain_entry --data-dir ... --out-dir ... [options]` runs unchanged
alone (one process) and under `torchrun` (one process per GPU on every node, which sets RANK and
WORLD_SIZE): every rank trains with `cxrflow.ssl.train.pretrain`; rank 0 runs the whole stage
(`run_pretrain_stage`: MLflow run, export, attention maps, probe, registration) around it and
writes the stage's outcome as JSON to `--result-file`, which the launcher reads once the job has
succeeded. The pipeline's single-node step calls `run()` in-process with the same arguments.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from dataclasses import MISSING, asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

MODULE = "cxrflow.cluster.pretrain_entry"
PROGRAM: tuple[str, ...] = ("python", "-m", MODULE)
RESULT_FILE = "stage_result.json"


@dataclass(frozen=True)
class PretrainArgs:
    """The arguments of one pre-training stage run (the component's inputs, as plain values)."""

    data_dir: str
    out_dir: str
    data_version: str
    preset: str = "tiny"
    steps: int = 0
    batch_size: int = 0
    seed: int = 0
    init_from: str = ""
    dvc_remote: str = ""
    pipeline_run: str = ""

    @classmethod
    def in_runs_dir(cls, runs_dir: str, **values: Any) -> PretrainArgs:
        """The arguments with `out_dir` set to the run's folder under `runs_dir`: one folder per
        data version and settings, so that a retried step resumes from its checkpoints."""
        from cxrflow.stages.pretrain import work_dir_for

        args = cls(out_dir="", **values)
        out_dir = work_dir_for(Path(runs_dir), args.data_version, args.config(), args.init_from)
        return replace(args, out_dir=str(out_dir))

    def config(self) -> Any:
        """The PretrainConfig: the preset with non-zero `steps`/`batch_size` overriding it."""
        from cxrflow.ssl.presets import preset as named_preset

        changes = {
            k: v for k, v in {"steps": self.steps, "batch_size": self.batch_size}.items() if v
        }
        return named_preset(self.preset, seed=self.seed, **changes)

    def result_file(self) -> Path:
        """Where rank 0 writes the stage's outcome."""
        return Path(self.out_dir) / RESULT_FILE

    def to_argv(self) -> tuple[str, ...]:
        """Command-line arguments that `parse_args` turns back into these values."""
        return dataclass_argv(self)


def dataclass_argv(values: Any) -> tuple[str, ...]:
    """`--field value` for every field of a dataclass of str/int fields."""
    argv: list[str] = []
    for f in fields(values):
        argv += [f"--{f.name.replace('_', '-')}", str(getattr(values, f.name))]
    return tuple(argv)


def parse_dataclass_args(
    cls: type[Any], argv: Sequence[str] | None, *, module: str, description: str | None
) -> Any:
    """The inverse of `dataclass_argv`: fields without a default are required options."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=description)
    for f in fields(cls):
        flag = f"--{f.name.replace('_', '-')}"
        kind = int if f.type in ("int", int) else str
        if f.default is MISSING:
            parser.add_argument(flag, dest=f.name, type=kind, required=True)
        else:
            parser.add_argument(flag, dest=f.name, type=kind, default=f.default)
    return cls(**vars(parser.parse_args(argv)))


def parse_args(argv: Sequence[str] | None = None) -> PretrainArgs:
    """Parse the command line (see `PretrainArgs` for the options)."""
    return parse_dataclass_args(PretrainArgs, argv, module=MODULE, description=__doc__)


def rank() -> int:
    """This process's global rank (0 without torchrun)."""
    return int(os.environ.get("RANK", "0"))


def write_result(path: Path, result: dict[str, Any]) -> None:
    """Write the outcome atomically: a reader on the shared volume never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def run(args: PretrainArgs) -> dict[str, Any] | None:
    """Train; on rank 0 also run the stage around it and return (and write) its outcome."""
    from cxrflow.stages.pretrain import run_pretrain_stage

    config = args.config()
    data_dir, out_dir = Path(args.data_dir), Path(args.out_dir)
    init_from = Path(args.init_from) if args.init_from else None
    if rank() > 0:  # workers train; rank 0 also logs, exports and registers
        from cxrflow.ssl.train import pretrain

        pretrain(config, data_dir, out_dir, init_from=init_from, progress=False)
        return None
    result_file = args.result_file()
    result_file.unlink(missing_ok=True)  # a stale outcome of an earlier attempt must not count
    out = run_pretrain_stage(
        data_dir,
        out_dir,
        config,
        data_version=args.data_version,
        init_from=init_from,
        pipeline_run=args.pipeline_run,
        dvc_remote=args.dvc_remote,
    )
    outcome = {
        "encoder_dir": str(out.encoder_dir),
        "encoder_version": out.encoder_version,
        "mlflow_run_id": out.mlflow_run_id,
        "metrics": out.metrics,
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
