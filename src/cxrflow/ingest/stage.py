"""The ingestion + de-identification stage: an inbox of files in, a de-identified dataset out.

Output directory layout:
    images/<subject>/<image>.png     normalised display images
    masks/<subject>/<image>.png      packed bit masks, when a side-car provides them
    dicom/<subject>/<image>.dcm      de-identified DICOM, when asked for
    manifest.parquet                 one row per image (see cxrflow.manifest)
    quarantine.parquet               file key, reason class, reason: never PHI
    audit.parquet                    per file: which attributes were removed/emptied/... (no values)
    ingest_state.parquet             which input files were already processed (keyed digests)
    runs/<run id>.json               counts and settings of each run that changed the dataset

Files are named by keyed pseudonyms only. Input files are identified by a keyed hash of their
relative path (`file_key`), so an operator holding the key can find a quarantined file again
(`cxrflow ingest --locate`), and nobody else can learn a path from the outputs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from cxrflow import __version__
from cxrflow.deid import DeidOptions, load_profile_table
from cxrflow.ingest.config import IngestConfig, IngestResult
from cxrflow.ingest.discover import list_files
from cxrflow.ingest.worker import FileProcessor, Outcome, Task
from cxrflow.keys import SecretKey
from cxrflow.manifest import (
    LABEL_COLUMNS,
    MANIFEST_FILE,
    MANIFEST_SCHEMA,
    empty_manifest,
    read_manifest,
    write_manifest,
)

log = logging.getLogger(__name__)

QUARANTINE_FILE = "quarantine.parquet"
AUDIT_FILE = "audit.parquet"
STATE_FILE = "ingest_state.parquet"
RUNS_DIR = "runs"

_QUARANTINE_SCHEMA = pa.schema(
    [
        ("file_key", pa.string()),
        ("reason_class", pa.string()),
        ("reason", pa.string()),
        ("ingest_run", pa.string()),
    ]
)
_STATE_SCHEMA = pa.schema(
    [
        ("file_key", pa.string()),
        ("content_digest", pa.string()),
        ("status", pa.string()),
        ("image_id", pa.string()),
        ("ingest_run", pa.string()),
    ]
)
_AUDIT_ACTIONS = ("removed", "emptied", "dummied", "uids_replaced", "shifted", "cleaned")
_AUDIT_SCHEMA = pa.schema(
    [("file_key", pa.string()), ("image_id", pa.string()), ("ingest_run", pa.string())]
    + [(a, pa.int32()) for a in _AUDIT_ACTIONS]
    + [(f"{a}_attributes", pa.list_(pa.string())) for a in _AUDIT_ACTIONS]
)

_processor: FileProcessor | None = None


def file_key(key: SecretKey, input_dir: Path, path: Path) -> str:
    """The PHI-free name of an input file: a keyed hash of its path relative to the inbox."""
    return key.pseudonym("file", path.relative_to(input_dir).as_posix(), length=24)


def _init_worker(config: IngestConfig, key_bytes: bytes, options: DeidOptions, run_id: str) -> None:
    global _processor
    _processor = FileProcessor(config, SecretKey(key_bytes), options, run_id)


def _work(task: Task) -> Outcome:
    assert _processor is not None
    return _processor(task)


def _run_tasks(
    tasks: list[Task], config: IngestConfig, key: SecretKey, options: DeidOptions, run_id: str
) -> Iterator[Outcome]:
    if config.workers == 1 or len(tasks) < 2:
        processor = FileProcessor(config, key, options, run_id)
        yield from map(processor, tasks)
        return
    ctx = mp.get_context("fork")
    with ctx.Pool(config.workers, _init_worker, (config, key.value, options, run_id)) as pool:
        yield from pool.imap_unordered(_work, tasks, chunksize=2)


def _read_table(path: Path, schema: pa.Schema) -> pd.DataFrame:
    if path.is_file():
        return pq.read_table(path).to_pandas()
    return schema.empty_table().to_pandas()


def _write_table(df: pd.DataFrame, path: Path, schema: pa.Schema, sort_by: list[str]) -> None:
    df = df.sort_values(sort_by, kind="stable").reset_index(drop=True)
    table = pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False)
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp, compression="zstd")
    tmp.replace(path)


def _remove_stale_parts(output_dir: Path) -> None:
    """A killed run leaves `.part` files; their inputs are not in the state and are redone."""
    for sub in ("images", "masks", "dicom"):
        root = output_dir / sub
        if root.is_dir():
            for part in root.rglob("*.part"):
                part.unlink()


def run_ingest(
    config: IngestConfig, key: SecretKey, options: DeidOptions | None = None
) -> IngestResult:
    """Ingest every new file of `config.input_dir` into `config.output_dir`."""
    options = options or DeidOptions()
    out = config.output_dir
    out.mkdir(parents=True, exist_ok=True)
    _remove_stale_parts(out)
    if config.ground_truth is not None and not config.ground_truth.is_file():
        raise FileNotFoundError(f"ground-truth side-car not found: {config.ground_truth}")

    exclude = frozenset({config.ground_truth}) if config.ground_truth else frozenset()
    paths = list_files(config.input_dir, exclude)
    state = _read_table(out / STATE_FILE, _STATE_SCHEMA)
    known = dict(zip(state["file_key"], state["content_digest"], strict=True))

    tasks: list[Task] = []
    skipped = 0
    for path in paths:
        fk = file_key(key, config.input_dir, path)
        if fk in known and known[fk] == key.digest("content", path.read_bytes()).hex():
            skipped += 1
            continue
        tasks.append(Task(path=path, file_key=fk))
    log.info("found %d files: %d already ingested, %d to process", len(paths), skipped, len(tasks))

    # The run id is a digest of the files it processes: re-running the same inbox gives the
    # same id and byte-identical outputs.
    run_id = (
        "ingest-" + hashlib.sha256("\n".join(t.file_key for t in tasks).encode()).hexdigest()[:16]
    )
    outcomes = list(
        tqdm(
            _run_tasks(tasks, config, key, options, run_id),
            total=len(tasks),
            desc="ingest",
            unit="file",
            disable=not config.show_progress,
        )
    )
    outcomes.sort(key=lambda o: o.file_key)

    manifest = (
        read_manifest(out / MANIFEST_FILE) if (out / MANIFEST_FILE).is_file() else empty_manifest()
    )
    quarantine = _read_table(out / QUARANTINE_FILE, _QUARANTINE_SCHEMA)
    audit = _read_table(out / AUDIT_FILE, _AUDIT_SCHEMA)
    redone = {o.file_key for o in outcomes}
    # A file processed again (its content changed) replaces what it produced before.
    old_images = set(state.loc[state["file_key"].isin(redone), "image_id"].dropna())
    manifest = manifest[~manifest["image_id"].isin(old_images)]
    quarantine = quarantine[~quarantine["file_key"].isin(redone)]
    audit = audit[~audit["file_key"].isin(redone)]
    state = state[~state["file_key"].isin(redone)]

    taken = set(manifest["image_id"])
    rows, audits, quarantined, states = [], [], [], []
    for o in outcomes:
        if o.status == "written" and o.row is not None:
            if o.row["image_id"] in taken:
                o.status, o.reason_class = "quarantined", "duplicate"
                o.reason = "same SOPInstanceUID as an image already in the dataset"
                for tmp, _ in o.staged:
                    Path(tmp).unlink(missing_ok=True)
            else:
                taken.add(o.row["image_id"])
                for tmp, final in o.staged:
                    os.replace(tmp, final)
                o.row["ingest_run"] = run_id
                rows.append(o.row)
                audits.append({**o.audit, "ingest_run": run_id})
        if o.status == "quarantined":
            quarantined.append(
                {
                    "file_key": o.file_key,
                    "reason_class": o.reason_class,
                    "reason": o.reason,
                    "ingest_run": run_id,
                }
            )
        image_id = o.row["image_id"] if o.status == "written" and o.row else None
        states.append(
            {
                "file_key": o.file_key,
                "content_digest": o.content_digest,
                "status": o.status,
                "image_id": image_id,
                "ingest_run": run_id,
            }
        )

    written = len(rows)
    n_quarantined = len(quarantined)
    if tasks:
        new_rows = (
            pd.DataFrame(rows, columns=list(MANIFEST_SCHEMA.names)) if rows else empty_manifest()
        )
        for col in LABEL_COLUMNS:
            new_rows[col] = new_rows[col].astype("Int8")
        manifest = pd.concat([manifest, new_rows], ignore_index=True) if len(manifest) else new_rows
        write_manifest(manifest, out / MANIFEST_FILE)
        _write_table(
            pd.concat([quarantine, pd.DataFrame(quarantined, columns=_QUARANTINE_SCHEMA.names)]),
            out / QUARANTINE_FILE,
            _QUARANTINE_SCHEMA,
            ["file_key"],
        )
        _write_table(
            pd.concat([audit, pd.DataFrame(audits, columns=_AUDIT_SCHEMA.names)]),
            out / AUDIT_FILE,
            _AUDIT_SCHEMA,
            ["file_key"],
        )
        _write_table(
            pd.concat([state, pd.DataFrame(states, columns=_STATE_SCHEMA.names)]),
            out / STATE_FILE,
            _STATE_SCHEMA,
            ["file_key"],
        )
    elif not (out / MANIFEST_FILE).is_file():
        write_manifest(empty_manifest(), out / MANIFEST_FILE)
        for name, schema in (
            (QUARANTINE_FILE, _QUARANTINE_SCHEMA),
            (AUDIT_FILE, _AUDIT_SCHEMA),
            (STATE_FILE, _STATE_SCHEMA),
        ):
            _write_table(schema.empty_table().to_pandas(), out / name, schema, ["file_key"])

    result = IngestResult(
        run_id=run_id,
        found=len(paths),
        written=written,
        skipped_existing=skipped,
        quarantined=n_quarantined,
        output_dir=out,
        manifest_path=out / MANIFEST_FILE,
        quarantine_path=out / QUARANTINE_FILE,
        audit_path=out / AUDIT_FILE,
        key_fingerprint=key.fingerprint(),
        profile=options.describe(),
    )
    reasons = Counter(q["reason_class"] for q in quarantined)
    if tasks:
        _write_run_record(result, config, options, reasons)
    if not result.reconciles:  # pragma: no cover - a bug, not an input problem
        raise RuntimeError(f"counts do not reconcile: {result.to_dict()}")
    log.info(
        "ingest %s: found %d = written %d + already ingested %d + quarantined %d %s",
        run_id,
        result.found,
        written,
        skipped,
        n_quarantined,
        dict(sorted(reasons.items())),
    )
    return result


def _write_run_record(
    result: IngestResult, config: IngestConfig, options: DeidOptions, reasons: Counter[str]
) -> None:
    record: dict[str, Any] = {
        "run_id": result.run_id,
        "cxrflow_version": __version__,
        "found": result.found,
        "written": result.written,
        "skipped_existing": result.skipped_existing,
        "quarantined": result.quarantined,
        "quarantine_reasons": dict(sorted(reasons.items())),
        "deid_profile": result.profile,
        "deid_options": {
            "retain_patient_characteristics": options.retain_patient_characteristics,
            "retain_longitudinal_modified_dates": options.retain_longitudinal_modified_dates,
            "clean_descriptors": options.clean_descriptors,
        },
        "deid_table_rows": len(load_profile_table()),
        "key_fingerprint": result.key_fingerprint,
        "max_side": config.max_side,
        "png_bits": config.png_bits,
        "write_dicom": config.write_dicom,
    }
    runs = config.output_dir / RUNS_DIR
    runs.mkdir(exist_ok=True)
    path = runs / f"{result.run_id}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def locate_files(input_dir: Path, key: SecretKey, keys: set[str]) -> dict[str, Path]:
    """Map file keys (from the quarantine or audit) back to input paths; needs the key."""
    return {fk: p for p in list_files(input_dir) if (fk := file_key(key, input_dir, p)) in keys}
