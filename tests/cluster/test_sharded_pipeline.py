"""The sharded ingestion pipeline run with kfp.local yields the single-pod dataset."""

import hashlib
import os
import sys
from pathlib import Path

import pytest
import yaml
from kfp import compiler, local

from cxrflow.ingest import IngestConfig, run_ingest
from cxrflow.keys import KEY_FILE_ENV_VAR, load_key
from cxrflow.phantom import GROUND_TRUTH_NAME, generate_phantom
from pipelines.sharded_ingest import sharded_ingest_pipeline
from tests.cluster.test_shards import assert_same_dataset


@pytest.fixture
def env(tmp_path, monkeypatch):
    key = tmp_path / "deid.key"
    key.write_bytes(hashlib.sha256(b"sharded key").hexdigest().encode() + b"\n")
    monkeypatch.setenv(KEY_FILE_ENV_VAR, str(key))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(tmp_path)
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(tmp_path / "kfp"),
        raise_on_error=True,
    )
    return tmp_path


def test_sharded_pipeline_equals_single_pod_ingest(env):
    inbox = env / "inbox"
    generate_phantom(inbox, 6, seed=2, min_side=64, max_side=96, progress=False)
    gt = inbox / GROUND_TRUTH_NAME
    data = env / "data"
    task = sharded_ingest_pipeline(
        inbox=str(inbox), data_dir=str(data), n_shards=3, ground_truth=str(gt), max_side=64
    )
    single = run_ingest(
        IngestConfig(inbox, env / "single", ground_truth=gt, max_side=64, show_progress=False),
        load_key(),
    )
    assert task.output.metadata["ingest_run"] == single.run_id
    assert task.output.metadata["data_dir"] == str(data)
    assert_same_dataset(env / "single", data)
    assert not list((env / "data.shards").iterdir()), "shard directories are cleaned up"

    import mlflow

    runs = mlflow.search_runs(experiment_names=["cxrflow"])
    ingest_runs = runs[runs["tags.cxrflow.stage"] == "ingest"]
    assert list(ingest_runs["params.ingest_run"]) == [single.run_id]
    assert list(ingest_runs["metrics.files_written"]) == [single.written]


def test_sharded_pipeline_compiles_to_a_fan_out_and_a_merge(tmp_path):
    path = tmp_path / "sharded.yaml"
    compiler.Compiler().compile(sharded_ingest_pipeline, str(path))
    spec, platform = yaml.safe_load_all(path.read_text())
    dag = spec["root"]["dag"]["tasks"]
    loop = next(t for t in dag.values() if "parameterIterator" in t)
    assert loop["parameterIterator"]["items"]["inputParameter"]
    assert set(spec["deploymentSpec"]["executors"]) == {
        "exec-plan-ingest-shards",
        "exec-ingest-shard",
        "exec-merge-ingest-shards",
    }
    # Shards are addressed by index: no file path is ever a parameter.
    shard_inputs = spec["components"]["comp-ingest-shard"]["inputDefinitions"]["parameters"]
    assert shard_inputs["shard"]["parameterType"] == "NUMBER_INTEGER"
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for name in ("exec-plan-ingest-shards", "exec-ingest-shard", "exec-merge-ingest-shards"):
        assert [m["mountPath"] for m in k8s[name]["pvcMount"]] == ["/data"]
    assert "secretAsVolume" in k8s["exec-ingest-shard"]
    assert "secretAsVolume" not in k8s["exec-merge-ingest-shards"]
