"""Committing the outcomes of one ingestion run to the dataset directory.

The one place that turns per-file outcomes into the dataset's tables: a single-pod
`run_ingest` and the merge of ingestion shards (cxrflow.ingest.merge) both call
`commit_outcomes`, so that both write byte-identical datasets from the same inbox.

A commit is atomic and resumable, by a roll-forward journal:

1. every new table (manifest, quarantine, audit, ingest state) and the run record is written
   to a temporary file beside its final name and fsync'd; the images of the written files wait
   under temporary `.part` names, fsync'd by whoever staged them;
2. the journal (`_commit.json`: the temporary -> final renames and the images to delete, as
   paths relative to the dataset directory, so no input path) is written, fsync'd and renamed
   into place: its appearance is the commit point;
3. the renames and deletions are done, the directories fsync'd, the journal removed.

Before anything else, every run (and every merge) rolls a journal left behind forward (the
renames are idempotent: a temporary file already renamed is skipped), then removes temporary
files no journal names: those of a run killed before its commit point, whose inputs are not in
the ingest state and are processed again. A re-run after a crash at any point therefore ends
with the bytes a clean run writes.

Why not a generation directory swap (write `gen-N/`, flip a `current` link)? The dataset is
versioned by DVC, which tracks the data directory by its file names, and every later stage
reads `manifest.parquet` and `images/...` at fixed paths: a swap would change the tracked
names (or need a symlink DVC and the readers follow), and would copy or re-link every image of
the dataset on each run. The journal keeps the names and touches only what the run changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock, Timeout

from cxrflow.ingest.worker import Outcome
from cxrflow.manifest import (
    LABEL_COLUMNS,
    MANIFEST_FILE,
    MANIFEST_SCHEMA,
    empty_manifest,
    read_manifest,
    to_table,
)

QUARANTINE_FILE = "quarantine.parquet"
AUDIT_FILE = "audit.parquet"
STATE_FILE = "ingest_state.parquet"
RUNS_DIR = "runs"
JOURNAL_FILE = "_commit.json"
TMP_SUFFIX = ".commit-tmp"  # a table or run record waiting for the commit
PART_SUFFIX = ".part"  # a staged image, mask or DICOM waiting for the commit
OUTPUT_DIRS = ("images", "masks", "dicom")

DUPLICATE_REASON = "same SOPInstanceUID as an image already in the dataset"

QUARANTINE_SCHEMA = pa.schema(
    [
        ("file_key", pa.string()),
        ("reason_class", pa.string()),
        ("reason", pa.string()),
        ("ingest_run", pa.string()),
    ]
)
STATE_SCHEMA = pa.schema(
    [
        ("file_key", pa.string()),
        ("content_digest", pa.string()),
        ("status", pa.string()),
        ("image_id", pa.string()),
        ("ingest_run", pa.string()),
    ]
)
AUDIT_ACTIONS = ("removed", "emptied", "dummied", "uids_replaced", "shifted", "cleaned")
AUDIT_SCHEMA = pa.schema(
    [("file_key", pa.string()), ("image_id", pa.string()), ("ingest_run", pa.string())]
    + [(a, pa.int32()) for a in AUDIT_ACTIONS]
    + [(f"{a}_attributes", pa.list_(pa.string())) for a in AUDIT_ACTIONS]
)


@dataclass(frozen=True)
class CommitCounts:
    """What one commit added: images written, files quarantined, and why they were."""

    written: int
    quarantined: int
    reasons: Counter[str]


def run_id_for(file_keys: Iterable[str]) -> str:
    """The id of a run: a digest of the file keys it processes, in inbox order."""
    # Re-running the same inbox gives the same id, hence byte-identical outputs.
    return "ingest-" + hashlib.sha256("\n".join(file_keys).encode()).hexdigest()[:16]


class IngestLockedError(RuntimeError):
    """Another ingestion (or merge) holds the output directory's lock."""

    def __init__(self, output_dir: Path, holder: str | None) -> None:
        held = f"held by {holder}" if holder else "holder unknown"
        super().__init__(
            f"another ingestion is writing to {output_dir} ({held}); wait for it to finish or "
            "retry with a lock timeout (`--wait SECONDS`)"
        )
        self.output_dir = output_dir
        self.holder = holder


