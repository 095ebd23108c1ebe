"""The training pipeline end to end as it runs on a cluster: every step a pod (empty read-only
working directory, the installed package only, configuration from k8s/'s ConfigMap keys and
Secrets), MLflow over HTTP with basic auth on PostgreSQL, artifacts and DVC data in S3."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from cxrflow.phantom import GROUND_TRUTH_NAME, generate_phantom
from cxrflow.tags import ENCODER_MODEL
from pipelines.parameters import PRODUCTION
from tests.cluster_sim import service_checks
from tests.cluster_sim.conftest import VIEWER_USER

# One test: every check needs the same services and pipeline run, and pytest-xdist 3.8's
# `loadgroup` does not keep a group on one worker under pytest 9 (seen in CI: two workers each
# started a cluster), so the run is shared by being one test, not by a fixture's scope.
pytestmark = pytest.mark.cluster_sim

# What the KFP backend would do with the compiled YAML, kfp.local does with the pipeline
# function it was compiled from, inside the pod.
DRIVER = """
import json, sys
import cxrflow, pipelines
from kfp import local
from pipelines.training import training_pipeline

site = sys.argv[3]
for module in (cxrflow, pipelines):
    assert module.__file__.startswith(site), f"{module.__name__} from {module.__file__}"
local.init(
    runner=local.SubprocessRunner(use_venv=False), pipeline_root=sys.argv[2], raise_on_error=True
)
training_pipeline(**json.loads(sys.argv[1]))
"""
PIPELINE_TIMEOUT_S = 900
# Pod paths (on the PVCs the compiled tasks mount), as an operator would type them in the form.
INBOX, DATA_DIR = "/data/inbox", "/data/dataset"
GROUND_TRUTH = "/data/ground-truth.parquet"


def run_pipeline(cluster):
    """One pipeline run on 16 phantom subjects, every step a pod; returns (pod, stdout)."""

    def host(path: str) -> Path:
        return Path(cluster.mounts.host(path))

    summary = generate_phantom(
        host(INBOX), 16, seed=3, min_side=96, max_side=128, include_faulty=False, progress=False
    )
    (host(INBOX) / GROUND_TRUTH_NAME).rename(host(GROUND_TRUTH))
    pod = cluster.pod()
    # The production profile (what the recurring run uses) with the tiny presets and the
    # smallest pre-training and report fine-tuning that still run every part of each stage.
    params = {
        **PRODUCTION,
        "ground_truth": GROUND_TRUTH,
        "max_side": 112,
        # 16 subjects: a wider test split keeps every finding's heads and reports fed.
        "train_ratio": 0.6,
        "val_ratio": 0.2,
        "test_ratio": 0.2,
        "pretrain_preset": "tiny",
        "heads_preset": "tiny",
        "report_preset": "tiny",
        "pretrain_steps": 2,
        "pretrain_batch_size": 2,
        "report_steps": 2,
    }
    assert (params["inbox"], params["data_dir"]) == (INBOX, DATA_DIR)
    # The pods see the volumes where this machine keeps them (no mount namespaces here).
    params = {k: cluster.mounts.host(v) if isinstance(v, str) else v for k, v in params.items()}
    result = pod.python(
        DRIVER,
        json.dumps(params),
        str(host("/checkpoints/kfp")),
        str(cluster.site),
        timeout=PIPELINE_TIMEOUT_S,
    )
    return pod, summary.n_images, result


def _viewer_client(cluster, monkeypatch):
    import mlflow

    user, password = cluster.credentials(VIEWER_USER)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", cluster.mlflow.url)
    return mlflow.MlflowClient(cluster.mlflow.url)


def test_cluster_profile_end_to_end(cluster, monkeypatch):
    """The services as k8s/base deploys them, then the pipeline as pods, then what an operator
    reads back: registry, lineage, data history."""
    service_checks.s3_refuses_a_wrong_secret_key(cluster)
    with monkeypatch.context() as mp:
        service_checks.mlflow_needs_a_credential_and_the_viewer_cannot_move_an_alias(cluster, mp)
    pod, n_images, _ = run_pipeline(cluster)
    registered_in_the_server_and_versioned_in_s3(cluster, n_images, monkeypatch)
    lineage_commands_work_against_the_server_in_a_pod(cluster, pod)
    data_history_reads_the_s3_remote_in_a_pod(cluster, pod)


def registered_in_the_server_and_versioned_in_s3(cluster, n_images: int, monkeypatch) -> None:

    def host(path: str) -> Path:
        return Path(cluster.mounts.host(path))

    # DVC: the project lives on the data volume beside the dataset; the version is in S3.
    dvc_file = host("/data/dataset.dvc")
    assert dvc_file.is_file() and host("/data/.dvc").is_dir()
    from cxrflow.versioning import read_version

    version = read_version(dvc_file)
    assert version.files > n_images  # images, masks, tables, the version record
    remote = cluster.config_maps["cxrflow-pipeline-config"]["dvc-remote"]
    bucket, prefix = remote.removeprefix("s3://").split("/", 1)
    keys = set(cluster.s3.keys(bucket, prefix))
    listing = f"{prefix}/files/md5/{version.md5[:2]}/{version.md5[2:]}.dir"
    assert listing in keys and len(keys) >= version.files

    client = _viewer_client(cluster, monkeypatch)
    experiment = client.get_experiment_by_name("cxrflow")
    runs = client.search_runs([experiment.experiment_id])
    stages = {r.data.tags["cxrflow.stage"]: r for r in runs}
    assert set(stages) >= {"ingest", "split", "data_version", "pretrain", "heads", "report"}
    assert stages["data_version"].data.tags["cxrflow.data_version"] == version.md5
    champion = client.get_model_version_by_alias(ENCODER_MODEL, "champion")
    assert champion.tags["cxrflow.data_version"] == version.md5
    assert "cxrflow.model_card" in champion.tags
    # Artifacts went through the tracking server into the artifact bucket, none to the volume.
    artifact_keys = cluster.s3.keys("mlflow-artifacts")
    assert any(stages["pretrain"].info.run_id in k for k in artifact_keys)
    assert not list(host("/data").glob("**/mlruns")) and not list(host("/data").glob("**/*.db"))

    # The backend store is the PostgreSQL database.
    import psycopg2

    pg = cluster.postgres
    with psycopg2.connect(
        host="127.0.0.1", port=pg.port, user=pg.user, password=pg.password, dbname="mlflow"
    ) as conn, conn.cursor() as cur:  # fmt: skip
        cur.execute(
            "SELECT count(*) FROM runs WHERE experiment_id = %s", (experiment.experiment_id,)
        )
        assert cur.fetchone()[0] == len(runs)

    manifest = pd.read_parquet(host("/data/dataset/manifest.parquet"))
    assert len(manifest) == n_images and manifest["split"].notna().all()


def lineage_commands_work_against_the_server_in_a_pod(cluster, pod) -> None:
    from cxrflow.versioning import read_version

    md5 = read_version(Path(cluster.mounts.host("/data/dataset.dvc"))).md5
    model = json.loads(pod.cxrflow("lineage", "model", ENCODER_MODEL, "--json").stdout)
    assert md5 in json.dumps(model)
    data = json.loads(pod.cxrflow("lineage", "data", md5, "--json").stdout)
    assert f"{ENCODER_MODEL}:1" in json.dumps(data)


def data_history_reads_the_s3_remote_in_a_pod(cluster, pod) -> None:
    from cxrflow.versioning import read_version

    md5 = read_version(Path(cluster.mounts.host("/data/dataset.dvc"))).md5
    # The pod's DVC cache is on the volume; history must read the remote, so empty the cache.
    cache = Path(cluster.mounts.host("/data/.dvc/cache"))
    shutil.rmtree(cache)
    out = pod.cxrflow("data", "history", "--data-dir", cluster.mounts.host(DATA_DIR)).stdout
    assert f"* {md5}" in out.splitlines()
