"""The cluster simulation: PostgreSQL + S3 + MLflow (basic auth) started once per session, and
pods configured from the compiled pipeline and the ConfigMaps in k8s/ (`make cluster-sim`)."""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.cluster_sim.pod import REPO, Mounts, Pod, build_image_site, config_maps, pod_spec
from tests.cluster_sim.services import MlflowServer, Postgres, S3Server

COMPILED = REPO / "pipelines" / "training.yaml"
# The ConfigMap keys whose values are service addresses: the only values the simulation
# replaces (with its loopback ports); every other value is used as k8s/ defines it.
SERVICE_ADDRESS_KEYS = {
    ("cxrflow-mlflow-config", "tracking-uri"): "mlflow",
    ("cxrflow-mlflow-config", "s3-endpoint-url"): "s3",
    ("cxrflow-pipeline-config", "s3-endpoint-url"): "s3",
}
PIPELINE_USER = "cxrflow-pipeline"
VIEWER_USER = "viewer"


@dataclass
class Cluster:
    """The running services, the objects the pods are configured from, and the volumes."""

    root: Path
    postgres: Postgres
    s3: S3Server
    mlflow: MlflowServer
    config_maps: dict[str, dict[str, str]]
    secrets: dict[str, dict[str, str]]
    mounts: Mounts
    site: Path

    def pod(self) -> Pod:
        """A pod as the compiled pipeline's tasks get one."""
        spec = pod_spec(COMPILED, self.config_maps, self.secrets)
        return Pod(self.root / "pods", self.site, spec, self.mounts, self.secrets)

    def credentials(self, user: str) -> tuple[str, str]:
        if user == self.mlflow.admin_user:
            return user, self.mlflow.admin_password
        data = self.secrets["cxrflow-mlflow-auth"] if user == PIPELINE_USER else self.viewer
        return data["username"], data["password"]

    viewer: dict[str, str] | None = None


def _bucket(url: str) -> str:
    parsed = urlparse(url)
    assert parsed.scheme == "s3", f"{url} is not an s3:// URL"
    return parsed.netloc


@pytest.fixture(scope="session")
def cluster():
    """Start the services (about 15 s), yield the Cluster, stop them."""
    # Not under pytest's tmp dir: that is private to root, and the pods run as another user.
    root = Path(tempfile.mkdtemp(prefix="cxrflow-cluster-sim-"))
    root.chmod(0o755)
    postgres = Postgres(root / "postgres")
    s3 = S3Server(root / "s3")
    mlflow_server: MlflowServer | None = None
    try:
        postgres.start()
        for db in ("mlflow", "mlflow_auth"):
            postgres.create_database(db)
        s3.start()
        maps = config_maps()
        pipeline_config = maps["cxrflow-pipeline-config"]
        mlflow_config = maps["cxrflow-mlflow-config"]
        for url in (mlflow_config["artifacts-destination"], pipeline_config["dvc-remote"]):
            s3.create_bucket(_bucket(url))
        mlflow_server = MlflowServer(
            root / "mlflow",
            backend_store_uri=postgres.url("mlflow"),
            auth_database_uri=postgres.url("mlflow_auth"),
            artifacts_destination=mlflow_config["artifacts-destination"],
            s3=s3,
        ).start()
        address = {"mlflow": mlflow_server.url, "s3": s3.endpoint}
        for (name, key), service in SERVICE_ADDRESS_KEYS.items():
            assert key in maps[name], f"k8s/ ConfigMap {name} has no key {key}"
            maps[name][key] = address[service]
        pipeline_password = secrets.token_urlsafe(16)
        mlflow_server.create_user(PIPELINE_USER, pipeline_password)
        viewer = {"username": VIEWER_USER, "password": secrets.token_urlsafe(16)}
        mlflow_server.create_user(viewer["username"], viewer["password"])
        # A fixed key: the pseudonyms, hence the keyed-hash split, are the same on every run.
        key = hashlib.sha256(b"cxrflow cluster simulation key").hexdigest()
        cluster_secrets = {
            "cxrflow-object-store": {"access-key": s3.access_key, "secret-key": s3.secret_key},
            "cxrflow-mlflow-auth": {"username": PIPELINE_USER, "password": pipeline_password},
            "cxrflow-deid-key": {"key": key + "\n"},
        }
        volumes = root / "volumes"
        mounts = Mounts(
            {
                "/data": volumes / "data",
                "/checkpoints": volumes / "checkpoints",
                "/var/run/secrets": root / "secrets",
            }
        )
        for path in mounts.paths.values():
            path.mkdir(parents=True)
        image = root / "image"
        site = build_image_site(image)
        for d in (root, image, *image.rglob("*")):
            if d.is_dir():
                d.chmod(0o755)
        yield Cluster(
            root=root,
            postgres=postgres,
            s3=s3,
            mlflow=mlflow_server,
            config_maps=maps,
            secrets=cluster_secrets,
            mounts=mounts,
            site=site,
            viewer=viewer,
        )
    finally:
        if mlflow_server is not None:
            mlflow_server.stop()
        s3.stop()
        postgres.stop()
        if not os.environ.get("CXRFLOW_KEEP_CLUSTER_SIM"):
            shutil.rmtree(root, ignore_errors=True)
