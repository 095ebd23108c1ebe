"""The pre-training stage as the pipeline runs it: train, export, log and register the encoder."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cxrflow.manifest import MANIFEST_FILE, read_manifest
from cxrflow.registry.versions import register_stage_model
from cxrflow.ssl.attention_maps import save_attention_figure
from cxrflow.ssl.data import load_image
from cxrflow.ssl.presets import PretrainConfig
from cxrflow.ssl.probe import probe_auprc
from cxrflow.ssl.train import pretrain
from cxrflow.tracking import (
    TAG_DATA_VERSION,
    TAG_GIT_COMMIT,
    TAG_PIPELINE_PARAMS,
    TAG_PIPELINE_RUN,
    git_commit,
    log_dataset_version,
    params_digest,
    stage_run,
)

log = logging.getLogger(__name__)

ENCODER_MODEL_NAME = "cxrflow-encoder"


@dataclass(frozen=True)
class PretrainStageOutput:
    encoder_dir: Path
    encoder_version: str
    mlflow_run_id: str
    metrics: dict[str, float]


def _attention_images(
    data_dir: Path, image_size: int, mean: float, std: float, n: int = 4
) -> torch.Tensor:
    manifest = read_manifest(data_dir / MANIFEST_FILE)
    rows = manifest[manifest["split"] == "val"].head(n)
    if rows.empty:
        rows = manifest.head(n)
    images = [load_image(data_dir / p) for p in rows["image_path"]]
    x = torch.stack(
        [
            torch.nn.functional.interpolate(im[None], size=(image_size, image_size), mode="area")[0]
            for im in images
        ]
    )
    return ((x - mean) / std).expand(-1, 3, -1, -1)


def run_pretrain_stage(
    data_dir: Path,
    out_dir: Path,
    config: PretrainConfig,
    *,
    data_version: str,
    init_from: Path | None = None,
    pipeline_run: str = "",
    dvc_remote: str = "",
    probe: bool = True,
    register: bool = True,
) -> PretrainStageOutput:
    """Pre-train on the train split of `data_dir`; resume from `out_dir` if it holds a run."""
    import mlflow

    tags = {TAG_DATA_VERSION: data_version, TAG_GIT_COMMIT: git_commit()}
    with stage_run("pretrain", pipeline_run, tags=tags) as run:
        params: dict[str, Any] = {k: str(v) for k, v in config.to_dict().items()}
        params.update(data_version=data_version, init_from=str(init_from or "random"))
        mlflow.log_params(params)
        if dvc_remote:
            log_dataset_version(data_dir / MANIFEST_FILE, data_version, dvc_remote)

        result = pretrain(
            config,
            data_dir,
            out_dir,
            init_from=init_from,
            on_metrics=lambda step, m: mlflow.log_metrics(m, step=step),
        )
        assert result.encoder_dir is not None
        teacher_images = _attention_images(
            data_dir, config.image_size, result.image_mean, result.image_std
        )
        from cxrflow.models.hf import load_hf_dinov2

        encoder = load_hf_dinov2(result.encoder_dir)
        figure = save_attention_figure(encoder, teacher_images, out_dir / "attention_maps.png")
        mlflow.log_artifact(str(figure), "attention")
        metrics: dict[str, float] = {}
        if probe:
            try:
                scores = probe_auprc(
                    encoder, data_dir, config.image_size, result.image_mean, result.image_std
                )
            except ValueError as exc:  # no labels (an unlabelled inbox): nothing to probe
                log.warning("linear probe skipped: %s", exc)
                scores = {}
            metrics = {f"probe_auprc_{k}": v for k, v in scores.items()}
            mlflow.log_metrics(metrics)
        (out_dir / "pretrain_result.json").write_text(
            json.dumps(
                {
                    "data_version": data_version,
                    "image_mean": result.image_mean,
                    "image_std": result.image_std,
                    **metrics,
                },
                indent=2,
            )
            + "\n"
        )
        version = ""
        if register:
            from cxrflow.serving import EncoderPyfunc

            info = mlflow.pyfunc.log_model(
                name="encoder",
                python_model=EncoderPyfunc(),
                artifacts={"encoder": str(result.encoder_dir)},
            )
            version = register_stage_model(
                info.model_uri,
                ENCODER_MODEL_NAME,
                "encoder",
                pipeline_run=pipeline_run,
                params_digest=params_digest(params),
                tags={
                    **tags,
                    TAG_PIPELINE_RUN: pipeline_run,
                    TAG_PIPELINE_PARAMS: params_digest(params),
                    "cxrflow.init_from": str(init_from or "random"),
                    "cxrflow.preset_model": config.model,
                },
            )
            log.info("registered %s version %s", ENCODER_MODEL_NAME, version)
    return PretrainStageOutput(result.encoder_dir, version, run.info.run_id, metrics)


def work_dir_for(runs_dir: Path, data_version: str, config: PretrainConfig, init_from: str) -> Path:
    """Where a run keeps its checkpoints: one folder per data version and settings."""
    digest = params_digest({**config.to_dict(), "init_from": init_from})
    return runs_dir / f"pretrain-{data_version[:12]}-{digest}"
