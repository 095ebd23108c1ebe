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
# The remote a pod pushes to when the step names none (k8s: ConfigMap cxrflow-pipeline-config,
# key dvc-remote). DVC's S3 client takes the endpoint and credentials from the standard AWS
# variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), set from a Secret.
REMOTE_ENV_VAR = "CXRFLOW_DVC_REMOTE"
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

    repo = Repo(str(root))
    # DVC's "To track the changes with git, run: git add ..." hints are for a person at a shell;
    # cxrflow records the version itself (they reached the demo's output on every version).
    repo.scm_context.quiet = True
    return repo


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


def dvc_project_for(root: Path, data_dir: Path) -> Path:
    """The DVC project that tracks `data_dir`: `root` when the directory lies inside it, else the
    directory's parent.

    A pipeline pod starts in an empty working directory with the data on a shared volume
    (`/data/dataset`); DVC refuses to cache an output outside its project
    (StageExternalOutputsError), so the project lives on the volume beside the data, where the
    next run finds its `.dvc` file and the version it names becomes the next version's parent.
    """
    root = root.resolve()
    data_dir = (data_dir if data_dir.is_absolute() else root / data_dir).resolve()
    return root if data_dir.is_relative_to(root) and data_dir != root else data_dir.parent


def default_remote(remote_url: str | None) -> str | None:
    """The remote to use: the one given, else $CXRFLOW_DVC_REMOTE, else None (the project's)."""
    return remote_url or os.environ.get(REMOTE_ENV_VAR) or None


def dvc_file_for(root: Path, data_dir: Path) -> Path:
    """The `.dvc` file DVC writes for `data_dir` (`data` -> `data.dvc` beside it)."""
    data_dir = (root / data_dir) if not data_dir.is_absolute() else data_dir
    return data_dir.parent / f"{data_dir.name}.dvc"


def commit_version(
    root: Path, data_dir: Path, remote_url: str | None = None, push: bool = True
) -> DataVersion:
    """Record the current content of `data_dir` as a data version and push it to the remote.

    `root` is the project that tracks the data; a `data_dir` outside it is tracked by a DVC
    project in its parent directory (`dvc_project_for`). The remote is `remote_url`, else
    $CXRFLOW_DVC_REMOTE, else the project's default (a local one for the demo).
    """
    from filelock import FileLock

    logging.getLogger("dvc").setLevel(logging.WARNING)  # its git hints are for people, not logs
    data_dir = data_dir if data_dir.is_absolute() else root.resolve() / data_dir
    if not data_dir.is_dir():
        raise VersioningError(f"data directory not found: {data_dir}")
    project = dvc_project_for(root, data_dir)
    if project != root.resolve():
        log.info("%s lies outside %s: tracked by the DVC project in %s", data_dir, root, project)
    # Two runs versioning the same volume at once: DVC's own lock fails fast; wait instead.
    with FileLock(str(project / f".{data_dir.name}.dvc.lock")):
        return _commit_locked(project, data_dir, default_remote(remote_url), push)


def _known_parent(root: Path, parent: str | None) -> str | None:
    """`parent` if the cache or the remote holds it, else None: a `.dvc` file copied from
    elsewhere (a clone, a template) must not make the new version's history dangle."""
    from cxrflow.versioning.history import known_version

    if parent is None or known_version(root, parent):
        return parent
    log.warning(
        "the .dvc file named version %s, which neither the cache nor the remote holds: "
        "recording the new version without a parent",
        parent[:12],
    )
    return None


def _commit_locked(root: Path, data_dir: Path, remote_url: str | None, push: bool) -> DataVersion:
    url = ensure_repo(root, remote_url)
    dvc_file = dvc_file_for(root, data_dir)
    parent = read_version(dvc_file).md5 if dvc_file.is_file() else None
    # Absolute targets: DVC reads relative ones against the working directory, which in a pod
    # is not the project.
    with _repo(root) as repo:
        if parent is not None and not repo.status(targets=[str(dvc_file)]):
            log.info("data directory unchanged since version %s", parent[:12])
        else:
            parent = _known_parent(root, parent)
            (data_dir / PARENT_FILE).write_text(
                json.dumps({"parent_version": parent}, indent=2) + "\n"
            )
            repo.add([str(data_dir)])
        # Also when unchanged: a version whose push failed last time is pushed now (DVC sends
        # only what the remote lacks).
        if push:
            try:
                repo.push(targets=[str(data_dir)])
            # DVC and its S3 client raise many kinds; the reason is what counts.
            except Exception as exc:
                raise VersioningError(
                    f"data version recorded in {dvc_file} but not pushed to {url}: "
                    f"{type(exc).__name__}: {exc} (the next run pushes it again)"
                ) from exc
    version = read_version(dvc_file_for(root, data_dir), remote=url)
    log.info("data version %s (%d files) pushed to %s", version.short, version.files, url)
    return version
