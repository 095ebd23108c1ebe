"""Reading data versions back: their `.dir` listings and parent records, from cache or remote.

Every object is read through DVC's own object databases (`repo.cache.local` and
`repo.cloud.get_remote_odb()`), so a version is found wherever DVC would find it: the local
cache, a local-directory remote, S3, HTTP or any other remote type DVC has a filesystem for.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cxrflow.versioning.dvc import PARENT_FILE, VersioningError, normalise_md5

log = logging.getLogger(__name__)


class VersionStores:
    """The local DVC cache first, then the default remote (and any extra stores), as ODBs."""

    def __init__(self, cache: Any, remote: Any | None, extra: tuple[Any, ...] = ()) -> None:
        self.cache = cache  # dvc_data HashFileDB of the local cache
        self.remote = remote  # HashFileDB of the default remote, None when none is configured
        self.extra = extra
        self._reachable: set[int] = set()

    @property
    def remote_url(self) -> str:
        """Where the default remote lives (for messages)."""
        if self.remote is None:
            return "(no DVC remote configured)"
        fs = self.remote.fs  # the ODB sits at <remote>/files/md5: name the remote itself
        return str(fs.unstrip_protocol(fs.parent(fs.parent(self.remote.path))))

    def _remotes(self) -> list[Any]:
        return [odb for odb in (self.remote, *self.extra) if odb is not None]

    def _check_reachable(self, odb: Any) -> None:
        """Raise when `odb` cannot be asked at all: only then is "not found" trustworthy."""
        if id(odb) in self._reachable:
            return
        try:
            # Reading an object that cannot exist: a 404/NoSuchKey proves the remote answers;
            # `info`/`exists` will not do, fsspec's HTTP turns connection errors into "missing".
            odb.fs.cat_file(odb.fs.join(odb.path, "00", "cxrflow-reachability-probe"))
        except FileNotFoundError:
            pass
        except Exception as exc:  # connection refused, DNS, credentials
            url = odb.fs.unstrip_protocol(odb.path)
            raise VersioningError(f"cannot reach the DVC remote {url}: {exc}") from exc
        self._reachable.add(id(odb))

    def locate(self, oid: str) -> Any | None:
        """The first store holding object `oid`, or None; an unreachable remote raises."""
        if self.cache.exists(oid):
            return self.cache
        for odb in self._remotes():
            try:
                if odb.exists(oid):
                    return odb
            except Exception as exc:  # a network or credentials error: not "missing"
                url = odb.fs.unstrip_protocol(odb.path)
                raise VersioningError(f"cannot reach the DVC remote {url}: {exc}") from exc
            # Some filesystems (HTTP) answer "no" to `exists` when the server is down.
            self._check_reachable(odb)
        return None

    def read(self, oid: str) -> bytes | None:
        """The bytes of object `oid` from the cache or a remote, or None where none holds it."""
        odb = self.locate(oid)
        if odb is None:
            return None
        try:
            return bytes(odb.fs.cat_file(odb.oid_to_path(oid)))
        except Exception as exc:
            url = odb.fs.unstrip_protocol(odb.oid_to_path(oid))
            raise VersioningError(f"cannot read {url}: {exc}") from exc

    def listing(self, md5: str) -> list[dict[str, Any]] | None:
        """The `.dir` listing (relpath, md5 of each file) of version `md5`, or None."""
        raw = self.read(normalise_md5(md5) + ".dir")
        if raw is None:
            return None
        try:
            entries = json.loads(raw)
        except ValueError as exc:
            raise VersioningError(f"the listing of data version {md5} is corrupt") from exc
        if not isinstance(entries, list):
            raise VersioningError(f"the listing of data version {md5} is corrupt")
        return entries

    def versions_with_prefix(self, prefix: str) -> list[str]:
        """The data versions (directory md5s) starting with `prefix` (>= 2 hex digits)."""
        found: set[str] = set()
        for odb in (self.cache, *self._remotes()):
            try:
                # A private dvc-objects helper, but the only way to list a single two-digit
                # shard (`files/md5/ab/`) instead of every object of a remote; remotes that
                # cannot list (HTTP) raise and are skipped: a full md5 still works there.
                oids = odb._list_oids(prefixes=[prefix[:2]])
                found.update(
                    o.removesuffix(".dir")
                    for o in oids
                    if o.endswith(".dir") and o.startswith(prefix)
                )
            except Exception as exc:
                log.debug("cannot list %s: %s", odb.path, exc)
        return sorted(found)


@contextmanager
def open_stores(root: Path, remote_dir: Path | None = None) -> Iterator[VersionStores]:
    """The DVC cache and default remote of the repository at `root` (plus a local `remote_dir`)."""
    from dvc.config import NoRemoteError
    from dvc.fs import LocalFileSystem
    from dvc_data.hashfile.db import get_odb

    extra: tuple[Any, ...] = ()
    if remote_dir is not None:
        path = str(Path(remote_dir).resolve() / "files" / "md5")
        extra = (get_odb(LocalFileSystem(), path, hash_name="md5"),)
    root = Path(root).resolve()
    if not (root / ".dvc").is_dir():
        # No DVC repository (yet): only a cache path that holds nothing, and the extra store.
        cache_path = str(root / ".dvc" / "cache" / "files" / "md5")
        yield VersionStores(get_odb(LocalFileSystem(), cache_path, hash_name="md5"), None, extra)
        return
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        try:
            remote = repo.cloud.get_remote_odb(command="history")
        except NoRemoteError:
            remote = None
        except Exception as exc:  # a remote DVC cannot build (bad URL, missing plugin)
            raise VersioningError(f"the DVC remote is not usable: {exc}") from exc
        extra = tuple(e for e in extra if remote is None or e.path != remote.path)
        yield VersionStores(repo.cache.local, remote, extra)


def _parent_record(stores: VersionStores, md5: str, listing: list[dict[str, Any]]) -> str | None:
    """The parent version that version `md5`'s `version.json` names (None: the first)."""
    entry = next((e for e in listing if e.get("relpath") == PARENT_FILE), None)
    if entry is None:
        return None  # recorded without a parent file: nothing further back is known
    raw = stores.read(str(entry["md5"]))
    if raw is None:
        raise VersioningError(
            f"the parent record ({PARENT_FILE}) of data version {md5} is in neither the "
            f"cache nor the remote {stores.remote_url}"
        )
    parent = json.loads(raw).get("parent_version")
    return normalise_md5(parent) if parent else None


