"""The demo never records a version nobody holds as a parent (issue 15's committed data.dvc)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from rich.console import Console

from cxrflow.demo import DemoConfig, set_aside_dangling_version
from cxrflow.versioning import version_history
from tests.versioning.dvc_repos import git_repo, write_version

DANGLING = "6297fedadd554bfd1f0b88df8b34fbe0"  # the md5 the repository once shipped


def test_a_dangling_data_dvc_is_moved_aside_and_not_recorded_as_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = git_repo(tmp_path / "repo")
    monkeypatch.chdir(root)
    remote = tmp_path / "remote"
    write_version(root, {"a.txt": b"a"}, remote)
    dangling = yaml.safe_dump({"outs": [{"md5": DANGLING + ".dir", "hash": "md5", "path": "data"}]})
    (root / "data.dvc").write_text(dangling)
    set_aside_dangling_version(DemoConfig(root=root), Console(quiet=True))
    assert not (root / "data.dvc").exists()
    assert (root / ".cxrflow" / f"data.dvc.unknown-{DANGLING[:12]}").read_text() == dangling
    fresh = write_version(root, {"a.txt": b"b"}, remote)
    history = version_history(root, fresh.md5)
    assert history == [fresh.md5] and history.missing is None


def test_a_data_dvc_naming_a_known_version_stays(tmp_path: Path, monkeypatch) -> None:
    root = git_repo(tmp_path / "repo")
    monkeypatch.chdir(root)
    write_version(root, {"a.txt": b"a"}, tmp_path / "remote")
    before = (root / "data.dvc").read_text()
    set_aside_dangling_version(DemoConfig(root=root), Console(quiet=True))
    assert (root / "data.dvc").read_text() == before
