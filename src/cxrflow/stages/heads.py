"""The head-training stage: train heads on the frozen encoder, log to MLflow, register them."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from cxrflow.dataset import Dataset
from cxrflow.evaluation.gather import write_heads_metrics
from cxrflow.heads.config import HeadsConfig
from cxrflow.heads.config import preset as heads_preset
from cxrflow.heads.export import CARD_FILE, load_head
from cxrflow.heads.train import HeadsResult, head_metrics, train_heads
from cxrflow.registry.versions import register_stage_model
from cxrflow.stages.contract import param, pick
from cxrflow.tags import (
    TAG_DATA_VERSION,
    TAG_ENCODER_DIGEST,
    TAG_ENCODER_VERSION,
    TAG_NOT_RUN_PREFIX,
    TAG_PIPELINE_RUN,
)
from cxrflow.tracking import git_commit, params_digest, stage_run

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Params:
    """Train classification probes, segmentation decoders and demographics probes."""

    data_dir: Path = param(help="Dataset directory with a split manifest.")
    encoder_dir: Path = param(help="Hugging Face DINOv2 directory (the pre-training export).")
    out_dir: Path = param(help="Where heads, plots and tables go.")
    data_version: str = param("", help="Data version (DVC md5) for lineage.")
    encoder_version: str = param("", help="Registered encoder version, for lineage.")
    preset: str = param("tiny", help="Heads preset: tiny or paper.")
    pipeline_run: str = param("", help="The pipeline run this stage belongs to.")

    def config(self) -> HeadsConfig:
        """The preset's head configuration."""
        return heads_preset(self.preset)

    @classmethod
    def in_runs_dir(
        cls, runs_dir: Path, values: Mapping[str, Any] | None = None, /, **more: Any
    ) -> Params:
        """The parameters with `out_dir` the run's folder under `runs_dir`."""
        params = pick(cls, {**(values or {}), **more}, out_dir=".")  # typed, validated
        name = (
            f"heads-{params.data_version[:12]}-{params.encoder_version or 'local'}-{params.preset}"
        )
        return replace(params, out_dir=Path(runs_dir) / name)


@dataclass
class Result:
    """The stage's measurements, files, MLflow run and registered model versions."""

    result: HeadsResult
    mlflow_run_id: str
    registered: dict[str, str] = field(default_factory=dict)  # registered name -> version
    markdown_path: Path | None = None
    out_dir: Path = Path()

    @property
    def export_dir(self) -> Path:
        """Where the exported heads are (one folder per head)."""
        return self.out_dir / "export"


def run(params: Params, *, config: HeadsConfig | None = None) -> Result:
    """Train every enabled head, log params/metrics/artefacts/models, register the heads.

    `config` replaces the preset's (tests size it themselves).
    """
    import mlflow

    config = config or params.config()
    dataset = Dataset(params.data_dir)
    tags = {
        TAG_DATA_VERSION: params.data_version,
        TAG_ENCODER_VERSION: params.encoder_version,
        TAG_PIPELINE_RUN: params.pipeline_run,
    }
    stage_tags = {k: v for k, v in tags.items() if v}
    with stage_run("heads", params.pipeline_run, tags=stage_tags) as mlflow_run:
        mlflow.log_params(
            {
                **config.to_params(),
                "data_version": params.data_version,
                "encoder_version": params.encoder_version,
            }
        )
        result = train_heads(
            dataset.root,
            Path(params.encoder_dir),
            config=config,
            out_dir=Path(params.out_dir),
            data_version=params.data_version,
            encoder_version=params.encoder_version,
        )
        mlflow.set_tag(TAG_ENCODER_DIGEST, result.encoder_digest)
        mlflow.set_tags({f"{TAG_NOT_RUN_PREFIX}{k}": v for k, v in result.not_run.items()})
        for path in result.artifacts:
            mlflow.log_artifact(str(path), "heads")
        mlflow.log_text(result.markdown, "heads/heads.md")
        metrics = result.metrics()
        write_heads_metrics(
            Path(params.out_dir),
            metrics,
            not_run=result.not_run,
            encoder_version=params.encoder_version,
            data_version=params.data_version,
            git_commit=git_commit(),
        )
        # Models first, then each head's metrics linked to its logged model: MLflow's log_model
        # otherwise links every metric already on the run to each model, one history request
        # per metric and model (525 requests for 7 heads, each paying the server's auth hash).
        registered, linked = {}, set()
        for name, export_dir in result.exported.items():
            mlflow.log_artifacts(str(export_dir), f"export/{name}")
            model_id, version = _log_and_register(name, export_dir, config, tags)
            if version:
                registered[f"{config.model_prefix}-{name}"] = version
            own = head_metrics(metrics, name)
            mlflow.log_metrics(own, model_id=model_id)
            linked.update(own)
        mlflow.log_metrics({k: v for k, v in metrics.items() if k not in linked})
    return Result(
        result, mlflow_run.info.run_id, registered, result.markdown_path, Path(params.out_dir)
    )


def _log_and_register(
    name: str, export_dir: Path, config: HeadsConfig, tags: dict[str, str]
) -> tuple[str, str]:
    """Log one exported head as an MLflow PyTorch model (pt2) and register it; its logged
    model's id and registered version ("" when not registered)."""
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
        return info.model_id, ""
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
    return info.model_id, version
