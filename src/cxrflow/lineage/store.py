"""Reading old data versions' manifests back from the DVC cache or the remote."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pandas as pd

from cxrflow.manifest import MANIFEST_FILE
from cxrflow.versioning import (
    VersioningError,
    dvc_file_for,
    normalise_md5,
    read_version,
    version_history,
)
from cxrflow.versioning.history import open_stores

log = logging.getLogger(__name__)


def read_version_manifest(root: Path, md5: str, remote_dir: Path | None = None) -> pd.DataFrame:
    """The manifest of data version `md5`, read from the cache, the project's DVC remote (any
    type) or the local `remote_dir`."""
    md5 = normalise_md5(md5)
    with open_stores(root, remote_dir) as stores:
        listing = stores.listing(md5)
        if listing is None:
            raise VersioningError(f"data version {md5} is in neither the DVC cache nor the remote")
        entry = next((e for e in listing if e["relpath"] == MANIFEST_FILE), None)
        if entry is None:
            raise VersioningError(f"data version {md5} holds no {MANIFEST_FILE}")
        raw = stores.read(entry["md5"])
    if raw is None:
        raise VersioningError(f"the manifest object of data version {md5} is missing")
    return pd.read_parquet(io.BytesIO(raw))


def current_versions(root: Path, data_dir: Path, remote_dir: Path | None = None) -> list[str]:
    """The data versions in the history of `data_dir`'s .dvc file, newest first."""
    dvc_file = dvc_file_for(root, data_dir)
    if not dvc_file.is_file():
        return []
    head = read_version(dvc_file).md5
    return version_history(root, head, remote_dir)
