"""Ingestion + de-identification component."""

from typing import NamedTuple

from kfp import dsl

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def ingest(
    inbox: str,
    data_dir: str,
    dataset: dsl.Output[dsl.Dataset],
    summary: dsl.Output[dsl.Markdown],
    ground_truth: str = "",
    max_side: int = 1024,
    png_bits: int = 16,
    write_dicom: bool = False,
    workers: int = 1,
    retain_patient_characteristics: bool = True,
    retain_longitudinal_modified_dates: bool = True,
    clean_descriptors: bool = True,
    pipeline_run: str = "",
) -> NamedTuple(
    "IngestOutputs", [("ingest_run", str), ("found", int), ("written", int), ("quarantined", int)]
):
    """De-identify the DICOM files of `inbox` into the dataset directory `data_dir`.

    The key comes from the environment (CXRFLOW_DEID_KEY_FILE or CXRFLOW_DEID_KEY, from a
    Kubernetes Secret on a cluster), never from a parameter. `dataset` is the manifest, its
    metadata the dataset directory the next steps read.
    """
    import shutil
    from collections import namedtuple

    from cxrflow.stages import ingest as stage
    from cxrflow.stages.contract import pick

    params = pick(stage.Params, locals())
    out = stage.run(params)
    r = out.result
    shutil.copyfile(out.dataset.manifest_path, dataset.path)
    dataset.metadata.update(
        {
            "data_dir": str(out.dataset.root),
            "images": r.written + r.skipped_existing,
            "ingest_run": r.run_id,
        }
    )
    with open(summary.path, "w") as f:
        f.write(out.summary_markdown)
    outputs = namedtuple("IngestOutputs", ["ingest_run", "found", "written", "quarantined"])
    return outputs(r.run_id, r.found, r.written, r.quarantined)
