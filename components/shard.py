"""Sharded ingestion components: plan the shards, ingest one shard, merge them into the dataset.

Shards are named by index only (never by file path: KFP stores parameters in its database and
shows them in its UI). Each shard selects its files itself by keyed file key.
"""

from typing import NamedTuple

from kfp import dsl

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def plan_ingest_shards(
    inbox: str,
    data_dir: str,
    n_shards: int,
    ground_truth: str = "",
    work_dir: str = "",
    pipeline_run: str = "",
) -> list:
    """`[{"shard": index, "dir": path}]` of the non-empty shards of `inbox`.

    Shard = keyed file key mod `n_shards`; dirs under `<work_dir or <data_dir>.shards>/<run>`.
    """
    from pathlib import Path

    from cxrflow.stages import ingest as stage

    root = stage.shard_root(Path(data_dir), work_dir, pipeline_run)
    return stage.plan(Path(inbox), n_shards, root, Path(ground_truth) if ground_truth else None)


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def ingest_shard(
    inbox: str,
    data_dir: str,
    shard: int,
    n_shards: int,
    shard_dir: str,
    ground_truth: str = "",
    max_side: int = 1024,
    png_bits: int = 16,
    write_dicom: bool = False,
    workers: int = 1,
    retain_patient_characteristics: bool = True,
    retain_longitudinal_modified_dates: bool = True,
    clean_descriptors: bool = True,
) -> str:
    """De-identify shard `shard` of `inbox` into the private directory `shard_dir`; returns it.

    The dataset `data_dir` is only read (to skip files it already holds). The key comes from
    the environment (CXRFLOW_DEID_KEY_FILE from a Kubernetes Secret), never from a parameter.
    """
    from pathlib import Path

    from cxrflow.stages import ingest as stage
    from cxrflow.stages.contract import pick

    params = pick(stage.Params, locals())
    return str(stage.run_shard(params, shard, n_shards, Path(shard_dir)))


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def merge_ingest_shards(
    shard_dirs: list,
    data_dir: str,
    dataset: dsl.Output[dsl.Dataset],
    summary: dsl.Output[dsl.Markdown],
    keep_shards: bool = False,
    pipeline_run: str = "",
) -> NamedTuple(
    "IngestOutputs", [("ingest_run", str), ("found", int), ("written", int), ("quarantined", int)]
):
    """Merge the shards into `data_dir`: the dataset a single-pod ingestion would have written."""
    import shutil
    from collections import namedtuple
    from pathlib import Path

    from cxrflow.stages import ingest as stage

    out = stage.merge(
        [Path(d) for d in shard_dirs],
        Path(data_dir),
        pipeline_run=pipeline_run,
        cleanup=not keep_shards,
    )
    r = out.result
    shutil.copyfile(out.dataset.manifest_path, dataset.path)
    dataset.metadata.update(
        {"data_dir": data_dir, "images": r.written + r.skipped_existing, "ingest_run": r.run_id}
    )
    with open(summary.path, "w") as f:
        f.write(out.summary_markdown)
    outputs = namedtuple("IngestOutputs", ["ingest_run", "found", "written", "quarantined"])
    return outputs(r.run_id, r.found, r.written, r.quarantined)
