"""DINOv2 continual pre-training component (a GPU stage on a cluster, or a multi-node launcher)."""

from typing import NamedTuple

from kfp import dsl

from components.images import CUDA_IMAGE


@dsl.component(base_image=CUDA_IMAGE, install_kfp_package=False)
def pretrain(
    data_dir: str,
    data_version: str,
    runs_dir: str,
    encoder: dsl.Output[dsl.Model],
    preset: str = "tiny",
    steps: int = 0,
    batch_size: int = 0,
    seed: int = 0,
    init: str = "",
    dvc_remote: str = "",
    pipeline_run: str = "",
    nodes: int = 1,
    gpus_per_node: int = 1,
    job_backend: str = "",
    job_image: str = "",
    job_namespace: str = "",
    job_timeout_hours: float = 0.0,
    keep_job: bool = False,
) -> NamedTuple("PretrainOutputs", [("encoder_dir", str), ("encoder_version", str)]):
    """Continue DINOv2 pre-training of a ViT on the train split of data version `data_version`.

    `steps`/`batch_size` of 0 keep the preset's values (`batch_size` is the global batch over
    all GPUs); `init` is where training starts: a Hugging Face DINOv2 directory, an upstream
    torch.hub .pth, a timm checkpoint, models:/<name>@<alias>, 'champion' or 'random' (empty:
    the preset's default).
    Checkpoints live under `runs_dir`, keyed by the data version and the settings, so a retried
    step resumes where it stopped.

    `nodes` 1 trains in this pod. `nodes` > 1 launches a Kubeflow Trainer TrainJob
    (torch-distributed runtime) or, with `job_backend` "pytorchjob", a Training Operator
    PyTorchJob of `nodes` x `gpus_per_node` GPUs running the same entry point under torchrun,
    streams its rank-0 log here, fails when it fails and returns its exported encoder. Then
    `data_dir`, a path `init` and `runs_dir` must be on the shared volumes the job mounts (/data,
    /checkpoints), and `job_backend`/`job_image` default to the cluster's cxrflow-gpu-pool
    ConfigMap (else trainjob). `job_namespace` empty: this pod's namespace.
    `job_timeout_hours` 0: no limit. `keep_job` keeps the finished job and its pods.
    """
    import shutil
    from collections import namedtuple

    from cxrflow.cluster.dispatch import JobOptions, run_stage
    from cxrflow.stages import pretrain as stage

    params = stage.Params.in_runs_dir(runs_dir, locals())
    outcome = run_stage("pretrain", params, JobOptions.of(locals()))
    shutil.copytree(outcome["encoder_dir"], encoder.path, dirs_exist_ok=True)
    encoder.metadata.update(
        {"data_version": data_version, "registered_version": outcome["encoder_version"]}
    )
    if "job" in outcome:  # the TrainJob/PyTorchJob that trained it
        encoder.metadata["training_job"] = outcome["job"]
    outputs = namedtuple("PretrainOutputs", ["encoder_dir", "encoder_version"])
    return outputs(outcome["encoder_dir"], outcome["encoder_version"])
