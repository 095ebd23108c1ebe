"""The new-image watcher: one run per new batch, none when nothing is new."""

import hashlib
import os
import sys
from pathlib import Path

import pytest
from kfp import dsl

from components.data_version import version_data
from cxrflow.keys import KEY_FILE_ENV_VAR
from cxrflow.orchestration.local import LocalSettings
from cxrflow.orchestration.watch import Batch, LocalTrigger, watch, watch_once
from cxrflow.phantom import GROUND_TRUTH_NAME, generate_phantom
from cxrflow.versioning import dvc_file_for, read_version
from pipelines.sharded_ingest import sharded_ingest_pipeline
from tests.factory import make_dataset, write


@dsl.pipeline(name="watch-ingest-and-version")
def ingest_and_version(
    inbox: str, data_dir: str, repo_root: str, ground_truth: str = "", n_shards: int = 2
) -> str:
    """The first steps of the training pipeline: (sharded) ingestion, then the DVC version."""
    ingested = sharded_ingest_pipeline(
        inbox=inbox, data_dir=data_dir, n_shards=n_shards, ground_truth=ground_truth, max_side=64
    )
    version = version_data(
        dataset=ingested.output,
        repo_root=repo_root,
        pipeline_run=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
    )
    version.set_caching_options(False)
    return version.outputs["data_version"]


@pytest.fixture
def project(tmp_path, monkeypatch):
    key = tmp_path / "deid.key"
    key.write_bytes(hashlib.sha256(b"watch key").hexdigest().encode() + b"\n")
    monkeypatch.setenv(KEY_FILE_ENV_VAR, str(key))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    root = tmp_path / "project"
    root.mkdir()
    monkeypatch.chdir(root)
    inbox = root / "inbox"
    generate_phantom(
        inbox, 3, seed=2, min_side=64, max_side=96, include_faulty=False, progress=False
    )
    (inbox / GROUND_TRUTH_NAME).rename(root / GROUND_TRUTH_NAME)
    return root, inbox, LocalSettings(root, tmp_path / "kfp", uri)


class Recorder:
    """A trigger that records batches and starts nothing (the pipeline never ingests)."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []

    def __call__(self, batch: Batch) -> str:
        self.batches.append(batch)
        return f"run-{len(self.batches)}"


def test_local_trigger_runs_the_pipeline_once_per_new_batch(project):
    root, inbox, settings = project
    data = root / "data"
    trigger = LocalTrigger(
        settings,
        {
            "inbox": str(inbox),
            "data_dir": str(data),
            "repo_root": str(root),
            "ground_truth": str(root / GROUND_TRUTH_NAME),
        },
        pipeline=ingest_and_version,
    )
    kw = {"data_dir": data, "repo_root": root, "state_file": root / ".cxrflow" / "watch.json"}

    first = watch_once(inbox, trigger=trigger, **kw)
    assert first.triggered and first.new_files == first.files > 0
    assert len(trigger.runs) == 1 and trigger.runs[0].startswith("watch-ingest-and-version")
    v1 = read_version(dvc_file_for(root, data)).md5

    assert not watch_once(inbox, trigger=trigger, **kw).triggered
    assert len(trigger.runs) == 1

    write(make_dataset(sop_uid="1.2.840.99999.77.90", PatientID="NEW-P1"), inbox / "b2" / "IM1")
    write(make_dataset(sop_uid="1.2.840.99999.77.91", PatientID="NEW-P2"), inbox / "b2" / "IM2")
    second = watch_once(inbox, trigger=trigger, **kw)
    assert second.triggered and second.new_files == 2 and second.files == first.files + 2
    v2 = read_version(dvc_file_for(root, data)).md5
    assert v2 != v1, "the run made a new data version"

    assert not watch_once(inbox, trigger=trigger, **kw).triggered
    assert len(trigger.runs) == 2


def test_pending_batches_are_not_triggered_twice_until_they_expire(project):
    root, inbox, _ = project
    trigger = Recorder()
    kw = {
        "data_dir": root / "data",
        "repo_root": root,
        "state_file": Path(".cxrflow/watch.json"),  # relative to repo_root
        "trigger": trigger,
        "pending_ttl_s": 3600,
    }
    assert watch_once(inbox, now=1000.0, **kw).run_id == "run-1"
    assert not watch_once(inbox, now=2000.0, **kw).triggered  # run-1 is still ingesting

    write(make_dataset(sop_uid="1.2.840.99999.77.92", PatientID="NEW-P3"), inbox / "late" / "IM")
    late = watch_once(inbox, now=2500.0, **kw)
    assert late.run_id == "run-2" and list(late.batch.files) == list(trigger.batches[1].files)
    assert late.new_files == 1, "only the file not already pending"

    # run-1 never ingested its batch: after the TTL its files are offered again.
    retry = watch_once(inbox, now=1000.0 + 3601, **kw)
    assert retry.run_id == "run-3" and retry.new_files == len(trigger.batches[0].files)
    state = (root / ".cxrflow" / "watch.json").read_text()
    assert str(inbox) not in state and "IM" not in state, "state holds keys, never paths"


def test_a_failed_trigger_is_retried_on_the_next_pass(project):
    root, inbox, _ = project
    calls = []

    def failing(batch: Batch) -> str:
        calls.append(batch.id)
        raise RuntimeError("KFP down")

    kw = {"data_dir": root / "data", "repo_root": root, "state_file": root / "w.json"}
    results = watch(0, max_passes=2, inbox=inbox, trigger=failing, **kw)
    assert results == [] and len(calls) == 2 and calls[0] == calls[1]
    assert watch_once(inbox, trigger=Recorder(), **kw).run_id == "run-1"
