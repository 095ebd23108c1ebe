"""Restoring a data version: validate first, materialise beside, verify, then swap atomically.

`dvc checkout`/`dvc pull` edit the data directory in place: with an unknown md5 in the `.dvc`
file they remove the directory and then fail. Here nothing is touched until the version is
known, fetched into the cache and written out and verified in a temporary directory on the same
filesystem; the swap is two renames, undone on any failure.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import yaml

from cxrflow.versioning.dvc import DataVersion, VersioningError, dvc_file_for, read_version
from cxrflow.versioning.history import VersionStores, open_stores

log = logging.getLogger(__name__)

MIN_PREFIX = 7  # like git's short hashes: shorter prefixes collide too easily
_HEX = re.compile(r"[0-9a-f]+")


def resolve_version(stores: VersionStores, version: str) -> str:
    """The full md5 of `version` (32 hex digits, optional `.dir`, or a unique prefix >= 7)."""
    text = version.strip().lower().removesuffix(".dir")
    if not _HEX.fullmatch(text) or not MIN_PREFIX <= len(text) <= 32:
        raise VersioningError(
            f"{version!r} is not a data version: expected the DVC md5 of the data directory "
            f"(32 hex digits, or a unique prefix of at least {MIN_PREFIX})"
        )
    if len(text) == 32:
        if stores.locate(text + ".dir") is None:
            raise VersioningError(
                f"data version {text} is in neither the DVC cache nor the remote "
                f"{stores.remote_url}"
            )
        return text
    candidates = stores.versions_with_prefix(text)
    if not candidates:
        raise VersioningError(
            f"no data version starts with {text} in the DVC cache or the remote {stores.remote_url}"
        )
    if len(candidates) > 1:
        raise VersioningError(f"{text} is ambiguous: {', '.join(candidates)}")
    return candidates[0]


def _fetch(stores: VersionStores, md5: str, listing: list[dict[str, Any]]) -> None:
    """Copy the listing and every file object of version `md5` into the local cache."""
    from dvc_data.hashfile.hash_info import HashInfo
    from dvc_data.hashfile.transfer import transfer

    wanted = [HashInfo("md5", md5 + ".dir"), *(HashInfo("md5", str(e["md5"])) for e in listing)]
    missing = [h for h in wanted if not stores.cache.exists(h.value)]
    if not missing:
        return
    if stores.remote is None:
        raise VersioningError(f"data version {md5} is incomplete in the cache and no remote is set")
    # dvc_data's `transfer` is what `dvc fetch` runs underneath, but `dvc fetch` only takes
    # `.dvc` targets: it would need the `.dvc` file edited first, which is exactly the state a
    # failed fetch must never leave behind. Naming the objects keeps the `.dvc` file untouched.
    try:
        result = transfer(stores.remote, stores.cache, missing, verify=True)
    except Exception as exc:
        raise VersioningError(f"cannot fetch data version {md5}: {exc}") from exc
    # `transfer` reports objects the remote lacks as neither sent nor failed: check the cache.
    lost = [h.value for h in missing if not stores.cache.exists(h.value)]
    if result.failed or lost:
        raise VersioningError(
            f"cannot fetch data version {md5}: {len(lost)} of its objects are missing from "
            f"the remote {stores.remote_url}"
        )


def _materialise(stores: VersionStores, md5: str, target: Path) -> None:
    """Write version `md5` from the cache into the new directory `target`."""
    from dvc.fs import LocalFileSystem
    from dvc_data.hashfile.checkout import checkout
    from dvc_data.hashfile.hash_info import HashInfo
    from dvc_data.hashfile.tree import Tree

    # dvc-data's `checkout` of a Tree is DVC's own way of writing a version out (link types,
    # executable bits); pointed at a fresh path it only ever creates files there.
    try:
        tree = Tree.load(stores.cache, HashInfo("md5", md5 + ".dir"))
        checkout(str(target), LocalFileSystem(), tree, stores.cache)
    except Exception as exc:
        raise VersioningError(f"cannot write data version {md5}: {exc}") from exc


def _file_md5(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, lambda: hashlib.md5(usedforsecurity=False)).hexdigest()


def _verify(target: Path, md5: str, listing: list[dict[str, Any]]) -> int:
    """Check that `target` holds exactly the listing's files and contents; return its size."""
    on_disk = {p.relative_to(target).as_posix(): p for p in target.rglob("*") if p.is_file()}
    expected = {str(e["relpath"]): str(e["md5"]) for e in listing}
    if set(on_disk) != set(expected):
        raise VersioningError(
            f"data version {md5} was written with {len(on_disk)} files, its listing has "
            f"{len(expected)}"
        )
    bad = sorted(rel for rel, p in on_disk.items() if _file_md5(p) != expected[rel])
    if bad:
        raise VersioningError(f"data version {md5}: content differs from its listing ({bad[0]})")
    return sum(p.stat().st_size for p in on_disk.values())


