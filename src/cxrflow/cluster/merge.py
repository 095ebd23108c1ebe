"""Merging the outputs of ingestion shards into one dataset, as a single-pod run would have.

The merge replays the bookkeeping of `run_ingest` (cxrflow.ingest.stage) on the shards'
outcomes: one run id (a digest of the processed file keys in inbox order), outcomes in file-key
order, duplicates of an image already in the dataset quarantined, files whose content changed
replacing what they produced before, and the same table writers, so that the merged dataset
is byte-identical to the one a single pod writes from the same inbox.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from cxrflow.cluster.shards import SHARD_OUTPUT, SHARD_RECORD, ShardRecord
from cxrflow.ingest import IngestResult
from cxrflow.ingest.stage import (
    _AUDIT_SCHEMA,
    _QUARANTINE_SCHEMA,
    _STATE_SCHEMA,
    AUDIT_FILE,
    QUARANTINE_FILE,
    RUNS_DIR,
    STATE_FILE,
    _read_table,
    _write_table,
)
from cxrflow.manifest import (
    LABEL_COLUMNS,
    MANIFEST_FILE,
    MANIFEST_SCHEMA,
    empty_manifest,
    read_manifest,
    write_manifest,
)

log = logging.getLogger(__name__)

DUPLICATE_REASON = "same SOPInstanceUID as an image already in the dataset"


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


def _place(src: Path, final: Path, tag: str) -> None:
    """Put `src` at `final` atomically (hard link when possible, else copy)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f"{final.name}.{tag}.part")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, final)


def _outputs_of(row: dict[str, Any]) -> list[str]:
    """Relative paths of the files one manifest row's image produced."""
    rels = [row["image_path"]]
    if row.get("mask_path"):
        rels.append(row["mask_path"])
    rels.append(f"dicom/{row['subject_id']}/{row['image_id']}.dcm")
    return rels


def merge_shards(shard_dirs: Sequence[Path], output_dir: Path) -> IngestResult:
    """Merge the shards' ingest outputs into the dataset `output_dir` (created when missing)."""
    records = _records(shard_dirs)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    ranks = {fk: rank for r in records for fk, rank in r.ranks.items()}
    order = sorted(ranks, key=lambda fk: (ranks[fk], fk))
    run_id = "ingest-" + hashlib.sha256("\n".join(order).encode()).hexdigest()[:16]

    # Every processed file's outcome, from the shard that processed it, in file-key order.
    outcomes: list[tuple[str, Path, dict[str, Any]]] = []
    shard_manifest: dict[str, dict[str, Any]] = {}
    shard_audit: dict[str, dict[str, Any]] = {}
    shard_quarantine: dict[str, dict[str, Any]] = {}
    for d in shard_dirs:
        so = Path(d) / SHARD_OUTPUT
        state = _read_table(so / STATE_FILE, _STATE_SCHEMA)
        outcomes += [(rec["file_key"], so, rec) for rec in state.to_dict("records")]
        if (so / MANIFEST_FILE).is_file():
            manifest_rows = _rows(read_manifest(so / MANIFEST_FILE), "image_id")
            by_fk = state.dropna(subset=["image_id"]).set_index("image_id")["file_key"]
            shard_manifest.update({by_fk[i]: row for i, row in manifest_rows.items()})
        shard_audit.update(_rows(_read_table(so / AUDIT_FILE, _AUDIT_SCHEMA), "file_key"))
        shard_quarantine.update(
            _rows(_read_table(so / QUARANTINE_FILE, _QUARANTINE_SCHEMA), "file_key")
        )
    outcomes.sort(key=lambda o: o[0])
    if sorted(ranks) != [o[0] for o in outcomes]:
        raise MergeError("the shard records and the shard outputs name different files")

    manifest = (
        read_manifest(out / MANIFEST_FILE) if (out / MANIFEST_FILE).is_file() else empty_manifest()
    )
    quarantine = _read_table(out / QUARANTINE_FILE, _QUARANTINE_SCHEMA)
    audit = _read_table(out / AUDIT_FILE, _AUDIT_SCHEMA)
    state = _read_table(out / STATE_FILE, _STATE_SCHEMA)
    redone = set(ranks)
    old_images = set(state.loc[state["file_key"].isin(redone), "image_id"].dropna())
    manifest = manifest[~manifest["image_id"].isin(old_images)]
    quarantine = quarantine[~quarantine["file_key"].isin(redone)]
    audit = audit[~audit["file_key"].isin(redone)]
    state = state[~state["file_key"].isin(redone)]

    taken = set(manifest["image_id"])
    rows, audits, quarantined, states = [], [], [], []
    for fk, so, rec in outcomes:
        status, image_id = rec["status"], None
        if status == "written":
            row = dict(shard_manifest[fk])
            if row["image_id"] in taken:
                status = "quarantined"
                quarantined.append(
                    {
                        "file_key": fk,
                        "reason_class": "duplicate",
                        "reason": DUPLICATE_REASON,
                        "ingest_run": run_id,
                    }
                )
            else:
                taken.add(row["image_id"])
                image_id = row["image_id"]
                for rel in _outputs_of(row):
                    if (so / rel).is_file():
                        _place(so / rel, out / rel, fk)
                rows.append({**row, "ingest_run": run_id})
                audits.append({**shard_audit[fk], "ingest_run": run_id})
        else:
            q = shard_quarantine[fk]
            quarantined.append(
                {
                    "file_key": fk,
                    "reason_class": q["reason_class"],
                    "reason": q["reason"],
                    "ingest_run": run_id,
                }
            )
        states.append(
            {
                "file_key": fk,
                "content_digest": rec["content_digest"],
                "status": status,
                "image_id": image_id,
                "ingest_run": run_id,
            }
        )

    _write_tables(
        out, bool(outcomes), manifest, quarantine, audit, state, rows, quarantined, audits, states
    )
    result = IngestResult(
        run_id=run_id,
        found=sum(r.listed for r in records),
        written=len(rows),
        skipped_existing=sum(r.skipped for r in records),
        quarantined=len(quarantined),
        output_dir=out,
        manifest_path=out / MANIFEST_FILE,
        quarantine_path=out / QUARANTINE_FILE,
        audit_path=out / AUDIT_FILE,
        key_fingerprint=records[0].key_fingerprint,
        profile=records[0].profile,
    )
    if outcomes:
        _write_run_record(result, shard_dirs, Counter(q["reason_class"] for q in quarantined))
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


