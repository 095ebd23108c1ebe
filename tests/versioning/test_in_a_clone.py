"""Versioning in a clone of this repository, with its own .gitignore (the demo's layout).

A `.gitignore` that lists `data.dvc` makes DVC refuse to write it (FileIsGitIgnored): the demo
then failed at its first data version on every fresh clone.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from cxrflow.versioning import commit_version, read_version

REPO = Path(__file__).resolve().parents[2]


def test_the_demo_versions_its_data_in_a_clone_with_the_repos_gitignore(
    tmp_path: Path, capfd, caplog
) -> None:
    clone = tmp_path / "clone"
    clone.mkdir()
    subprocess.run(["git", "init", "-q", str(clone)], check=True)
    shutil.copy(REPO / ".gitignore", clone / ".gitignore")
    data = clone / "data"  # where the demo keeps its dataset
    data.mkdir()
    (data / "manifest.csv").write_text("image,subject\na.png,s1\n")

    version = commit_version(clone, data, str(tmp_path / "remote"))

    assert read_version(clone / "data.dvc").md5 == version.md5
    ignored = subprocess.run(["git", "check-ignore", "-q", "data"], cwd=clone)
    assert ignored.returncode == 0  # the data itself stays out of git
    # DVC's "git add" hints are for a person at a shell, not for the pipeline's output.
    out, err = capfd.readouterr()
    assert "To track the changes with git" not in out + err + caplog.text