def _unrecorded_files(stores: VersionStores, data_dir: Path) -> list[str]:
    """Files of `data_dir` whose content no store holds: a checkout would lose them."""
    if not data_dir.is_dir():
        return []
    hashes = {
        p.relative_to(data_dir).as_posix(): _file_md5(p) for p in data_dir.rglob("*") if p.is_file()
    }
    return sorted(rel for rel, h in hashes.items() if stores.locate(h) is None)


def _dvc_text(dvc_file: Path, data_dir: Path, md5: str, nfiles: int, size: int) -> str:
    """The `.dvc` file pointing at version `md5` (other keys of an existing one kept)."""
    doc = yaml.safe_load(dvc_file.read_text()) if dvc_file.is_file() else None
    if not doc or not doc.get("outs"):
        doc = {"outs": [{"path": data_dir.name}]}
    out = doc["outs"][0]
    out.update({"md5": f"{md5}.dir", "size": size, "nfiles": nfiles, "hash": "md5"})
    order = ("md5", "size", "nfiles", "hash", "path")  # DVC's own key order
    doc["outs"][0] = {**{k: out[k] for k in order if k in out}, **out}
    return yaml.safe_dump(doc, sort_keys=False)


def _write_atomic(path: Path, text: str) -> None:
    """Replace `path` by `text` in one rename: readers see the old file or the new one."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _swap(data_dir: Path, staged: Path, dvc_file: Path, dvc_text: str) -> None:
    """Put `staged` in place of `data_dir` and `dvc_text` in `dvc_file`, or change nothing."""
    old_dvc = dvc_file.read_bytes() if dvc_file.is_file() else None
    aside = data_dir.with_name(f".{data_dir.name}.previous-{uuid.uuid4().hex[:8]}")
    moved_aside = swapped = False
    try:
        if data_dir.exists():
            data_dir.rename(aside)
            moved_aside = True
        staged.rename(data_dir)
        swapped = True
        _write_atomic(dvc_file, dvc_text)
    except BaseException:
        if swapped:
            data_dir.rename(staged)
        if moved_aside:
            aside.rename(data_dir)
        if old_dvc is None:
            dvc_file.unlink(missing_ok=True)
        else:
            dvc_file.write_bytes(old_dvc)
        raise
    if moved_aside:
        shutil.rmtree(aside)  # only now: the new version is in place and recorded


def checkout_version(root: Path, md5: str, data_dir: Path, *, force: bool = False) -> DataVersion:
    """Restore `data_dir` to data version `md5`; on any failure nothing has changed.

    Refuses (unless `force`) when `data_dir` holds files no version recorded: a checkout would
    otherwise delete data that exists nowhere else.
    """
    from cxrflow.ingest.commit import IngestLockedError, dataset_lock

    logging.getLogger("dvc").setLevel(logging.WARNING)
    logging.getLogger("dvc_data").setLevel(logging.WARNING)
    root = Path(root).resolve()
    data_dir = data_dir if data_dir.is_absolute() else root / data_dir
    dvc_file = dvc_file_for(root, data_dir)
    with open_stores(root) as stores:
        target = resolve_version(stores, md5)
        raw = stores.read(target + ".dir")
        if raw is None or hashlib.md5(raw, usedforsecurity=False).hexdigest() != target:
            raise VersioningError(f"the listing of data version {target} is corrupt")
        listing = stores.listing(target) or []
        try:
            with dataset_lock(data_dir):  # no ingestion may write while the directory moves
                if not force and (lost := _unrecorded_files(stores, data_dir)):
                    raise VersioningError(
                        f"{data_dir} holds {len(lost)} files recorded in no data version "
                        f"(e.g. {lost[0]}): record them first, or check out with --force"
                    )
                _fetch(stores, target, listing)
                staged = data_dir.with_name(f".{data_dir.name}.checkout-{uuid.uuid4().hex[:8]}")
                try:
                    _materialise(stores, target, staged)
                    size = _verify(staged, target, listing)
                    text = _dvc_text(dvc_file, data_dir, target, len(listing), size)
                    _swap(data_dir, staged, dvc_file, text)
                finally:
                    if staged.exists():
                        shutil.rmtree(staged)
        except IngestLockedError as exc:
            raise VersioningError(str(exc)) from exc
        url = stores.remote_url
    version = read_version(dvc_file, remote=url)
    log.debug("%s is now at data version %s (%d files)", data_dir, version.short, version.files)
    return version