def lock_path(out: Path) -> Path:
    """The lock file of dataset directory `out`: beside it, so that DVC never tracks it."""
    out = Path(os.path.abspath(out))
    return out.parent / f".{out.name}.ingest.lock"


def _holder_path(out: Path) -> Path:
    return lock_path(out).with_name(lock_path(out).name + ".holder")


@contextmanager
def dataset_lock(out: Path, timeout_s: float = 0) -> Iterator[None]:
    """Hold the one-writer lock of dataset directory `out`.

    `timeout_s`: 0 fails at once when another process holds it, > 0 waits up to that many
    seconds, < 0 waits for ever; raises IngestLockedError when it is not acquired.
    """
    lock = FileLock(lock_path(out), timeout=timeout_s)
    holder_file = _holder_path(out)
    try:
        lock.acquire()
    except Timeout:
        try:
            holder: str | None = holder_file.read_text().strip() or None
        except OSError:
            holder = None
        raise IngestLockedError(out, holder) from None
    try:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        holder_file.write_text(f"pid {os.getpid()} on {socket.gethostname()} since {stamp}\n")
        yield
    finally:
        holder_file.unlink(missing_ok=True)
        lock.release()


class CommitError(RuntimeError):
    """A journal left behind cannot be rolled forward (a file it names is gone)."""


def read_table(path: Path, schema: pa.Schema) -> pd.DataFrame:
    """A dataset table as a DataFrame; an empty one with `schema` when the file is missing."""
    if path.is_file():
        return pq.read_table(path).to_pandas()
    return schema.empty_table().to_pandas()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def _sorted_table(df: pd.DataFrame, schema: pa.Schema, sort_by: list[str]) -> pa.Table:
    df = df.sort_values(sort_by, kind="stable").reset_index(drop=True)
    return pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False)


def _write_durable(table: pa.Table, path: Path) -> None:
    """Write `table` as Parquet to `path` and fsync it (the caller renames it into place)."""
    pq.write_table(table, path, compression="zstd")
    _fsync_file(path)


def write_table(df: pd.DataFrame, path: Path, schema: pa.Schema, sort_by: list[str]) -> None:
    """Write `df` sorted by `sort_by` as Parquet with `schema`, atomically."""
    tmp = path.with_name(path.name + TMP_SUFFIX)
    _write_durable(_sorted_table(df, schema, sort_by), tmp)
    os.replace(tmp, path)


def _rel(out: Path, path: str | Path) -> str:
    """`path` relative to the dataset directory (journals name no absolute path)."""
    p = Path(path)
    try:
        return p.relative_to(out).as_posix()
    except ValueError:
        return p.resolve().relative_to(out.resolve()).as_posix()


def _apply(out: Path, journal: Mapping[str, Any]) -> None:
    """Do a journal's renames and deletions; each step may have been done already."""
    dirs = {out}
    for tmp_rel, final_rel in journal["renames"]:
        tmp, final = out / tmp_rel, out / final_rel
        if tmp.exists():
            os.replace(tmp, final)
        elif not final.exists():
            raise CommitError(f"commit journal in {out}: neither {tmp_rel} nor {final_rel} exists")
        dirs.add(final.parent)
    for rel in journal["deletes"]:
        path = out / rel
        path.unlink(missing_ok=True)
        dirs.add(path.parent)
    for d in sorted(dirs):
        if d.is_dir():
            _fsync_dir(d)


def _leftovers(out: Path) -> Iterable[Path]:
    """Temporary files of an uncommitted run (tables, run record, journal, staged outputs)."""
    yield from out.glob(f"*{TMP_SUFFIX}")
    if (out / RUNS_DIR).is_dir():
        yield from (out / RUNS_DIR).glob(f"*{TMP_SUFFIX}")
    for sub in OUTPUT_DIRS:
        if (out / sub).is_dir():
            yield from (out / sub).rglob(f"*{PART_SUFFIX}")


