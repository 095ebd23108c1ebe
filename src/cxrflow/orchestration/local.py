"""Running the training pipeline on one machine with `kfp.local` (the embedded default).

The same pipeline function that is compiled for a cluster runs here through KFP's
SubprocessRunner in the current environment, with MLflow on a local SQLite store and DVC on a
local remote.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalSettings:
    """Where a local run keeps its state (all under the project directory by default)."""

    repo_root: Path
    pipeline_root: Path
    tracking_uri: str

    @classmethod
    def default(cls, repo_root: Path) -> LocalSettings:
        repo_root = repo_root.resolve()
        uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{repo_root / 'mlflow.db'}"
        return cls(
            repo_root=repo_root, pipeline_root=repo_root / ".cxrflow" / "kfp", tracking_uri=uri
        )


def run_pipeline_locally(settings: LocalSettings, params: dict[str, Any]) -> None:
    """Execute `training_pipeline(**params)` with kfp.local; raises if a task fails."""
    from kfp import local

    from pipelines.training import training_pipeline

    # Task subprocesses must find this environment's python, cxrflow and the same MLflow store.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    os.environ["MLFLOW_TRACKING_URI"] = settings.tracking_uri
    settings.pipeline_root.mkdir(parents=True, exist_ok=True)
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(settings.pipeline_root),
        raise_on_error=True,
    )
    params = {
        "repo_root": str(settings.repo_root),
        "runs_dir": str(settings.repo_root / ".cxrflow" / "runs"),
        **params,
    }
    log.info("running pipeline locally (pipeline root %s)", settings.pipeline_root)
    training_pipeline(**params)