@dataclass(frozen=True)
class MissingParent:
    """A parent version that a version records but neither the cache nor the remote holds."""

    md5: str
    recorded_by: str  # the version whose version.json names it


class VersionHistory(list[str]):
    """Data versions newest first; `missing` marks where the chain ends at an unknown parent.

    A list, so callers that only want the versions that exist iterate it as before.
    """

    missing: MissingParent | None = None


def version_history(root: Path, md5: str, remote_dir: Path | None = None) -> VersionHistory:
    """The chain of data versions from `md5` back to the first (or to a missing parent).

    Reads through DVC's cache and default remote (any remote type); `remote_dir` adds a
    local remote directory. Raises VersioningError only when `md5` itself cannot be found or a
    store cannot be read; a parent nobody holds ends the chain as `history.missing`.
    """
    chain = VersionHistory()
    with open_stores(root, remote_dir) as stores:
        current: str | None = normalise_md5(md5)
        child: str | None = None
        while current and current not in chain:
            listing = stores.listing(current)
            if listing is None:
                if child is None:
                    raise VersioningError(
                        f"data version {current} is in neither the cache nor the remote "
                        f"{stores.remote_url}"
                    )
                chain.missing = MissingParent(current, child)
                log.debug("parent %s of data version %s is missing", current, child)
                break
            chain.append(current)
            child, current = current, _parent_record(stores, current, listing)
    return chain


def known_version(root: Path, md5: str) -> bool:
    """Whether the cache or the remote of `root` holds version `md5` (so it can be a parent).

    An unreachable remote raises VersioningError rather than answering False.
    """
    with open_stores(root) as stores:
        return stores.locate(normalise_md5(md5) + ".dir") is not None