def recover(out: Path) -> bool:
    """Roll a commit journal left in `out` forward, then drop uncommitted temporary files.

    Call it before anything else reads or writes the dataset, holding its lock. Returns True
    when a journal was rolled forward.
    """
    if not out.is_dir():
        return False
    journal = out / JOURNAL_FILE
    rolled = journal.is_file()
    if rolled:
        _apply(out, json.loads(journal.read_text()))
        journal.unlink()
        _fsync_dir(out)
    for path in list(_leftovers(out)):
        path.unlink(missing_ok=True)
    return rolled


def _commit(
    out: Path,
    run_id: str,
    tables: Mapping[str, pa.Table],
    run_record: Mapping[str, Any] | None,
    renames: Sequence[tuple[str, str]],
    deletes: Iterable[str],
) -> None:
    """Write the tables and run record durably, then the journal, then apply it."""
    all_renames = list(renames)
    for name, table in tables.items():
        tmp = out / f"{name}{TMP_SUFFIX}"
        _write_durable(table, tmp)
        all_renames.append((tmp.name, name))
    if run_record is not None:
        runs = out / RUNS_DIR
        runs.mkdir(exist_ok=True)
        final = runs / f"{run_id}.json"
        tmp = runs / f"{final.name}{TMP_SUFFIX}"
        tmp.write_text(json.dumps(run_record, indent=2, sort_keys=True) + "\n")
        _fsync_file(tmp)
        _fsync_dir(runs)
        all_renames.append((f"{RUNS_DIR}/{tmp.name}", f"{RUNS_DIR}/{final.name}"))
    targets = {final for _, final in all_renames}
    journal = {
        "run_id": run_id,
        "renames": [list(r) for r in all_renames],
        "deletes": sorted(set(deletes) - targets),
    }
    tmp = out / f"{JOURNAL_FILE}{TMP_SUFFIX}"
    tmp.write_text(json.dumps(journal, indent=1) + "\n")
    _fsync_file(tmp)
    _fsync_dir(out)
    os.replace(tmp, out / JOURNAL_FILE)  # the commit point
    _fsync_dir(out)
    _apply(out, journal)
    (out / JOURNAL_FILE).unlink()
    _fsync_dir(out)


def _outputs_of(out: Path, rows: pd.DataFrame) -> set[str]:
    """Relative paths of the files that manifest `rows` produced and that exist."""
    paths: set[str] = set()
    for row in rows.to_dict("records"):
        rels = [row["image_path"], f"dicom/{row['subject_id']}/{row['image_id']}.dcm"]
        if isinstance(row.get("mask_path"), str) and row["mask_path"]:
            rels.append(row["mask_path"])
        paths.update(r for r in rels if (out / r).is_file())
    return paths


