"""The start-of-pipeline gate: compare the data version with the champion encoder's."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from cxrflow.tags import CHAMPION, ENCODER_MODEL, TAG_DATA_VERSION
from cxrflow.versioning.gate import champion_data_version, data_changed


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    # One store for the module (creating an MLflow database takes seconds); tests use their
    # own model names.
    uri = f"sqlite:///{tmp_path_factory.mktemp('gate') / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        yield MlflowClient(uri)


def _version(client, name: str, data_version: str) -> str:
    try:
        client.get_registered_model(name)
    except Exception:
        client.create_registered_model(name)
    mv = client.create_model_version(
        name, "file:///tmp/encoder", tags={TAG_DATA_VERSION: data_version}
    )
    return str(mv.version)


def test_no_champion_means_changed(client):
    assert champion_data_version(client=client) is None
    assert data_changed("abc123", client=client) is True
    _version(client, ENCODER_MODEL, "abc123")  # a version, but no champion alias yet
    assert data_changed("abc123", client=client) is True


def test_compares_with_the_champions_data_version(client):
    name = "cxrflow-encoder-gate-test"
    v1 = _version(client, name, "aaa111")
    client.set_registered_model_alias(name, CHAMPION, v1)
    assert data_changed("aaa111", name, client=client) is False
    assert data_changed("aaa111.dir", name) is False  # DVC's .dir suffix, default client
    assert data_changed("bbb222", name, client=client) is True
    v2 = _version(client, name, "bbb222")
    client.set_registered_model_alias(name, CHAMPION, v2)
    assert data_changed("bbb222", name, client=client) is False
    with pytest.raises(ValueError, match="data_version"):
        data_changed("", name, client=client)
