"""Versioned data with DVC: the de-identified dataset directory is a DVC-tracked output.

The data version id is the DVC md5 of the directory (the `md5` of its `.dvc` file, without
DVC's `.dir` suffix). `data.dvc` at the repository root points at the current version; git
history of that file plus the DVC remote make every version restorable.

KFP is the orchestrator, so plain `.dvc` files are used, never `dvc.yaml` stages.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

log = logging.getLogger(__name__)

DEFAULT_REMOTE_NAME = "local"
# Written into the data directory before each `dvc add`: every version names its parent, so
# the history of a dataset can be walked back from any version.
PARENT_FILE = "version.json"


class VersioningError(RuntimeError):
    """DVC could not record or restore a data version (reason in the message)."""


def normalise_md5(md5: str) -> str:
    """The one form of a data version id: DVC's directory md5 without its `.dir` suffix."""
    return md5.strip().lower().removesuffix(".dir")


@dataclass(frozen=True)
class DataVersion:
    """One version of a DVC-tracked directory."""

    md5: str
    path: str  # the tracked directory, relative to the repository root
    remote: str  # the URL of the DVC remote that holds it
    files: int
    size: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "md5", normalise_md5(self.md5))

    @property
    def short(self) -> str:
        return self.md5[:12]


def _repo(root: Path):  # -> dvc.repo.Repo, imported lazily: DVC is slow to import
    from dvc.repo import Repo

    return Repo(str(root))


def ensure_repo(root: Path, remote_url: str | None = None) -> str:
    """Initialise DVC in `root` (a git work tree) if needed and make sure a default remote exists.

    Returns the URL of the default remote. Without `remote_url`, a local remote under
    `.cxrflow/dvc-remote` is used (the embedded default).
    """
    from dvc.repo import Repo

    root = root.resolve()
    if not (root / ".dvc").is_dir():
        no_scm = not (root / ".git").exists()
        Repo.init(str(root), no_scm=no_scm)
        log.info("initialised DVC in %s%s", root, " (no git)" if no_scm else "")
    config_path = root / ".dvc" / "config"
    text = config_path.read_text() if config_path.is_file() else ""
    if remote_url is None and "remote" in text:
        with _repo(root) as repo:
            core = repo.config.get("core", {})
            name = core.get("remote")
            if name:
                return str(repo.config["remote"][name]["url"])
    url = remote_url or str(root / ".cxrflow" / "dvc-remote")
    stored = url
    if "://" not in url:
        Path(url).mkdir(parents=True, exist_ok=True)
        # Like `dvc remote add`, DVC reads a relative local path against the working directory
        # and stores it relative to .dvc/: the committed config then holds no machine path.
        stored = os.path.relpath(url, Path.cwd())
    with _repo(root) as repo, repo.config.edit() as conf:
        conf.setdefault("remote", {})[DEFAULT_REMOTE_NAME] = {"url": stored}
        conf.setdefault("core", {})["remote"] = DEFAULT_REMOTE_NAME
    return url


def read_version(dvc_file: Path, remote: str = "") -> DataVersion:
    """The data version a `.dvc` file points at."""
    if not dvc_file.is_file():
        raise VersioningError(f"{dvc_file} not found: the data directory is not tracked yet")
    doc = yaml.safe_load(dvc_file.read_text())
    out = (doc or {}).get("outs", [{}])[0]
    md5 = str(out.get("md5", ""))
    if not md5:
        raise VersioningError(f"{dvc_file} has no md5")
    return DataVersion(
        md5=md5,
        path=str(out.get("path", "")),
        remote=remote,
        files=int(out.get("nfiles", 0) or 0),
        size=int(out.get("size", 0) or 0),
    )


def dvc_file_for(root: Path, data_dir: Path) -> Path:
    """The `.dvc` file DVC writes for `data_dir` (`data` -> `data.dvc` beside it)."""
    data_dir = (root / data_dir) if not data_dir.is_absolute() else data_dir
    return data_dir.parent / f"{data_dir.name}.dvc"


def commit_version(
    root: Path, data_dir: Path, remote_url: str | None = None, push: bool = True
) -> DataVersion:
    """Record the current content of `data_dir` as a data version and push it to the remote."""
    root = root.resolve()
    logging.getLogger("dvc").setLevel(logging.WARNING)  # its git hints are for people, not logs
    data_dir = data_dir if data_dir.is_absolute() else root / data_dir
    if not data_dir.is_dir():
        raise VersioningError(f"data directory not found: {data_dir}")
    url = ensure_repo(root, remote_url)
    rel = os.path.relpath(data_dir, root)
    dvc_file = dvc_file_for(root, data_dir)
    parent = read_version(dvc_file).md5 if dvc_file.is_file() else None
    with _repo(root) as repo:
        if parent is not None and not repo.status(targets=[str(dvc_file.relative_to(root))]):
            log.info("data directory unchanged since version %s", parent[:12])
            return read_version(dvc_file, remote=url)
        (data_dir / PARENT_FILE).write_text(json.dumps({"parent_version": parent}, indent=2) + "\n")
        repo.add([rel])
        if push:
            repo.push(targets=[rel])
    version = read_version(dvc_file_for(root, data_dir), remote=url)
    log.info("data version %s (%d files) pushed to %s", version.short, version.files, url)
    return version


def checkout_version(root: Path, md5: str, data_dir: Path) -> DataVersion:
    """Restore the directory `data_dir` to version `md5` from the remote."""
    from dvc.repo import Repo

    root = root.resolve()
    dvc_file = dvc_file_for(root, data_dir)
    original = dvc_file.read_text()
    current = read_version(dvc_file)
    doc = yaml.safe_load(original)
    doc["outs"][0]["md5"] = f"{md5.removesuffix('.dir')}.dir"
    for stale in ("size", "nfiles"):
        doc["outs"][0].pop(stale, None)
    if current.md5 != normalise_md5(md5):
        dvc_file.write_text(yaml.safe_dump(doc, sort_keys=False))
    with Repo(str(root)) as repo:
        try:
            repo.pull(targets=[str(dvc_file.relative_to(root))], force=True)
        except Exception as exc:
            dvc_file.write_text(original)
            raise VersioningError(f"cannot restore data version {md5}: {exc}") from exc
    return read_version(dvc_file)


def _object_path(store: Path, md5: str) -> Path:
    return store / "files" / "md5" / md5[:2] / md5[2:]


def version_history(root: Path, md5: str, remote_dir: Path | None = None) -> list[str]:
    """The chain of data versions from `md5` back to the first, newest first.

    Reads the version objects from the local DVC cache, or from a local remote directory.
    """
    stores = [root / ".dvc" / "cache"] + ([remote_dir] if remote_dir else [])
    chain: list[str] = []
    current: str | None = normalise_md5(md5)
    while current and current not in chain:
        chain.append(current)
        listing = next(
            (p for s in stores if (p := _object_path(s, current + ".dir")).is_file()), None
        )
        if listing is None:
            raise VersioningError(f"data version {current} is in neither the cache nor the remote")
        entry = next(
            (e for e in json.loads(listing.read_text()) if e["relpath"] == PARENT_FILE), None
        )
        if entry is None:
            break
        obj = next((p for s in stores if (p := _object_path(s, entry["md5"])).is_file()), None)
        if obj is None:
            raise VersioningError(f"the parent record of version {current} is missing")
        current = json.loads(obj.read_text()).get("parent_version")
    return chain
