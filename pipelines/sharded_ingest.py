"""Sharded ingestion: plan -> ParallelFor(ingest one shard) -> merge into the dataset."""

from pathlib import Path

from kfp import compiler, dsl

from components.shard import ingest_shard, merge_ingest_shards, plan_ingest_shards
from pipelines.kubernetes import (
    STANDARD,
    apply_common_settings,
    apply_ingest_resources,
    apply_phi_label,
    apply_resources,
)

PIPELINE_NAME = "cxrflow-sharded-ingest"
COMPILED = Path(__file__).with_name("sharded_ingest.yaml")


@dsl.pipeline(name=PIPELINE_NAME, description="De-identify an inbox in parallel shards.")
def sharded_ingest_pipeline(
    inbox: str,
    data_dir: str,
    n_shards: int = 4,
    work_dir: str = "",
    ground_truth: str = "",
    max_side: int = 1024,
    png_bits: int = 16,
    write_dicom: bool = False,
    workers: int = 1,
    retain_patient_characteristics: bool = True,
    retain_longitudinal_modified_dates: bool = True,
    clean_descriptors: bool = True,
    keep_shards: bool = False,
) -> dsl.Dataset:
    """Ingest `inbox` into `data_dir` in `n_shards` pods; returns the dataset (its manifest).

    On a cluster every step mounts the `cxrflow-data` PVC at /data (inbox, dataset and shard
    directories must be paths there) and the plan and shard steps mount the key Secret.

    Usable as a sub-pipeline: `sharded_ingest_pipeline(...).output` is the dataset artifact
    that the split and versioning steps take.
    """
    plan = plan_ingest_shards(
        inbox=inbox,
        data_dir=data_dir,
        n_shards=n_shards,
        ground_truth=ground_truth,
        work_dir=work_dir,
        pipeline_run=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
    )
    apply_common_settings(plan, deid_key=True)
    apply_resources(plan, STANDARD)
    apply_phi_label(plan)  # it reads the inbox and holds the key
    plan.set_caching_options(False)
    plan.set_display_name("plan shards")
    with dsl.ParallelFor(plan.output) as shard:
        one = ingest_shard(
            inbox=inbox,
            data_dir=data_dir,
            shard=shard.shard,
            n_shards=n_shards,
            shard_dir=shard.dir,
            ground_truth=ground_truth,
            max_side=max_side,
            png_bits=png_bits,
            write_dicom=write_dicom,
            workers=workers,
            retain_patient_characteristics=retain_patient_characteristics,
            retain_longitudinal_modified_dates=retain_longitudinal_modified_dates,
            clean_descriptors=clean_descriptors,
        )
        apply_common_settings(one, deid_key=True)
        one.set_caching_options(False)
        one.set_display_name("ingest shard")
        apply_ingest_resources(one)
        apply_phi_label(one)
    merge = merge_ingest_shards(
        shard_dirs=dsl.Collected(one.output),
        data_dir=data_dir,
        keep_shards=keep_shards,
        pipeline_run=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
    )
    apply_common_settings(merge)  # the merge needs no key: shards carry file keys only
    merge.set_caching_options(False)
    merge.set_display_name("merge shards")
    apply_ingest_resources(merge)
    apply_phi_label(merge)  # it handles every image of the inbox, as the shards do
    return merge.outputs["dataset"]


def compile_pipeline(path: Path = COMPILED) -> Path:
    """Compile the pipeline to KFP IR YAML."""
    compiler.Compiler().compile(sharded_ingest_pipeline, str(path))
    return path
