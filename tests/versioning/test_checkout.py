"""`checkout_version` / `cxrflow data checkout`: validate first, swap atomically, lose nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cxrflow.cli import app
from cxrflow.versioning import VersioningError, checkout_version, read_version
from tests.versioning.dvc_repos import (
    closed_port,
    git_repo,
    http_remote,
    object_path,
    set_remote_url,
    tree_hashes,
    write_version,
)

V1 = {"manifest.csv": b"id\n1\n", "images/a.png": b"A" * 300, "images/b.png": b"B" * 200}
V2 = {"manifest.csv": b"id\n1\n3\n", "images/a.png": b"A" * 300, "images/c/d.png": b"D" * 50}


@pytest.fixture
def versions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A repo whose data/ is at v2, v1 before it; both pushed to a local remote."""
    root = git_repo(tmp_path / "repo")
    remote = tmp_path / "remote"
    monkeypatch.chdir(root)
    v1 = write_version(root, V1, remote)
    h1 = tree_hashes(root / "data")
    v2 = write_version(root, V2, remote)
    h2 = tree_hashes(root / "data")
    assert v1.md5 != v2.md5 and h1 != h2
    return root, remote, (v1, h1), (v2, h2)


def _leftovers(root: Path) -> list[str]:
    """Temporary directories a checkout must not leave behind."""
    return sorted(
        p.name for p in root.iterdir() if ".checkout-" in p.name or ".previous-" in p.name
    )


def test_older_version_then_back_gives_identical_trees(versions) -> None:
    root, _, (v1, h1), (v2, h2) = versions
    dvc_v2 = (root / "data.dvc").read_text()
    restored = checkout_version(root, v1.md5, Path("data"))
    assert restored.md5 == v1.md5 and restored.files == len(h1)
    assert tree_hashes(root / "data") == h1
    assert read_version(root / "data.dvc").md5 == v1.md5
    back = checkout_version(root, v2.md5 + ".dir", root / "data")
    assert back.md5 == v2.md5
    assert tree_hashes(root / "data") == h2
    # The .dvc file is as `dvc add` wrote it: same md5, size and file count.
    assert (root / "data.dvc").read_text() == dvc_v2
    assert _leftovers(root) == []


def test_a_unique_prefix_is_resolved(versions) -> None:
    root, _, (v1, h1), _ = versions
    assert checkout_version(root, v1.md5[:8].upper(), Path("data")).md5 == v1.md5
    assert tree_hashes(root / "data") == h1


def test_an_ambiguous_prefix_is_refused_listing_the_candidates(versions) -> None:
    root, remote, (v1, _), (_, h2) = versions
    # Another version sharing v1's first 9 digits, as a remote holding many versions might.
    twin = v1.md5[:9] + ("0" if v1.md5[9] != "0" else "1") + v1.md5[10:]
    fake = object_path(remote, twin + ".dir")
    fake.parent.mkdir(parents=True, exist_ok=True)
    fake.write_text("[]")
    with pytest.raises(VersioningError, match="ambiguous") as err:
        checkout_version(root, v1.md5[:9], Path("data"))
    assert v1.md5 in str(err.value) and twin in str(err.value)
    assert tree_hashes(root / "data") == h2


def _unknown_full_md5(root: Path, remote: Path) -> str:
    return "0123456789abcdef0123456789abcdef"


def _remote_unreachable(root: Path, remote: Path) -> str:
    """v1 is only on the remote, and the remote does not answer."""
    v1 = _v1(root, remote)
    shutil.rmtree(root / ".dvc" / "cache")
    set_remote_url(root, f"http://127.0.0.1:{closed_port()}/remote")
    return v1


def _objects_lost(root: Path, remote: Path) -> str:
    """v1's listing survives, one of its files is gone everywhere: the fetch fails."""
    v1 = _v1(root, remote)
    shutil.rmtree(root / ".dvc" / "cache")
    from tests.versioning.dvc_repos import listing

    entry = next(e for e in listing(remote, v1) if e["relpath"] == "images/b.png")
    object_path(remote, entry["md5"]).unlink()
    return v1


def _v1(root: Path, remote: Path) -> str:
    return (root / "v1").read_text()


