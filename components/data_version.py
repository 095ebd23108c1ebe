"""Data-versioning component (DVC)."""

from typing import NamedTuple

from kfp import dsl

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def version_data(
    repo_root: str,
    data_dir: str,
    ingest_run: str,
    dvc_remote: str = "",
    pipeline_run: str = "",
) -> NamedTuple("DataVersionOutputs", [("data_version", str), ("dvc_remote", str), ("files", int)]):
    """Record `data_dir` as a DVC data version and push it.

    `ingest_run` (an ingest run id or a split digest) orders this step after the steps that
    write the data directory.
    """
    from collections import namedtuple
    from pathlib import Path

    from cxrflow.stages.data_version import run_version_stage

    v = run_version_stage(
        Path(repo_root), Path(data_dir), remote_url=dvc_remote or None, pipeline_run=pipeline_run
    )
    outputs = namedtuple("DataVersionOutputs", ["data_version", "dvc_remote", "files"])
    return outputs(v.md5, v.remote, v.files)
