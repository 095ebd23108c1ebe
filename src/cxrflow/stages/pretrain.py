"""The pre-training stage: DINOv2 continual pre-training, export, log and register the encoder.

Every process of a distributed run calls `run` with the same parameters (alone, or one process
per GPU under torchrun): all ranks train; rank 0 also runs the MLflow run, exports, draws the
attention maps, probes and registers, and returns the `Result` (other ranks return None).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from cxrflow.dataset import Dataset
from cxrflow.models.hf import check_hf_export_compatible
from cxrflow.registry.versions import register_stage_model
from cxrflow.ssl.attention_maps import save_attention_figure
from cxrflow.ssl.data import load_image
from cxrflow.ssl.initialisation import (
    EncoderInit,
    InitSource,
    continual_config,
    initial_backbone,
    require_init,
    resolve_init,
)
from cxrflow.ssl.presets import PretrainConfig
from cxrflow.ssl.presets import preset as named_preset
from cxrflow.ssl.probe import probe_auprc
from cxrflow.ssl.train import pretrain
from cxrflow.stages.contract import param, pick
from cxrflow.tags import (
    ENCODER_MODEL,
    TAG_DATA_VERSION,
    TAG_DEVICE,
    TAG_GIT_COMMIT,
    TAG_PIPELINE_PARAMS,
    TAG_PIPELINE_RUN,
    TAG_PRESET_MODEL,
)
from cxrflow.tracking import git_commit, log_dataset_version, params_digest, stage_run

log = logging.getLogger(__name__)

RESULT_FILE = "pretrain_result.json"
INIT_CACHE = "init"  # registered encoders an init names, downloaded once per run folder


@dataclass(frozen=True)
class Params:
    """Continue DINOv2 pre-training of a ViT on the train split of one data version."""

    data_dir: Path = param(help="Dataset directory with a split manifest.")
    out_dir: Path = param(help="Run directory: checkpoints and the exported encoder.")
    data_version: str = param("", help="Data version (DVC md5) the run trains on, for lineage.")
    preset: str = param("tiny", help="Pre-training preset: tiny or paper.")
    steps: int = param(0, help="Training steps; 0 keeps the preset's.")
    batch_size: int = param(0, help="Global batch over all GPUs; 0 keeps the preset's.")
    seed: int = param(0, help="Random seed.")
    init: EncoderInit | None = param(
        None,
        help="Where training starts: a Hugging Face DINOv2 directory, an upstream torch.hub "
        ".pth, a timm checkpoint, models:/<name>@<alias> or models:/<name>/<version>, "
        "'champion' (the champion encoder if there is one) or 'random'. Empty: the preset's "
        "default (tiny: random; paper refuses to start without one).",
    )
    dvc_remote: str = param("", help="DVC remote of the data version, logged as its source.")
    pipeline_run: str = param("", help="The pipeline run this stage belongs to.")
    probe: bool = param(True, help="Score the encoder with a linear probe after training.")
    register: bool = param(True, help="Register the encoder in the MLflow model registry.")

    def config(self) -> PretrainConfig:
        """The preset with non-zero `steps`/`batch_size` overriding it."""
        changes = {
            k: v for k, v in {"steps": self.steps, "batch_size": self.batch_size}.items() if v
        }
        return named_preset(self.preset, seed=self.seed, **changes)

    @classmethod
    def in_runs_dir(
        cls, runs_dir: Path, values: Mapping[str, Any] | None = None, /, **more: Any
    ) -> Params:
        """The parameters with `out_dir` the run's folder under `runs_dir`: one folder per data
        version and settings, so that a retried step resumes from its checkpoints."""
        params = pick(cls, {**(values or {}), **more}, out_dir=".")  # typed, validated
        init = str(params.init or "")
        return replace(
            params, out_dir=work_dir_for(Path(runs_dir), params.data_version, params.config(), init)
        )

    def start(self) -> tuple[PretrainConfig, InitSource]:
        """The init resolved and imported, and the preset adapted to its architecture."""
        config = self.config()
        init = require_init(config, self.init, self.preset)
        source = resolve_init(init, Path(self.out_dir) / INIT_CACHE)
        return continual_config(config, source)


@dataclass(frozen=True)
class Result:
    """The exported encoder, its registered version, the MLflow run and the probe's scores."""

    encoder_dir: Path
    encoder_version: str
    mlflow_run_id: str
    metrics: dict[str, float]


