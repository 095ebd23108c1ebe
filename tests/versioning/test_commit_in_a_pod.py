"""Versioning from a pod: an empty working directory, the data on a shared volume (issue 15:
DVC raised StageExternalOutputsError there)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml

from cxrflow.versioning import (
    PARENT_FILE,
    REMOTE_ENV_VAR,
    VersioningError,
    commit_version,
    dvc_project_for,
    read_version,
    version_history,
)


@pytest.fixture
def pod(tmp_path, monkeypatch):
    """(volume, dataset dir, remote dir) with the process in an empty working directory."""
    workdir, volume, remote = tmp_path / "workdir", tmp_path / "volume", tmp_path / "remote"
    dataset = volume / "dataset"
    dataset.mkdir(parents=True)
    workdir.mkdir()
    (dataset / "manifest.csv").write_text("image,subject\na.png,s1\n")
    monkeypatch.chdir(workdir)
    monkeypatch.delenv(REMOTE_ENV_VAR, raising=False)
    return volume, dataset, remote


def test_project_is_the_repo_when_the_data_lies_inside_and_the_parent_when_outside(tmp_path):
    repo = tmp_path / "repo"
    assert dvc_project_for(repo, Path("data")) == repo.resolve()
    assert dvc_project_for(repo, repo / "data") == repo.resolve()
    assert dvc_project_for(repo, tmp_path / "volume" / "dataset") == tmp_path / "volume"


def test_commit_from_an_empty_workdir_tracks_the_data_on_the_volume(pod):
    volume, dataset, remote = pod
    v1 = commit_version(Path("."), dataset, str(remote))
    assert list(Path.cwd().iterdir()) == []  # nothing in the pod's working directory
    assert (volume / ".dvc").is_dir() and (volume / "dataset.dvc").is_file()
    assert read_version(volume / "dataset.dvc").md5 == v1.md5
    assert (remote / "files" / "md5" / v1.md5[:2] / f"{v1.md5[2:]}.dir").is_file()

    # The next run (a new pod) finds the volume's project: the new version names its parent.
    (dataset / "new.png").write_bytes(b"\x89PNG")
    v2 = commit_version(Path("."), dataset, str(remote))
    assert v2.md5 != v1.md5
    assert json.loads((dataset / PARENT_FILE).read_text())["parent_version"] == v1.md5
    assert list(version_history(volume, v2.md5)) == [v2.md5, v1.md5]


def test_remote_comes_from_the_environment_when_the_step_names_none(pod, monkeypatch, tmp_path):
    _, dataset, _ = pod
    env_remote = tmp_path / "from-configmap"
    monkeypatch.setenv(REMOTE_ENV_VAR, str(env_remote))
    version = commit_version(Path("."), dataset)
    assert version.remote == str(env_remote)
    assert (env_remote / "files" / "md5" / version.md5[:2] / f"{version.md5[2:]}.dir").is_file()


def test_a_dvc_file_naming_an_unknown_version_is_not_recorded_as_parent(pod, caplog):
    volume, dataset, remote = pod
    commit_version(Path("."), dataset, str(remote))
    dvc_file = volume / "dataset.dvc"
    doc = yaml.safe_load(dvc_file.read_text())
    doc["outs"][0]["md5"] = "0123456789abcdef0123456789abcdef.dir"  # a clone's stale file
    dvc_file.write_text(yaml.safe_dump(doc))
    (dataset / "more.png").write_bytes(b"\x89PNG")
    with caplog.at_level(logging.WARNING, logger="cxrflow.versioning.dvc"):
        commit_version(Path("."), dataset, str(remote))
    assert json.loads((dataset / PARENT_FILE).read_text())["parent_version"] is None
    assert "0123456789ab" in caplog.text


def test_a_failed_push_is_an_error_naming_the_remote_and_the_next_run_pushes(pod, monkeypatch):
    volume, dataset, remote = pod
    # An S3 remote whose endpoint nothing listens on: recorded, not pushed.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "unused")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "unused")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(VersioningError, match="not pushed to s3://cxrflow-data/dvc"):
        commit_version(Path("."), dataset, "s3://cxrflow-data/dvc")
    recorded = read_version(volume / "dataset.dvc")
    version = commit_version(Path("."), dataset, str(remote))  # unchanged data: pushed now
    assert version.md5 == recorded.md5
    assert (remote / "files" / "md5" / version.md5[:2] / f"{version.md5[2:]}.dir").is_file()
