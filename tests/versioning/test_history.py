"""`version_history` / `cxrflow data history`: any remote type, a missing parent is not a crash."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cxrflow.cli import app
from cxrflow.versioning import (
    MissingParent,
    VersioningError,
    known_version,
    version_history,
)
from tests.versioning.dvc_repos import (
    closed_port,
    drop_version,
    git_repo,
    http_remote,
    set_remote_url,
    write_version,
)


@pytest.fixture
def chain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Three versions of data/, each naming the one before, pushed to a local remote."""
    root = git_repo(tmp_path / "repo")
    remote = tmp_path / "remote"
    monkeypatch.chdir(root)
    versions = [
        write_version(root, {"a.txt": b"1" * n, "b/c.txt": b"x" * i}, remote).md5
        for i, n in enumerate((10, 20, 30))
    ]
    assert len(set(versions)) == 3
    return root, remote, versions


def test_history_walks_back_to_the_first_version(chain) -> None:
    root, _, (v1, v2, v3) = chain
    history = version_history(root, v3)
    assert history == [v3, v2, v1] and history.missing is None
    assert version_history(root, v2 + ".dir") == [v2, v1]


def test_history_reads_the_remote_when_the_cache_is_empty(chain) -> None:
    root, _, (v1, v2, v3) = chain
    shutil.rmtree(root / ".dvc" / "cache")
    assert version_history(root, v3) == [v3, v2, v1]


def test_history_reads_through_dvcs_remote_filesystem_not_a_local_path(chain) -> None:
    """An HTTP remote: only DVC's filesystem for it can read the listings and parent records."""
    root, remote, (v1, v2, v3) = chain
    shutil.rmtree(root / ".dvc" / "cache")
    with http_remote(remote) as url:
        set_remote_url(root, url)
        assert version_history(root, v3) == [v3, v2, v1]
        assert known_version(root, v1) and not known_version(root, "0" * 32)


def test_a_missing_parent_ends_the_chain_with_a_marked_entry(chain) -> None:
    root, remote, (v1, v2, v3) = chain
    drop_version(root, remote, v1)  # e.g. a version recorded on a laptop, never pushed
    history = version_history(root, v3)
    assert history == [v3, v2]
    assert history.missing == MissingParent(md5=v1, recorded_by=v2)
    assert not known_version(root, v1) and known_version(root, v2)


def test_an_unknown_head_or_an_unreachable_remote_raises(chain) -> None:
    root, _, (_, _, v3) = chain
    with pytest.raises(VersioningError, match="is in neither the cache nor the remote"):
        version_history(root, "0" * 32)
    shutil.rmtree(root / ".dvc" / "cache")
    set_remote_url(root, f"http://127.0.0.1:{closed_port()}/remote")
    with pytest.raises(VersioningError, match="cannot reach the DVC remote"):
        version_history(root, v3)
    with pytest.raises(VersioningError, match="cannot reach the DVC remote"):
        known_version(root, v3)


runner = CliRunner()


def test_cli_history_prints_a_missing_parent_as_a_line_and_exits_0(chain) -> None:
    root, remote, (v1, v2, v3) = chain
    drop_version(root, remote, v1)
    result = runner.invoke(app, ["data", "history"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"* {v3}",
        f"  {v2}",
        f"  parent {v1} is not in the cache or the remote (recorded by {v2})",
    ]


def test_cli_history_of_a_dangling_data_dvc_is_one_line_exit_1(chain) -> None:
    """The issue's case: a committed data.dvc naming a version no clone has."""
    root, _, _ = chain
    doc = yaml.safe_load((root / "data.dvc").read_text())
    doc["outs"][0]["md5"] = "6297fedadd554bfd1f0b88df8b34fbe0.dir"
    (root / "data.dvc").write_text(yaml.safe_dump(doc))
    result = runner.invoke(app, ["data", "history"])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "6297fedadd554bfd1f0b88df8b34fbe0 is in neither" in lines[0]
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_cli_history_without_a_data_dvc_is_one_line_exit_1(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(git_repo(tmp_path / "empty"))
    result = runner.invoke(app, ["data", "history"])
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "not tracked" in result.stderr
