"""Committing the outcomes of one ingestion run to the dataset directory.

The one place that turns per-file outcomes into the dataset's tables: a single-pod
`run_ingest` and the merge of ingestion shards (cxrflow.ingest.merge) both call
`commit_outcomes`, so that both write byte-identical datasets from the same inbox.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cxrflow.ingest.worker import Outcome
from cxrflow.manifest import (
    LABEL_COLUMNS,
    MANIFEST_FILE,
    MANIFEST_SCHEMA,
    empty_manifest,
    read_manifest,
    write_manifest,
)

QUARANTINE_FILE = "quarantine.parquet"
AUDIT_FILE = "audit.parquet"
STATE_FILE = "ingest_state.parquet"
RUNS_DIR = "runs"

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


def read_table(path: Path, schema: pa.Schema) -> pd.DataFrame:
    """A dataset table as a DataFrame; an empty one with `schema` when the file is missing."""
    if path.is_file():
        return pq.read_table(path).to_pandas()
    return schema.empty_table().to_pandas()


def write_table(df: pd.DataFrame, path: Path, schema: pa.Schema, sort_by: list[str]) -> None:
    """Write `df` sorted by `sort_by` as Parquet with `schema`, atomically."""
    df = df.sort_values(sort_by, kind="stable").reset_index(drop=True)
    table = pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False)
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp, compression="zstd")
    tmp.replace(path)


def _write_run_record(out: Path, record: Mapping[str, Any]) -> None:
    """Write runs/<run id>.json atomically."""
    runs = out / RUNS_DIR
    runs.mkdir(exist_ok=True)
    path = runs / f"{record['run_id']}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def commit_outcomes(
    out: Path,
    run_id: str,
    outcomes: Sequence[Outcome],
    place: Callable[[Outcome], None],
    discard: Callable[[Outcome], None],
    record: Mapping[str, Any],
) -> CommitCounts:
    """Add a run's outcomes to the dataset in `out`: files, four tables, and the run record."""
    # Only the caller knows where a file's outputs wait (a worker's temporary files, a shard's
    # output), so it says how to `place` those of a written file and `discard` a duplicate's;
    # `record` holds the run's settings and input counts, the counts written here are added.
    manifest = (
        read_manifest(out / MANIFEST_FILE) if (out / MANIFEST_FILE).is_file() else empty_manifest()
    )
    quarantine = read_table(out / QUARANTINE_FILE, QUARANTINE_SCHEMA)
    audit = read_table(out / AUDIT_FILE, AUDIT_SCHEMA)
    state = read_table(out / STATE_FILE, STATE_SCHEMA)
    redone = {o.file_key for o in outcomes}
    # A file processed again (its content changed) replaces what it produced before.
    old_images = set(state.loc[state["file_key"].isin(redone), "image_id"].dropna())
    manifest = manifest[~manifest["image_id"].isin(old_images)]
    quarantine = quarantine[~quarantine["file_key"].isin(redone)]
    audit = audit[~audit["file_key"].isin(redone)]
    state = state[~state["file_key"].isin(redone)]

    taken = set(manifest["image_id"])
    rows, audits, quarantined, states = [], [], [], []
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
                place(o)
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
        write_manifest(manifest, out / MANIFEST_FILE)
        for name, old, new, schema in (
            (QUARANTINE_FILE, quarantine, quarantined, QUARANTINE_SCHEMA),
            (AUDIT_FILE, audit, audits, AUDIT_SCHEMA),
            (STATE_FILE, state, states, STATE_SCHEMA),
        ):
            combined = pd.concat([old, pd.DataFrame(new, columns=schema.names)])
            write_table(combined, out / name, schema, ["file_key"])
        _write_run_record(
            out,
            {
                **record,
                "run_id": run_id,
                "written": counts.written,
                "quarantined": counts.quarantined,
                "quarantine_reasons": dict(sorted(counts.reasons.items())),
            },
        )
    elif not (out / MANIFEST_FILE).is_file():
        # A first run that found nothing new still leaves a readable (empty) dataset.
        write_manifest(empty_manifest(), out / MANIFEST_FILE)
        for name, schema in (
            (QUARANTINE_FILE, QUARANTINE_SCHEMA),
            (AUDIT_FILE, AUDIT_SCHEMA),
            (STATE_FILE, STATE_SCHEMA),
        ):
            write_table(schema.empty_table().to_pandas(), out / name, schema, ["file_key"])
    return counts
