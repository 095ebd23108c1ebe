"""Checks that the simulated cluster's services behave as the ones k8s/base deploys:
authenticated MLflow on PostgreSQL with artifacts in S3, and an S3 store that refuses wrong
credentials (called by tests/cluster_sim/test_pipeline.py)."""

from __future__ import annotations

import pytest

from tests.cluster_sim.conftest import PIPELINE_USER, VIEWER_USER
from tests.cluster_sim.services import http_status


def s3_refuses_a_wrong_secret_key(cluster):
    from botocore.exceptions import ClientError

    bucket = "cxrflow-auth-check"
    cluster.s3.create_bucket(bucket)
    with pytest.raises(ClientError, match=r"SignatureDoesNotMatch|AccessDenied|InvalidAccessKeyId"):
        cluster.s3.client(secret_key="not-the-secret").list_objects_v2(Bucket=bucket)


def mlflow_needs_a_credential_and_the_viewer_cannot_move_an_alias(cluster, monkeypatch):
    import mlflow
    from mlflow.exceptions import MlflowException

    url = cluster.mlflow.url
    search = f"{url}/api/2.0/mlflow/experiments/search?max_results=1"
    assert http_status(search) == 401
    assert http_status(search, auth=("nobody", "wrong")) == 401
    assert http_status(search, auth=cluster.credentials(VIEWER_USER)) == 200

    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    user, password = cluster.credentials(PIPELINE_USER)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    mlflow.set_experiment("cluster-sim-auth")
    with mlflow.start_run() as run:
        mlflow.log_text("encoder weights stand-in", "model/weights.txt")
    client = mlflow.MlflowClient(url)
    name = "cluster-sim-auth-model"
    client.create_registered_model(name)
    version = client.create_model_version(name, f"runs:/{run.info.run_id}/model", run.info.run_id)
    client.set_registered_model_alias(name, "champion", version.version)

    # The artifact went through the server's proxy into the S3 bucket of k8s/'s ConfigMap.
    keys = cluster.s3.keys("mlflow-artifacts")
    assert any(k.endswith(f"{run.info.run_id}/artifacts/model/weights.txt") for k in keys)

    viewer, viewer_password = cluster.credentials(VIEWER_USER)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", viewer)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", viewer_password)
    as_viewer = mlflow.MlflowClient(url)
    assert as_viewer.get_model_version_by_alias(name, "champion").version == version.version
    with pytest.raises(MlflowException, match="403"):
        as_viewer.set_registered_model_alias(name, "champion", version.version)
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME")
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD")
    with pytest.raises(MlflowException, match="401"):
        mlflow.MlflowClient(url).set_registered_model_alias(name, "champion", version.version)
