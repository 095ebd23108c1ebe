"""Public-dataset import component: the pipeline's first step when `source` is set."""

from typing import NamedTuple

from kfp import dsl

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def import_public(
    source: str,
    data_dir: str,
    dataset: dsl.Output[dsl.Dataset],
    summary: dsl.Output[dsl.Markdown],
    max_side: int = 1024,
    png_bits: int = 16,
    workers: int = 1,
    pipeline_run: str = "",
) -> NamedTuple(
    "ImportOutputs", [("ingest_run", str), ("found", int), ("written", int), ("quarantined", int)]
):
    """Import the public datasets of `source` (NAME=DIR,...) into the dataset directory `data_dir`.

    What it writes is what ingestion writes, pseudonymised with the same key from the
    environment (CXRFLOW_DEID_KEY_FILE or CXRFLOW_DEID_KEY), never a parameter. `dataset` is the
    manifest, its metadata the dataset directory the next steps read (as ingest's).
    """
    import shutil
    from collections import namedtuple

    from cxrflow.stages import import_public as stage
    from cxrflow.stages.contract import pick

    params = pick(stage.Params, locals())
    out = stage.run(params)
    shutil.copyfile(out.dataset.manifest_path, dataset.path)
    dataset.metadata.update(
        {"data_dir": str(out.dataset.root), "images": out.images, "ingest_run": out.run_id}
    )
    with open(summary.path, "w") as f:
        f.write(out.summary_markdown)
    outputs = namedtuple("ImportOutputs", ["ingest_run", "found", "written", "quarantined"])
    return outputs(out.run_id, out.listed, out.written, out.quarantined)
