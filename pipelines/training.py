"""The training pipeline, from an inbox of DICOM files to a registered, documented encoder.

ingest + de-identify (or, with `source` set, import public datasets) -> split by subject
-> version the data (DVC) -> DINOv2 pre-training
-> heads and report generation (in parallel) -> evaluation -> promotion gate + model card.
"""

import inspect
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from kfp import compiler, dsl

from components import images
from components.data_version import version_data
from components.evaluate import evaluate
from components.gate import data_gate
from components.heads import heads
from components.images import CUDA_IMAGE
from components.import_public import import_public
from components.ingest import ingest
from components.pretrain import pretrain
from components.publish import publish
from components.report import report
from components.split import split
from cxrflow.cluster.config import GpuPool
from cxrflow.stages.publish import DEFAULT_GATE
from pipelines.kubernetes import (
    CPU_TRAINING,
    GPU,
    LAUNCHER,
    SMALL,
    STANDARD,
    apply_common_settings,
    apply_gpu_settings,
    apply_ingest_resources,
    apply_launcher_settings,
    apply_phi_label,
    apply_resources,
)
from pipelines.parameters import PROFILES, check_profile, docstring

PIPELINE_NAME = "cxrflow-training"
COMPILED = Path(__file__).with_name("training.yaml")


def _in_pod_or_launcher(
    component,
    args: dict,
    *,
    nodes,
    gpus_per_node,
    backend,
    timeout_hours,
    keep_job,
    name: str,
    display_name: str,
) -> tuple[dsl.PipelineTask, dsl.PipelineTask]:
    """The step as two tasks: in-pod (nodes <= 1, cached) or a job launcher (uncached).

    Join their outputs with dsl.OneOf; only one of the two runs.
    """
    with dsl.If(nodes <= 1, name=f"single-node-{name}"):
        in_pod = component(**args)
        in_pod.set_display_name(display_name)
    with dsl.Else():
        launcher = component(
            **args,
            gpus_per_node=gpus_per_node,
            job_backend=backend,
            # The nodes run the image this step runs in: the same code on both sides.
            job_image=CUDA_IMAGE,
            job_timeout_hours=timeout_hours,
            keep_job=keep_job,
        )
        launcher.set_caching_options(False)
        launcher.set_display_name(f"{display_name}: multi-node job")
    return in_pod, launcher


