import pytest

from tests.registry.helpers import template_db, use_tracking


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory):
    return template_db(tmp_path_factory)


@pytest.fixture
def tracking(mlflow_template, tmp_path, monkeypatch):
    """An MlflowClient on a fresh SQLite store in tmp_path (MLFLOW_TRACKING_URI set)."""
    return use_tracking(mlflow_template, tmp_path, monkeypatch)
