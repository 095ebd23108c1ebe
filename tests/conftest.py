"""Process-wide test hygiene and the fixtures shared by several test packages."""

import os
import sys
from pathlib import Path

import pytest

_SESSION_EXPERIMENT_ID = os.environ.get("MLFLOW_EXPERIMENT_ID")


def _reset_experiment_id() -> None:
    if _SESSION_EXPERIMENT_ID is None:
        os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
    else:
        os.environ["MLFLOW_EXPERIMENT_ID"] = _SESSION_EXPERIMENT_ID


@pytest.fixture(autouse=True)
def _isolate_mlflow_globals():
    """Undo MLflow's process-global state (tracking URI, active run and experiment) after a test.

    `mlflow.set_tracking_uri` sets a module global that outranks MLFLOW_TRACKING_URI, so a test
    that points MLflow at a server would otherwise send a later test on the same xdist worker to
    that server after it has stopped.
    """
    env_before = os.environ.get("MLFLOW_TRACKING_URI")
    # `mlflow.set_experiment` also exports MLFLOW_EXPERIMENT_ID: left set, it sends the next
    # test's runs to an experiment id that its fresh store does not have. A module or session
    # fixture that ran a stage sets it before this fixture starts (CI: 2 pyfunc tests failed
    # so), hence reset to the session's value on the way in as well as on the way out.
    _reset_experiment_id()
    yield
    _reset_experiment_id()
    mlflow = sys.modules.get("mlflow")
    if mlflow is None:
        return
    from mlflow.tracking import fluent

    try:
        while mlflow.active_run() is not None:
            mlflow.end_run()
    except Exception:  # the run's store may be gone (a stopped server): just forget the run
        fluent._active_run_stack.get().clear()
    fluent._active_experiment_id = None
    mlflow.set_tracking_uri(None)  # also unsets the environment variable
    if env_before is not None:
        os.environ["MLFLOW_TRACKING_URI"] = env_before


@pytest.fixture(scope="session")
def pretrained_phantom(tmp_path_factory: pytest.TempPathFactory):
    """The `tiny` pre-training run on the phantom, made once for all xdist workers."""
    from tests.ssl.phantom_pretraining import pretrained_phantom as shared_run

    base = tmp_path_factory.getbasetemp()
    # Each xdist worker has its own basetemp under one session root; share that root.
    root: Path = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    return shared_run(root)


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An initialised, empty MLflow SQLite store (creating one takes seconds: tests copy it)."""
    import mlflow

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    mlflow.MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def tracking(mlflow_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An MlflowClient on a fresh SQLite store in tmp_path (MLFLOW_TRACKING_URI set)."""
    from tests.registry.helpers import use_tracking

    return use_tracking(mlflow_template, tmp_path, monkeypatch)
