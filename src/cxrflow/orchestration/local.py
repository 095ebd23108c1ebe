"""Running the training pipeline on one machine with `kfp.local` (the embedded default).

The same pipeline function that is compiled for a cluster runs here through KFP's
SubprocessRunner in the current environment, with MLflow on a local SQLite store and DVC on a
local remote.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cxrflow.logs import quiet_library_bars
from cxrflow.orchestration.local_logs import TaskLogFilter, log_path_for

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


def run_pipeline_locally(settings: LocalSettings, params: dict[str, Any]) -> Path:
    """Execute `training_pipeline(**params)` with kfp.local; raises if a task fails.

    The tasks' messages go to stderr without KFP's executor chatter; the full stream is kept
    in the returned log file.
    """
    from kfp import local

    from pipelines.training import training_pipeline

    # Task subprocesses must find this environment's python, cxrflow and the same MLflow store.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    os.environ["MLFLOW_TRACKING_URI"] = settings.tracking_uri
    quiet_library_bars()  # their output is re-printed line by line, on a terminal too
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
    log_file = log_path_for(settings.pipeline_root, time.strftime("%Y%m%d-%H%M%S"))
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log.info("running pipeline locally; full task logs in %s", log_file)
    with open(log_file, "a", encoding="utf-8") as full, warnings.catch_warnings():
        # Expected here, said once in the docs rather than per task: the SubprocessRunner runs
        # each task in this environment (not its image) and without its resource settings.
        warnings.filterwarnings("ignore", message=r".*have no effect in the current local runner")
        warnings.filterwarnings("ignore", message=r"You may be attemping to run a task that uses")
        stream = TaskLogFilter(shown=sys.stderr, full=full)
        try:
            with contextlib.redirect_stdout(stream):
                training_pipeline(**params)
        finally:
            stream.close_pending()
    return log_file
