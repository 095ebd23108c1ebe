"""Split-by-subject component."""

from typing import NamedTuple

from kfp import dsl

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def split(
    data_dir: str,
    ingest_run: str,
    report: dsl.Output[dsl.Markdown],
    train_ratio: float = 0.7,
    val_ratio: float = 0.15,
    test_ratio: float = 0.15,
    seed: str = "cxrflow-split-v1",
    mode: str = "hash",
    pipeline_run: str = "",
) -> NamedTuple("SplitOutputs", [("split_digest", str), ("new_subjects", int)]):
    """Assign every subject of `data_dir` to train/val/test; known subjects never move.

    `ingest_run` orders this step after ingestion and changes the cache key when data does.
    """
    from collections import namedtuple
    from pathlib import Path

    from cxrflow.split import SplitConfig, run_split_stage

    config = SplitConfig(ratios=(train_ratio, val_ratio, test_ratio), seed=seed, mode=mode)
    out = run_split_stage(
        Path(data_dir), config, pipeline_run=pipeline_run, report_out=Path(report.path)
    )
    outputs = namedtuple("SplitOutputs", ["split_digest", "new_subjects"])
    return outputs(out.digest, out.new_subjects)
