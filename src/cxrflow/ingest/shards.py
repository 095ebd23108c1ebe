"""Sharded ingestion: split an inbox into shards by keyed file key and ingest one shard.

A shard is ingested by the unchanged `run_ingest` on a private directory that mirrors the
inbox's relative paths with hard links (copies across file systems). Relative paths, hence
file keys and content digests, are the same as in a single-pod run; `merge_shards`
(cxrflow.ingest.merge) rebuilds the single-pod dataset from the shards' outputs.

Nothing a shard writes outside its ingest output names an input path: file keys and ranks only.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from cxrflow.deid import DeidOptions
from cxrflow.ingest import IngestConfig, IngestResult, run_ingest
from cxrflow.ingest.commit import lock_path
from cxrflow.ingest.discover import is_regular_file, list_files
from cxrflow.ingest.run import STATE_FILE, content_digest, file_key
from cxrflow.keys import SecretKey

log = logging.getLogger(__name__)

SHARD_RECORD = "shard.json"
SHARD_INBOX = "inbox"
SHARD_OUTPUT = "out"


@dataclass(frozen=True)
class InboxFile:
    """One input file: its relative path, keyed file key and rank in the sorted inbox listing."""

    rel: str
    file_key: str
    rank: int


def shard_of(fk: str, n_shards: int) -> int:
    """The shard a file key belongs to (independent of every other file in the inbox)."""
    if n_shards < 1:
        raise ValueError(f"n_shards: {n_shards!r} must be >= 1")
    return int(fk, 16) % n_shards


def list_inbox(inbox: Path, key: SecretKey, exclude: Iterable[Path] = ()) -> list[InboxFile]:
    """Every file `run_ingest` would see in `inbox`, in its order, with file keys."""
    paths = list_files(inbox, frozenset(Path(p) for p in exclude))
    return [
        InboxFile(p.relative_to(inbox).as_posix(), file_key(key, inbox, p), rank)
        for rank, p in enumerate(paths)
    ]


def plan_shards(
    inbox: Path, n_shards: int, key: SecretKey, exclude: Iterable[Path] = ()
) -> list[list[str]]:
    """Relative paths of each shard's files (sorted); shard = keyed file key mod `n_shards`."""
    shards: list[list[str]] = [[] for _ in range(n_shards)]
    for f in list_inbox(inbox, key, exclude):
        shards[shard_of(f.file_key, n_shards)].append(f.rel)
    return shards


def read_state(data_dir: Path) -> dict[str, str]:
    """file key -> content digest of the files a dataset already holds (empty when new)."""
    path = data_dir / STATE_FILE
    if not path.is_file():
        return {}
    table = pq.read_table(path, columns=["file_key", "content_digest"])
    return dict(
        zip(table["file_key"].to_pylist(), table["content_digest"].to_pylist(), strict=True)
    )


def is_known(path: Path, fk: str, key: SecretKey, state: Mapping[str, str]) -> bool:
    """True when the dataset holds this file with this content (run_ingest would skip it)."""
    # Never opens an entry that is not a regular file; an unreadable file is not known.
    return fk in state and state[fk] == content_digest(key, path)


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link `src` to `dst`, copy across file systems.

    An entry that is not a regular file (a symlink, FIFO...) is mirrored by a dangling symbolic
    link: the shard's run quarantines it unopened, as a single-pod run does the original.
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not is_regular_file(src):
        os.symlink("not-a-regular-file", dst)
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


@dataclass(frozen=True)
class ShardRecord:
    """What a shard saw: files of the shard, already ingested, and the ranks of those it ran."""

    shard: int
    n_shards: int
    listed: int
    skipped: int
    ranks: dict[str, int]  # file key -> rank in the inbox listing, for the files processed
    key_fingerprint: str
    profile: str

    def write(self, path: Path) -> None:
        """Write as JSON (file keys and counts only, no paths)."""
        path.write_text(json.dumps(self.__dict__, indent=2, sort_keys=True) + "\n")

    @classmethod
    def read(cls, path: Path) -> ShardRecord:
        """Read what `write` wrote."""
        return cls(**json.loads(path.read_text()))


def ingest_shard(
    config: IngestConfig,
    key: SecretKey,
    shard_dir: Path,
    shard: int,
    n_shards: int,
    options: DeidOptions | None = None,
) -> IngestResult:
    """Ingest shard `shard` of the inbox into `shard_dir/out`; the dataset is only read."""
    inbox, data_dir = config.input_dir, config.output_dir
    if shard_dir.exists():
        shutil.rmtree(shard_dir)  # a retried shard starts again from nothing
    exclude = [config.ground_truth] if config.ground_truth else []
    state = read_state(data_dir)
    mine = [f for f in list_inbox(inbox, key, exclude) if shard_of(f.file_key, n_shards) == shard]
    todo = [f for f in mine if not is_known(inbox / f.rel, f.file_key, key, state)]
    for f in list(todo):
        try:
            _link_or_copy(inbox / f.rel, shard_dir / SHARD_INBOX / f.rel)
        except OSError:
            # Vanished or unreadable since the listing: left out of this shard (and its
            # counts) and seen again by the next run. No path in the log.
            log.warning("shard %d: an input file could not be linked; left for the next run", shard)
            todo.remove(f)
            mine.remove(f)
    (shard_dir / SHARD_INBOX).mkdir(parents=True, exist_ok=True)
    shard_config = IngestConfig(
        input_dir=shard_dir / SHARD_INBOX,
        output_dir=shard_dir / SHARD_OUTPUT,
        ground_truth=config.ground_truth,
        max_side=config.max_side,
        png_bits=config.png_bits,
        write_dicom=config.write_dicom,
        workers=config.workers,
        rules=config.rules,
        show_progress=config.show_progress,
    )
    result = run_ingest(shard_config, key, options)
    lock_path(shard_config.output_dir).unlink(missing_ok=True)  # the shard dir is private
    ShardRecord(
        shard=shard,
        n_shards=n_shards,
        listed=len(mine),
        skipped=len(mine) - len(todo),
        ranks={f.file_key: f.rank for f in todo},
        key_fingerprint=result.key_fingerprint,
        profile=result.profile,
    ).write(shard_dir / SHARD_RECORD)
    shutil.rmtree(shard_dir / SHARD_INBOX)
    log.info(
        "shard %d/%d: %d files, %d already ingested, %d processed",
        shard,
        n_shards,
        len(mine),
        len(mine) - len(todo),
        len(todo),
    )
    return result
