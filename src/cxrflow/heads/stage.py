"""The head-training stage as the pipeline runs it: train heads, log to MLflow, register."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cxrflow.heads.config import HeadsConfig
from cxrflow.heads.export import CARD_FILE, load_head
from cxrflow.heads.train import HeadsResult, train_heads
from cxrflow.registry.versions import register_stage_model
from cxrflow.tracking import (
    TAG_DATA_VERSION,
    TAG_ENCODER_VERSION,
    TAG_PIPELINE_RUN,
    params_digest,
    stage_run,
)

log = logging.getLogger(__name__)

TAG_ENCODER_DIGEST = "cxrflow.encoder_digest"


@dataclass
class HeadsStageOutput:
    """The stage's measurements, files, MLflow run and registered model versions."""

    result: HeadsResult
    mlflow_run_id: str
    registered: dict[str, str] = field(default_factory=dict)  # registered name -> version
    markdown_path: Path | None = None


def run_heads_stage(
    data_dir: Path,
    encoder_dir: Path,
    *,
    data_version: str,
    encoder_version: str = "",
    config: HeadsConfig,
    out_dir: Path,
    pipeline_run: str = "",
    markdown_out: Path | None = None,
) -> HeadsStageOutput:
    """Train every enabled head, log params/metrics/artefacts/models, register the heads."""
    import mlflow

    tags = {
        TAG_DATA_VERSION: data_version,
        TAG_ENCODER_VERSION: encoder_version,
        TAG_PIPELINE_RUN: pipeline_run,
    }
    with stage_run("heads", pipeline_run, tags={k: v for k, v in tags.items() if v}) as run:
        mlflow.log_params(
            {**config.to_params(), "data_version": data_version, "encoder_version": encoder_version}
        )
        result = train_heads(
            data_dir,
            encoder_dir,
            config=config,
            out_dir=out_dir,
            data_version=data_version,
            encoder_version=encoder_version,
        )
        mlflow.set_tag(TAG_ENCODER_DIGEST, result.encoder_digest)
        mlflow.log_metrics(result.metrics())
        for path in result.artifacts:
            mlflow.log_artifact(str(path), "heads")
        mlflow.log_text(result.markdown, "heads/heads.md")
        registered = {}
        for name, export_dir in result.exported.items():
            mlflow.log_artifacts(str(export_dir), f"export/{name}")
            version = _log_and_register(name, export_dir, config, tags)
            if version:
                registered[f"{config.model_prefix}-{name}"] = version
    out = HeadsStageOutput(result, run.info.run_id, registered, result.markdown_path)
    if markdown_out is not None:
        markdown_out.parent.mkdir(parents=True, exist_ok=True)
        markdown_out.write_text(result.markdown)
        out.markdown_path = markdown_out
    return out


def _log_and_register(
    name: str, export_dir: Path, config: HeadsConfig, tags: dict[str, str]
) -> str:
    """Log one exported head as an MLflow PyTorch model (pt2) and register it; its version."""
    import mlflow
    import torch
    from mlflow.models import infer_signature

    module, meta = load_head(export_dir)
    example = torch.zeros(2, *meta["input_shape"])
    with torch.no_grad():
        output = module(example)
    info = mlflow.pytorch.log_model(
        module,
        name=name,
        serialization_format="pt2",
        input_example=example.numpy(),
        signature=infer_signature(example.numpy(), output.numpy().astype(np.float32)),
        pip_requirements=["torch"],
        metadata={"head_card": json.loads((export_dir / CARD_FILE).read_text())},
    )
    if not config.register:
        return ""
    registered = f"{config.model_prefix}-{name}"
    version = register_stage_model(
        info.model_uri,
        registered,
        "head",
        pipeline_run=tags.get(TAG_PIPELINE_RUN, ""),
        params_digest=params_digest(config.to_params()),
        tags=tags,
    )
    log.info("registered %s version %s", registered, version)
    return version