def _training_pipeline(
    inbox: str,
    data_dir: str,
    source: str = "",
    repo_root: str = ".",
    ground_truth: str = "",
    max_side: int = 1024,
    png_bits: int = 16,
    write_dicom: bool = False,
    ingest_workers: int = 1,
    retain_patient_characteristics: bool = True,
    retain_longitudinal_modified_dates: bool = True,
    clean_descriptors: bool = True,
    train_ratio: float = 0.7,
    val_ratio: float = 0.15,
    test_ratio: float = 0.15,
    split_seed: str = "cxrflow-split-v1",
    split_mode: str = "hash",
    dvc_remote: str = "",
    runs_dir: str = ".cxrflow/runs",
    pretrain_preset: str = "tiny",
    pretrain_steps: int = 0,
    pretrain_batch_size: int = 0,
    pretrain_seed: int = 0,
    pretrain_init: str = "champion",
    pretrain_nodes: int = 1,
    pretrain_gpus_per_node: int = 1,
    training_backend: str = "",
    training_job_timeout_hours: float = 0.0,
    keep_training_job: bool = False,
    heads_preset: str = "tiny",
    report_preset: str = "tiny",
    report_steps: int = 0,
    report_nodes: int = 1,
    report_gpus_per_node: int = 1,
    lm_dir: str = "",
    gate_config: str = DEFAULT_GATE,
    force_train: bool = False,
) -> None:
    # The run starts from the DICOM inbox (source empty) or from public datasets (source set):
    # two If/Else branches, each the first step, the split and the versioning of the dataset
    # directory they write (the same directory under the same contracts, with the same key).
    # Only one branch runs; the later steps read the outputs of whichever ran (dsl.OneOf).
    # The branches join after versioning, on parameters: kfp.local (the embedded default and
    # the tests) joins no artifacts with dsl.OneOf ("Expected 1 artifact in
    # ArtifactSelectorSpec"), so the first step's `dataset` artifact cannot cross the join.
    def split_and_version(dataset: Any, branch: str) -> tuple[dsl.PipelineTask, dsl.PipelineTask]:
        split_task = split(
            dataset=dataset,
            train_ratio=train_ratio,
            val_ratio=val_ratio,
            test_ratio=test_ratio,
            seed=split_seed,
            mode=split_mode,
            pipeline_run=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
        )
        split_task.set_caching_options(False)
        split_task.set_display_name(f"split by subject{branch}")
        # The split is part of the dataset: version after it, so the md5 covers the assignment.
        version_task = version_data(
            dataset=split_task.outputs["split_dataset"],
            repo_root=repo_root,
            dvc_remote=dvc_remote,
            pipeline_run=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
        )
        version_task.set_caching_options(False)
        version_task.set_display_name(f"version data (DVC){branch}")
        return split_task, version_task

    with dsl.If(source == "", name="dicom-inbox"):
        ingest_task = ingest(
            inbox=inbox,
            data_dir=data_dir,
            ground_truth=ground_truth,
            max_side=max_side,
            png_bits=png_bits,
            write_dicom=write_dicom,
            workers=ingest_workers,
            retain_patient_characteristics=retain_patient_characteristics,
            retain_longitudinal_modified_dates=retain_longitudinal_modified_dates,
            clean_descriptors=clean_descriptors,
            pipeline_run=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
        )
        # The inbox changes under the same parameters: never serve ingestion from the cache.
        ingest_task.set_caching_options(False)
        ingest_task.set_display_name("ingest + de-identify")
        split_task, version_task = split_and_version(ingest_task.outputs["dataset"], "")
    with dsl.Else():
        import_task = import_public(
            source=source,
            data_dir=data_dir,
            max_side=max_side,
            png_bits=png_bits,
            workers=ingest_workers,
            pipeline_run=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
        )
        # A release can change under the same path (a new version, files added): never cached.
        import_task.set_caching_options(False)
        import_task.set_display_name("import public datasets")
        public_split_task, public_version_task = split_and_version(
            import_task.outputs["dataset"], " (public datasets)"
        )
    for task in (ingest_task, import_task):
        apply_ingest_resources(task)
        # Raw DICOM (ingest) and the de-id key (both): egress only to the listed services.
        apply_phi_label(task)

    def either(output: str, *tasks: dsl.PipelineTask) -> Any:
        return dsl.OneOf(*(t.outputs[output] for t in tasks))

    data_version = either("data_version", version_task, public_version_task)
    versioned_dir = either("data_dir", version_task, public_version_task)
    versioned_remote = either("dvc_remote", version_task, public_version_task)
    split_digest = either("split_digest", split_task, public_split_task)

    # A recurring run is cheap when nothing changed: training is a skipped branch in the UI.
    gate_task = data_gate(data_version=data_version, force=force_train)
    gate_task.set_caching_options(False)
    gate_task.set_display_name("data changed since the champion?")

    with dsl.If(gate_task.output == True, name="train-on-new-data"):  # noqa: E712 (KFP condition)
        # Data-dependent from here on: the dataset directory and the data version are typed
        # outputs of the versioning step (not artifacts, whose URIs change on every run), so
        # KFP's cache key changes exactly when the data does.
        data = versioned_dir
        #
        # Multi-node pre-training is a launcher step: it creates a TrainJob/PyTorchJob and follows
        # it. KFP fixes caching and resources per task at compile time, while `pretrain_nodes` is
        # known only at run time, so the same component is two tasks: the in-pod GPU step
        # (nodes <= 1), cached as before, and the launcher (nodes > 1), never cached: its work
        # is a job KFP neither runs nor tracks, and a cache hit would skip the job. The launcher
        # holds no GPU: it would idle for the whole run and could keep the job's last node from
        # being scheduled. Downstream takes the outputs of whichever ran (dsl.OneOf).
        pretrain_args = dict(
            data_dir=data,
            data_version=data_version,
            runs_dir=runs_dir,
            preset=pretrain_preset,
            steps=pretrain_steps,
            batch_size=pretrain_batch_size,
            seed=pretrain_seed,
            init=pretrain_init,
            dvc_remote=versioned_remote,
            pipeline_run=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
            nodes=pretrain_nodes,
        )
        pretrain_task, launch_task = _in_pod_or_launcher(
            pretrain,
            pretrain_args,
            nodes=pretrain_nodes,
            gpus_per_node=pretrain_gpus_per_node,
            backend=training_backend,
            timeout_hours=training_job_timeout_hours,
            keep_job=keep_training_job,
            name="pretraining",
            display_name="DINOv2 continual pre-training",
        )
        encoder_dir = dsl.OneOf(
            pretrain_task.outputs["encoder_dir"], launch_task.outputs["encoder_dir"]
        )
        encoder_version = dsl.OneOf(
            pretrain_task.outputs["encoder_version"], launch_task.outputs["encoder_version"]
        )

        heads_task = heads(
            data_dir=data,
            data_version=data_version,
            encoder_dir=encoder_dir,
            encoder_version=encoder_version,
            runs_dir=runs_dir,
            preset=heads_preset,
            pipeline_run=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
        )
        heads_task.set_display_name("heads: probes, segmentation, demographics")

        # Report fine-tuning: the same two-task design as pre-training, on `report_nodes`. The
        # launcher's TrainJob uses the Trainer's deepspeed-distributed runtime by default.
        report_args = dict(
            data_dir=data,
            data_version=data_version,
            encoder_dir=encoder_dir,
            encoder_version=encoder_version,
            runs_dir=runs_dir,
            preset=report_preset,
            lm_dir=lm_dir,
            steps=report_steps,
            pipeline_run=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
            nodes=report_nodes,
        )
        report_task, report_launch_task = _in_pod_or_launcher(
            report,
            report_args,
            nodes=report_nodes,
            gpus_per_node=report_gpus_per_node,
            backend=training_backend,
            timeout_hours=training_job_timeout_hours,
            keep_job=keep_training_job,
            name="report",
            display_name="report generation (LLaVA)",
        )
        report_results = dsl.OneOf(
            report_task.outputs["results"], report_launch_task.outputs["results"]
        )

        evaluate_task = evaluate(
            data_dir=data,
            data_version=data_version,
            split_digest=split_digest,
            runs_dir=runs_dir,
            encoder_version=encoder_version,
            heads_results=heads_task.outputs["results"],
            report_results=report_results,
            pipeline_run=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
        )
        evaluate_task.set_caching_options(False)
        evaluate_task.set_display_name("evaluation")

        publish_task = publish(
            encoder_version=encoder_version,
            evaluation=evaluate_task.outputs["evaluation"],
            gate_config=gate_config,
        )
        publish_task.set_caching_options(False)
        publish_task.set_display_name("promotion gate + model card")

    # Cluster settings (ignored by kfp.local): every task reads MLflow's address from a
    # ConfigMap and the data PVC; ingestion and import get the de-id key Secret; GPU stages
    # their pool.
    for task in (
        ingest_task,
        import_task,
        split_task,
        version_task,
        public_split_task,
        public_version_task,
        gate_task,
        pretrain_task,
        launch_task,
        heads_task,
        report_task,
        report_launch_task,
        evaluate_task,
        publish_task,
    ):
        apply_common_settings(task, deid_key=task is ingest_task or task is import_task)
    for task in (pretrain_task, report_task):
        apply_gpu_settings(
            task,
            GpuPool(),
            gpus=1,
            shm_size="32Gi",
            data_pvc=None,
            checkpoint_pvc="cxrflow-checkpoints",
        )
    for task in (launch_task, report_launch_task):
        apply_launcher_settings(task, checkpoint_pvc="cxrflow-checkpoints")
    # Requests the scheduler can plan with, limits that bound a runaway step (ingestion and
    # import have set their own above).
    for resources, tasks in (
        (SMALL, (gate_task, publish_task)),
        (
            STANDARD,
            (split_task, version_task, public_split_task, public_version_task, evaluate_task),
        ),
        (LAUNCHER, (launch_task, report_launch_task)),
        (CPU_TRAINING, (heads_task,)),
        (GPU, (pretrain_task, report_task)),
    ):
        for task in tasks:
            apply_resources(task, resources)


