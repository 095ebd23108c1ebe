"""Reading old data versions' manifests straight from the DVC cache or a local DVC remote."""

from __future__ import annotations

import json
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

log = logging.getLogger(__name__)


def _object(stores: list[Path], md5: str) -> Path | None:
    # DVC 3 layout: <cache or remote>/files/md5/<first 2 hex>/<rest>
    for store in stores:
        path = store / "files" / "md5" / md5[:2] / md5[2:]
        if path.is_file():
            return path
    return None


def local_remote_dir(root: Path) -> Path | None:
    """The default DVC remote's directory when it is a local path (None otherwise)."""
    import configparser

    config = root / ".dvc" / "config"
    if not config.is_file():
        return None
    parser = configparser.ConfigParser()
    parser.read(config)
    name = parser.get("core", "remote", fallback="")
    url = parser.get(f"'remote \"{name}\"'", "url", fallback="") if name else ""
    if not url or "://" in url:
        return None
    # DVC stores a relative local remote relative to the .dvc/ directory
    path = Path(url)
    return path if path.is_absolute() else (root / ".dvc" / path).resolve()


def stores_for(root: Path, remote_dir: Path | None = None) -> list[Path]:
    """Where version objects can be read: the local cache, then the (local) remote."""
    remote = remote_dir or local_remote_dir(root)
    return [root / ".dvc" / "cache", *([remote] if remote else [])]


def read_version_manifest(root: Path, md5: str, remote_dir: Path | None = None) -> pd.DataFrame:
    """The manifest of data version `md5`, read from the cache or the local remote."""
    stores = stores_for(root, remote_dir)
    md5 = normalise_md5(md5)
    listing = _object(stores, md5 + ".dir")
    if listing is None:
        raise VersioningError(f"data version {md5} is in neither the DVC cache nor the remote")
    entry = next(
        (e for e in json.loads(listing.read_text()) if e["relpath"] == MANIFEST_FILE), None
    )
    if entry is None:
        raise VersioningError(f"data version {md5} holds no {MANIFEST_FILE}")
    obj = _object(stores, entry["md5"])
    if obj is None:
        raise VersioningError(f"the manifest object of data version {md5} is missing")
    return pd.read_parquet(obj)


def current_versions(root: Path, data_dir: Path, remote_dir: Path | None = None) -> list[str]:
    """The data versions in the history of `data_dir`'s .dvc file, newest first."""
    dvc_file = dvc_file_for(root, data_dir)
    if not dvc_file.is_file():
        return []
    head = read_version(dvc_file).md5
    return version_history(root, head, remote_dir or local_remote_dir(root))
