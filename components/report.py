"""LLaVA-style report-generation fine-tuning component (a GPU stage, or a multi-node launcher)."""

from typing import NamedTuple

from kfp import dsl

from components.images import CUDA_IMAGE


@dsl.component(base_image=CUDA_IMAGE, install_kfp_package=False)
def report(
    data_dir: str,
    data_version: str,
    encoder_dir: str,
    runs_dir: str,
    table: dsl.Output[dsl.Markdown],
    generator: dsl.Output[dsl.Model],
    encoder_version: str = "",
    preset: str = "tiny",
    lm_dir: str = "",
    steps: int = 0,
    pipeline_run: str = "",
    deepspeed: str = "",
    nodes: int = 1,
    gpus_per_node: int = 1,
    job_backend: str = "",
    job_runtime: str = "",
    job_image: str = "",
    job_namespace: str = "",
    job_timeout_hours: float = 0.0,
    keep_job: bool = False,
) -> NamedTuple("ReportOutputs", [("results", str), ("report_version", str)]):
    """Fine-tune projector + LM on the frozen encoder; generate and score test reports.

    `lm_dir` is a local Hugging Face Llama-family directory or a .gguf file (empty: a small
    Llama built from config with a BPE tokenizer trained on the training reports); `steps`
    > 0 replaces the preset's length (epochs or steps); `deepspeed` ("zero2", "zero3" or a
    JSON path; empty: the preset's) trains under DeepSpeed ZeRO. Data with no Findings text in
    either split (most public releases) train nothing: the table and `results` say why, and the
    evaluation lists report generation as not evaluated.

    `nodes` 1 trains in this pod. `nodes` > 1 launches a Kubeflow Trainer TrainJob (the
    `deepspeed-distributed` runtime unless `job_runtime` or the cxrflow-gpu-pool ConfigMap's
    `report-trainer-runtime` names another) or, with `job_backend` "pytorchjob", a Training
    Operator PyTorchJob under torchrun, of `nodes` x `gpus_per_node` GPUs, all running the same
    entry point (ZeRO-2 unless `deepspeed` or the preset says otherwise); it streams the rank-0
    log here, fails when the job fails and returns the saved model. Then `data_dir`,
    `encoder_dir`, `lm_dir` and `runs_dir` must be on the shared volumes the job mounts (/data,
    /checkpoints), and the preset's global batch must split over all GPUs (the `paper` preset:
    128 = 32 per GPU x accumulation). `job_backend`/`job_image` default to the ConfigMap (else
    trainjob). `job_namespace` empty: this pod's namespace. `job_timeout_hours` 0: no limit.
    `keep_job` keeps the finished job and its pods.
    """
    import shutil
    from collections import namedtuple
    from pathlib import Path

    from cxrflow.cluster.dispatch import JobOptions, run_stage
    from cxrflow.stages import report as stage

    params = stage.Params.in_runs_dir(runs_dir, locals())
    outcome = run_stage("report", params, JobOptions.of(locals()))
    Path(table.path).write_text(outcome["table_markdown"])
    if outcome.get("not_run"):  # data without report text: no model, the reason instead
        Path(generator.path).mkdir(parents=True, exist_ok=True)
        (Path(generator.path) / "NOT_TRAINED.md").write_text(outcome["table_markdown"])
        generator.metadata.update({"not_run": outcome["not_run"]})
    else:
        shutil.copytree(outcome["model_dir"], generator.path, dirs_exist_ok=True)
        generator.metadata.update({"registered_version": outcome["model_version"]})
    if "job" in outcome:  # the TrainJob/PyTorchJob that trained it
        generator.metadata["training_job"] = outcome["job"]
    # The metrics file's path, not an artifact: the two branches' outputs are joined with
    # dsl.OneOf, which kfp.local supports for parameters only.
    outputs = namedtuple("ReportOutputs", ["results", "report_version"])
    return outputs(outcome["results"], outcome["model_version"])