@pytest.mark.parametrize(
    ("make_version", "message"),
    [
        (lambda root, remote: "deadbeef", "no data version starts with deadbeef"),
        (lambda root, remote: "deadbee", "no data version starts with deadbee"),
        (lambda root, remote: "dead", "is not a data version"),
        (lambda root, remote: "../../etc/passwd", "is not a data version"),
        (lambda root, remote: "g" * 32, "is not a data version"),
        (_unknown_full_md5, "is in neither the DVC cache nor the remote"),
        (_remote_unreachable, "cannot"),
        (_objects_lost, "cannot fetch data version"),
    ],
    ids=["typo", "prefix", "short", "path", "not-hex", "unknown", "unreachable", "lost-objects"],
)
def test_a_failed_checkout_changes_nothing(versions, make_version, message) -> None:
    root, remote, (v1, _), (v2, h2) = versions
    (root / "v1").write_text(v1.md5)  # for the builders above; outside data/
    version = make_version(root, remote)
    dvc_before = (root / "data.dvc").read_bytes()
    with pytest.raises(VersioningError, match=message):
        checkout_version(root, version, Path("data"))
    assert tree_hashes(root / "data") == h2
    assert (root / "data.dvc").read_bytes() == dvc_before
    assert read_version(root / "data.dvc").md5 == v2.md5
    assert _leftovers(root) == []


def test_files_no_version_records_are_not_overwritten_without_force(versions) -> None:
    root, _, (v1, h1), _ = versions
    (root / "data" / "images" / "new.png").write_bytes(b"only here")
    before = tree_hashes(root / "data")
    with pytest.raises(VersioningError, match=r"images/new\.png"):
        checkout_version(root, v1.md5, Path("data"))
    assert tree_hashes(root / "data") == before
    checkout_version(root, v1.md5, Path("data"), force=True)
    assert tree_hashes(root / "data") == h1


def test_a_failing_swap_puts_the_old_directory_and_dvc_file_back(versions, monkeypatch) -> None:
    root, _, (v1, _), (_, h2) = versions
    import cxrflow.versioning.checkout as co

    dvc_before = (root / "data.dvc").read_bytes()

    def write_fails(path: Path, text: str) -> None:
        assert tree_hashes(root / "data") != h2  # the new version is in place by now
        raise OSError("disk full")

    monkeypatch.setattr(co, "_write_atomic", write_fails)  # the .dvc write, after the renames
    with pytest.raises(OSError, match="disk full"):
        checkout_version(root, v1.md5, Path("data"))
    assert tree_hashes(root / "data") == h2
    assert (root / "data.dvc").read_bytes() == dvc_before
    assert _leftovers(root) == []


def test_a_teammates_clone_restores_from_a_shared_remote(versions, tmp_path: Path) -> None:
    """A clone has .dvc/config and data.dvc from git, no data/ and no cache."""
    root, remote, _, (v2, h2) = versions
    clone = git_repo(tmp_path / "clone")
    (clone / ".dvc").mkdir()
    shutil.copy(root / ".dvc" / "config", clone / ".dvc" / "config")
    shutil.copy(root / "data.dvc", clone / "data.dvc")
    with http_remote(remote) as url:  # the shared remote is not a local path here
        set_remote_url(clone, url)
        restored = checkout_version(clone, v2.md5, clone / "data")
    assert restored.md5 == v2.md5
    assert tree_hashes(clone / "data") == h2


runner = CliRunner()


def test_cli_typo_exits_1_with_one_line_and_data_intact(versions) -> None:
    root, _, _, (_, h2) = versions
    result = runner.invoke(app, ["data", "checkout", "deadbeef"])
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no data version starts with deadbeef")
    assert "Traceback" not in result.output and "Usage" not in result.output
    assert tree_hashes(root / "data") == h2


def test_cli_checkout_prints_the_version(versions) -> None:
    root, _, (v1, h1), _ = versions
    result = runner.invoke(app, ["data", "checkout", v1.md5[:10]])
    assert result.exit_code == 0, result.output
    assert f"data is now at data version {v1.md5} (4 files)" in result.stdout.splitlines()
    assert tree_hashes(root / "data") == h1