def rank() -> int:
    """This process's global rank (0 without torchrun)."""
    return int(os.environ.get("RANK", "0"))


def _attention_images(
    dataset: Dataset, image_size: int, mean: float, std: float, n: int = 4
) -> torch.Tensor:
    """A few validation images, resized and normalised, for the attention figure."""
    manifest = dataset.manifest()
    rows = manifest[manifest["split"] == "val"].head(n)
    if rows.empty:
        rows = manifest.head(n)
    images = [load_image(dataset.image(p)) for p in rows["image_path"]]
    x = torch.stack(
        [
            torch.nn.functional.interpolate(im[None], size=(image_size, image_size), mode="area")[0]
            for im in images
        ]
    )
    return ((x - mean) / std).expand(-1, 3, -1, -1)


def run(params: Params) -> Result | None:
    """Pre-train on the train split; resume from `out_dir` if it holds a run.

    Ranks > 0 only train and return None; rank 0 returns the stage's result.
    """
    import mlflow

    dataset = Dataset(params.data_dir)
    out_dir = Path(params.out_dir)
    config, source = params.start()  # before any training: a bad init fails in seconds
    backbone = initial_backbone(config, source)
    # ... and so does an export that this transformers could not write
    check_hf_export_compatible(backbone.cfg if backbone is not None else config.vit_config())
    if rank() > 0:  # workers train; rank 0 also logs, exports and registers
        pretrain(config, dataset.root, out_dir, init=backbone, progress=False)
        return None
    data_version = params.data_version
    init_record = source.record()
    tags = {TAG_DATA_VERSION: data_version, TAG_GIT_COMMIT: git_commit()}
    with stage_run("pretrain", params.pipeline_run, tags=tags) as mlflow_run:
        logged: dict[str, Any] = {k: str(v) for k, v in config.to_dict().items()}
        logged.update(data_version=data_version, **init_record)
        mlflow.log_params(logged)
        mlflow.set_tags(source.tags())
        if params.dvc_remote:
            log_dataset_version(dataset.manifest_path, data_version, params.dvc_remote)

        result = pretrain(
            config,
            dataset.root,
            out_dir,
            init=backbone,
            on_metrics=lambda step, m: mlflow.log_metrics(m, step=step),
        )
        assert result.encoder_dir is not None
        mlflow.set_tag(TAG_DEVICE, result.device)
        teacher_images = _attention_images(
            dataset, config.image_size, result.image_mean, result.image_std
        )
        from cxrflow.models.hf import load_hf_dinov2

        encoder = load_hf_dinov2(result.encoder_dir)
        figure = save_attention_figure(encoder, teacher_images, out_dir / "attention_maps.png")
        mlflow.log_artifact(str(figure), "attention")
        metrics: dict[str, float] = {}
        if params.probe:
            try:
                scores = probe_auprc(
                    encoder, dataset.root, config.image_size, result.image_mean, result.image_std
                )
            except ValueError as exc:  # no labels (an unlabelled inbox): nothing to probe
                log.warning("linear probe skipped: %s", exc)
                scores = {}
            metrics = {f"probe_auprc_{k}": v for k, v in scores.items()}
            mlflow.log_metrics(metrics)
        (out_dir / RESULT_FILE).write_text(
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
        if params.register:
            from cxrflow.serving import log_encoder_model

            info = log_encoder_model(result.encoder_dir)  # with its signature and example
            version = register_stage_model(
                info.model_uri,
                ENCODER_MODEL,
                "encoder",
                pipeline_run=params.pipeline_run,
                params_digest=params_digest(logged),
                tags={
                    **tags,
                    TAG_PIPELINE_RUN: params.pipeline_run,
                    TAG_PIPELINE_PARAMS: params_digest(logged),
                    TAG_PRESET_MODEL: config.model,
                    **source.tags(),
                },
                parents=[source.parent] if source.parent else (),
            )
            log.info("registered %s version %s", ENCODER_MODEL, version)
    return Result(result.encoder_dir, version, mlflow_run.info.run_id, metrics)


def work_dir_for(runs_dir: Path, data_version: str, config: PretrainConfig, init: str) -> Path:
    """Where a run keeps its checkpoints: one folder per data version and settings."""
    digest = params_digest({**config.to_dict(), "init": init})
    return runs_dir / f"pretrain-{data_version[:12]}-{digest}"