def _write_tables(
    out: Path,
    changed: bool,
    manifest: pd.DataFrame,
    quarantine: pd.DataFrame,
    audit: pd.DataFrame,
    state: pd.DataFrame,
    rows: list[dict[str, Any]],
    quarantined: list[dict[str, Any]],
    audits: list[dict[str, Any]],
    states: list[dict[str, Any]],
) -> None:
    """Write the four tables exactly as run_ingest does."""
    if changed:
        new_rows = (
            pd.DataFrame(rows, columns=list(MANIFEST_SCHEMA.names)) if rows else empty_manifest()
        )
        for col in LABEL_COLUMNS:
            new_rows[col] = new_rows[col].astype("Int8")
        manifest = pd.concat([manifest, new_rows], ignore_index=True) if len(manifest) else new_rows
        write_manifest(manifest, out / MANIFEST_FILE)
        for name, old, new, schema in (
            (QUARANTINE_FILE, quarantine, quarantined, _QUARANTINE_SCHEMA),
            (AUDIT_FILE, audit, audits, _AUDIT_SCHEMA),
            (STATE_FILE, state, states, _STATE_SCHEMA),
        ):
            combined = pd.concat([old, pd.DataFrame(new, columns=schema.names)])
            _write_table(combined, out / name, schema, ["file_key"])
    elif not (out / MANIFEST_FILE).is_file():
        write_manifest(empty_manifest(), out / MANIFEST_FILE)
        for name, schema in (
            (QUARANTINE_FILE, _QUARANTINE_SCHEMA),
            (AUDIT_FILE, _AUDIT_SCHEMA),
            (STATE_FILE, _STATE_SCHEMA),
        ):
            _write_table(schema.empty_table().to_pandas(), out / name, schema, ["file_key"])


def _write_run_record(
    result: IngestResult, shard_dirs: Sequence[Path], reasons: Counter[str]
) -> None:
    """runs/<run id>.json: a shard's record (settings) with the merged run's id and counts."""
    template = next(
        p for d in shard_dirs for p in sorted((Path(d) / SHARD_OUTPUT / RUNS_DIR).glob("*.json"))
    )
    record = json.loads(template.read_text())
    record.update(
        run_id=result.run_id,
        found=result.found,
        written=result.written,
        skipped_existing=result.skipped_existing,
        quarantined=result.quarantined,
        quarantine_reasons=dict(sorted(reasons.items())),
    )
    runs = result.output_dir / RUNS_DIR
    runs.mkdir(exist_ok=True)
    path = runs / f"{result.run_id}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