def commit_outcomes(
    out: Path,
    run_id: str,
    outcomes: Sequence[Outcome],
    place: Callable[[Outcome], Sequence[tuple[str, str]] | None],
    discard: Callable[[Outcome], None],
    record: Mapping[str, Any],
) -> CommitCounts:
    """Add a run's outcomes to the dataset in `out`: files, four tables, and the run record."""
    # Only the caller knows where a file's outputs wait (a worker's temporary files, a shard's
    # output), so it says how to `place` those of a written file (put them under temporary
    # names in `out` and return the (temporary, final) paths; the commit renames them) and
    # `discard` a duplicate's; `record` holds the run's settings and input counts, the counts
    # written here are added. The caller holds the dataset's lock and has called `recover`.
    manifest = (
        read_manifest(out / MANIFEST_FILE) if (out / MANIFEST_FILE).is_file() else empty_manifest()
    )
    quarantine = read_table(out / QUARANTINE_FILE, QUARANTINE_SCHEMA)
    audit = read_table(out / AUDIT_FILE, AUDIT_SCHEMA)
    state = read_table(out / STATE_FILE, STATE_SCHEMA)
    redone = {o.file_key for o in outcomes}
    # A file processed again (its content changed, or it is now refused) replaces what it
    # produced before: its row leaves the manifest and its files the dataset (unless the new
    # outcome writes the same names).
    old_images = set(state.loc[state["file_key"].isin(redone), "image_id"].dropna())
    leaving = manifest["image_id"].isin(old_images)
    old_outputs = _outputs_of(out, manifest[leaving])
    manifest = manifest[~leaving]
    quarantine = quarantine[~quarantine["file_key"].isin(redone)]
    audit = audit[~audit["file_key"].isin(redone)]
    state = state[~state["file_key"].isin(redone)]

    taken = set(manifest["image_id"])
    rows, audits, quarantined, states = [], [], [], []
    renames: list[tuple[str, str]] = []
    # File-key order, not completion order: which of two duplicates wins must not depend on
    # worker scheduling or on how the inbox was sharded.
    for o in sorted(outcomes, key=lambda o: o.file_key):
        status, reason_class, reason = o.status, o.reason_class, o.reason
        image_id = None
        if status == "written" and o.row is not None:
            if o.row["image_id"] in taken:
                status, reason_class, reason = "quarantined", "duplicate", DUPLICATE_REASON
                discard(o)
            else:
                image_id = o.row["image_id"]
                taken.add(image_id)
                renames.extend((_rel(out, t), _rel(out, f)) for t, f in place(o) or ())
                rows.append({**o.row, "ingest_run": run_id})
                audits.append({**o.audit, "ingest_run": run_id})
        if status == "quarantined":
            quarantined.append(
                {
                    "file_key": o.file_key,
                    "reason_class": reason_class,
                    "reason": reason,
                    "ingest_run": run_id,
                }
            )
        states.append(
            {
                "file_key": o.file_key,
                "content_digest": o.content_digest,
                "status": status,
                "image_id": image_id,
                "ingest_run": run_id,
            }
        )

    counts = CommitCounts(
        written=len(rows),
        quarantined=len(quarantined),
        reasons=Counter(q["reason_class"] for q in quarantined),
    )
    if outcomes:
        new_rows = (
            pd.DataFrame(rows, columns=list(MANIFEST_SCHEMA.names)) if rows else empty_manifest()
        )
        for col in LABEL_COLUMNS:
            new_rows[col] = new_rows[col].astype("Int8")
        manifest = pd.concat([manifest, new_rows], ignore_index=True) if len(manifest) else new_rows
        manifest = manifest.sort_values("image_id", kind="stable").reset_index(drop=True)
        tables = {MANIFEST_FILE: to_table(manifest)}
        for name, old, new, schema in (
            (QUARANTINE_FILE, quarantine, quarantined, QUARANTINE_SCHEMA),
            (AUDIT_FILE, audit, audits, AUDIT_SCHEMA),
            (STATE_FILE, state, states, STATE_SCHEMA),
        ):
            combined = pd.concat([old, pd.DataFrame(new, columns=schema.names)])
            tables[name] = _sorted_table(combined, schema, ["file_key"])
        run_record = {
            **record,
            "run_id": run_id,
            "written": counts.written,
            "quarantined": counts.quarantined,
            "quarantine_reasons": dict(sorted(counts.reasons.items())),
        }
        _commit(out, run_id, tables, run_record, renames, old_outputs)
    elif not (out / MANIFEST_FILE).is_file():
        # A first run that found nothing new still leaves a readable (empty) dataset.
        tables = {MANIFEST_FILE: to_table(empty_manifest())}
        for name, schema in (
            (QUARANTINE_FILE, QUARANTINE_SCHEMA),
            (AUDIT_FILE, AUDIT_SCHEMA),
            (STATE_FILE, STATE_SCHEMA),
        ):
            tables[name] = _sorted_table(schema.empty_table().to_pandas(), schema, ["file_key"])
        _commit(out, run_id, tables, None, [], [])
    return counts
