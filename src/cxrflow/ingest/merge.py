"""Merging the outputs of ingestion shards into one dataset, as a single-pod run would have.

The merge rebuilds each processed file's outcome from the shard that processed it and commits
them with the same `commit_outcomes` as `run_ingest` (cxrflow.ingest.commit), under the run id
of the processed file keys in inbox order, so that the merged dataset is byte-identical to the
one a single pod writes from the same inbox. Like a run, the merge holds the dataset's lock and
first rolls forward a commit a killed run or merge left behind (cxrflow.ingest.commit).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from cxrflow.ingest import IngestResult
from cxrflow.ingest.commit import (
    AUDIT_FILE,
    AUDIT_SCHEMA,
    QUARANTINE_FILE,
    QUARANTINE_SCHEMA,
    RUNS_DIR,
    STATE_FILE,
    STATE_SCHEMA,
    commit_outcomes,
    dataset_lock,
    read_table,
    recover,
    run_id_for,
)
from cxrflow.ingest.shards import SHARD_OUTPUT, SHARD_RECORD, ShardRecord
from cxrflow.ingest.worker import Outcome
from cxrflow.manifest import MANIFEST_FILE, read_manifest

log = logging.getLogger(__name__)


class MergeError(RuntimeError):
    """The shard outputs do not form one consistent ingestion run (reason in the message)."""


def _records(shard_dirs: Sequence[Path]) -> list[ShardRecord]:
    """Read and cross-check the shard records."""
    records = [ShardRecord.read(Path(d) / SHARD_RECORD) for d in shard_dirs]
    if not records:
        raise MergeError("no shard outputs to merge")
    if len({r.n_shards for r in records}) != 1:
        raise MergeError("the shards were planned with different shard counts")
    if len({r.shard for r in records}) != len(records):
        raise MergeError("a shard appears twice")
    if len({r.key_fingerprint for r in records}) != 1:
        raise MergeError("the shards were ingested with different de-identification keys")
    return records


def _rows(df: pd.DataFrame, by: str) -> dict[str, dict[str, Any]]:
    """Rows as plain Python records keyed by column `by` (as run_ingest builds them)."""
    return {rec[by]: {k: _plain(v) for k, v in rec.items()} for rec in df.to_dict("records")}


def _plain(value: Any) -> Any:
    """A Python value: arrays to lists, missing values (NaN, NA) to None."""
    if hasattr(value, "tolist"):
        return list(value.tolist()) if getattr(value, "ndim", 0) else value.tolist()
    return None if value is None or (not isinstance(value, list) and pd.isna(value)) else value


def _place(src: Path, final: Path, tag: str) -> tuple[str, str]:
    """Stage `src` beside `final` (hard link when possible, else a copy, fsync'd)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f"{final.name}.{tag}.part")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
    return str(tmp), str(final)


def _outputs_of(row: dict[str, Any]) -> list[str]:
    """Relative paths of the files one manifest row's image produced."""
    rels = [row["image_path"]]
    if row.get("mask_path"):
        rels.append(row["mask_path"])
    rels.append(f"dicom/{row['subject_id']}/{row['image_id']}.dcm")
    return rels


def _place_outputs(outcome: Outcome) -> list[tuple[str, str]]:
    """Stage a written file's outputs from its shard in the dataset; the commit renames them."""
    return [_place(Path(src), Path(final), outcome.file_key) for src, final in outcome.staged]


def _leave_outputs(outcome: Outcome) -> None:
    """Leave a duplicate's outputs in its shard: they are never placed, so none to delete."""


def _run_settings(shard_dirs: Sequence[Path]) -> dict[str, Any]:
    """The settings of a shard's run record (empty when no shard processed a file)."""
    # Every shard ran with the same settings; commit_outcomes only writes a record when some
    # file was processed, and then the shard that processed it wrote one.
    for d in shard_dirs:
        for path in sorted((Path(d) / SHARD_OUTPUT / RUNS_DIR).glob("*.json")):
            return dict(json.loads(path.read_text()))
    return {}


def merge_shards(
    shard_dirs: Sequence[Path], output_dir: Path, *, lock_timeout_s: float = 0
) -> IngestResult:
    """Merge the shards' ingest outputs into the dataset `output_dir` (created when missing).

    Holds the dataset's lock like `run_ingest` (`lock_timeout_s`: 0 fail at once, > 0 wait up
    to that long, < 0 wait for ever; IngestLockedError when not acquired).
    """
    records = _records(shard_dirs)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    with dataset_lock(out, lock_timeout_s):
        recover(out)
        return _merge(shard_dirs, records, out)


def _merge(shard_dirs: Sequence[Path], records: list[ShardRecord], out: Path) -> IngestResult:
    ranks = {fk: rank for r in records for fk, rank in r.ranks.items()}
    run_id = run_id_for(sorted(ranks, key=lambda fk: (ranks[fk], fk)))

    # Every processed file's outcome, from the shard that processed it.
    outcomes: list[Outcome] = []
    for d in shard_dirs:
        so = Path(d) / SHARD_OUTPUT
        state = read_table(so / STATE_FILE, STATE_SCHEMA)
        manifest: dict[str, dict[str, Any]] = {}
        if (so / MANIFEST_FILE).is_file():
            manifest = _rows(read_manifest(so / MANIFEST_FILE), "image_id")
        audit = _rows(read_table(so / AUDIT_FILE, AUDIT_SCHEMA), "file_key")
        quarantine = _rows(read_table(so / QUARANTINE_FILE, QUARANTINE_SCHEMA), "file_key")
        for rec in state.to_dict("records"):
            fk, digest = rec["file_key"], rec["content_digest"]
            if rec["status"] == "written":
                row = manifest[rec["image_id"]]
                # Shard file -> dataset path, for the outputs this shard wrote (masks and
                # DICOM are optional).
                staged = [
                    (str(so / rel), str(out / rel))
                    for rel in _outputs_of(row)
                    if (so / rel).is_file()
                ]
                outcomes.append(
                    Outcome(fk, digest, "written", row=row, audit=audit[fk], staged=staged)
                )
            else:
                q = quarantine[fk]
                outcomes.append(Outcome(fk, digest, rec["status"], q["reason_class"], q["reason"]))
    if sorted(ranks) != sorted(o.file_key for o in outcomes):
        raise MergeError("the shard records and the shard outputs name different files")

    found = sum(r.listed for r in records)
    skipped = sum(r.skipped for r in records)
    counts = commit_outcomes(
        out,
        run_id,
        outcomes,
        place=_place_outputs,
        discard=_leave_outputs,
        record={**_run_settings(shard_dirs), "found": found, "skipped_existing": skipped},
    )
    result = IngestResult(
        run_id=run_id,
        found=found,
        written=counts.written,
        skipped_existing=skipped,
        quarantined=counts.quarantined,
        output_dir=out,
        manifest_path=out / MANIFEST_FILE,
        quarantine_path=out / QUARANTINE_FILE,
        audit_path=out / AUDIT_FILE,
        key_fingerprint=records[0].key_fingerprint,
        profile=records[0].profile,
    )
    if not result.reconciles:
        raise MergeError(f"counts do not reconcile: {result.to_dict()}")
    log.info(
        "merged %d shards into %s: run %s, written %d, already ingested %d, quarantined %d",
        len(records),
        out,
        run_id,
        result.written,
        result.skipped_existing,
        result.quarantined,
    )
    return result
