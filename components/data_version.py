"""Data-versioning component (DVC)."""

from typing import NamedTuple

from kfp import dsl

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def version_data(
    dataset: dsl.Input[dsl.Dataset],
    repo_root: str,
    dvc_remote: str = "",
    pipeline_run: str = "",
) -> NamedTuple(
    "DataVersionOutputs",
    [("data_version", str), ("dvc_remote", str), ("files", int), ("data_dir", str)],
):
    """Record the split `dataset`'s directory as a DVC data version and push it.

    Returns the version and the dataset directory the training steps read (typed outputs, so
    that the training steps' cache keys change exactly when the data does).
    """
    from collections import namedtuple

    from cxrflow.stages import version as stage
    from cxrflow.stages.contract import pick

    params = pick(stage.Params, locals(), data_dir=dataset.metadata["data_dir"])
    out = stage.run(params)
    v = out.version
    outputs = namedtuple("DataVersionOutputs", ["data_version", "dvc_remote", "files", "data_dir"])
    return outputs(v.md5, v.remote, v.files, str(out.dataset.root))