_training_pipeline.__doc__ = docstring(
    "From an inbox of DICOM files (or public datasets) to a registered, documented encoder.",
    list(inspect.signature(_training_pipeline).parameters),
)
training_pipeline = dsl.pipeline(
    name=PIPELINE_NAME, description="RAD-DINO-style chest X-ray encoder training."
)(_training_pipeline)


# Every profile names declared parameters with values of their declared types (checked at
# import, so a drift fails `cxrflow compile` and the tests, not a run on the cluster).
for _profile in PROFILES.values():
    check_profile(_profile, inspect.signature(_training_pipeline))


def _walk_strings(node: Any, replace: dict[str, str], counts: dict[str, int]) -> Any:
    """`node` with every string equal to a key of `replace` replaced; counts the hits."""
    if isinstance(node, dict):
        return {k: _walk_strings(v, replace, counts) for k, v in node.items()}
    if isinstance(node, list):
        return [_walk_strings(v, replace, counts) for v in node]
    if isinstance(node, str) and node in replace:
        counts[node] += 1
        return replace[node]
    return node


def rebind_images(docs: Iterable[dict[str, Any]], registry: str, tag: str) -> list[dict[str, Any]]:
    """The compiled IR documents with the project images moved to `registry`/`tag`.

    The components were decorated with the images of components/images.py at import; this
    rewrites every executor image and every launcher `job_image` constant (any IR string that is
    exactly one of those images), then checks that every executor runs a rebound image and that
    no reference to the images bound at import is left.
    """
    bound = {images.CPU_IMAGE: "cxrflow-cpu", images.CUDA_IMAGE: "cxrflow-cuda"}
    replace = {old: images.image(name, registry, tag) for old, name in bound.items()}
    counts = dict.fromkeys(replace, 0)
    out = [_walk_strings(doc, replace, counts) for doc in docs]
    spec = out[0]
    wanted = set(replace.values())
    for name, executor in spec["deploymentSpec"]["executors"].items():
        got = executor.get("container", {}).get("image")
        if got not in wanted:
            raise ValueError(f"{name}: image {got!r} was not rebound to {registry}/...:{tag}")
    if sum(counts.values()) == 0:
        raise ValueError(f"no image of {', '.join(bound)} found in the compiled pipeline")
    left = [old for old in bound if old not in wanted and old in yaml.safe_dump_all(out)]
    if left:
        raise ValueError(f"{left[0]}: still referenced after rebinding to {registry}")
    return out


def compile_pipeline(
    path: Path = COMPILED, *, registry: str | None = None, tag: str | None = None
) -> Path:
    """Compile the pipeline to KFP IR YAML, its images in `registry`/`tag` when given."""
    if registry is None and tag is None:
        compiler.Compiler().compile(training_pipeline, str(path))
        return path
    # Validate before compiling, so a bad option fails fast and names itself.
    registry = images.check_registry(images.REGISTRY if registry is None else registry)
    tag = images.check_tag(images.TAG if tag is None else tag)
    with tempfile.TemporaryDirectory(prefix="cxrflow-compile-") as tmp:
        plain = Path(tmp) / "training.yaml"
        compiler.Compiler().compile(training_pipeline, str(plain))
        docs = [d for d in yaml.safe_load_all(plain.read_text()) if d]
    rebound = rebind_images(docs, registry, tag)
    Path(path).write_text(yaml.safe_dump_all(rebound, sort_keys=True))
    return path
