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

import logging
import multiprocessing as mp
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm

from cxrflow import __version__
from cxrflow.deid import DeidOptions, load_profile_table
from cxrflow.ingest.commit import (
    AUDIT_FILE,
    QUARANTINE_FILE,
    STATE_FILE,
    STATE_SCHEMA,
    commit_outcomes,
    read_table,
    run_id_for,
)
from cxrflow.ingest.config import IngestConfig, IngestResult
from cxrflow.ingest.discover import list_files
from cxrflow.ingest.worker import FileProcessor, Outcome, Task
from cxrflow.keys import SecretKey
from cxrflow.manifest import MANIFEST_FILE

log = logging.getLogger(__name__)

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
    state = read_table(out / STATE_FILE, STATE_SCHEMA)
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

    run_id = run_id_for(t.file_key for t in tasks)
    outcomes = list(
        tqdm(
            _run_tasks(tasks, config, key, options, run_id),
            total=len(tasks),
            desc="ingest",
            unit="file",
            disable=not config.show_progress,
        )
    )
    counts = commit_outcomes(
        out,
        run_id,
        outcomes,
        place=_place_staged,
        discard=_discard_staged,
        record=_run_settings(config, key, options, found=len(paths), skipped=skipped),
    )
    result = IngestResult(
        run_id=run_id,
        found=len(paths),
        written=counts.written,
        skipped_existing=skipped,
        quarantined=counts.quarantined,
        output_dir=out,
        manifest_path=out / MANIFEST_FILE,
        quarantine_path=out / QUARANTINE_FILE,
        audit_path=out / AUDIT_FILE,
        key_fingerprint=key.fingerprint(),
        profile=options.describe(),
    )
    if not result.reconciles:  # pragma: no cover - a bug, not an input problem
        raise RuntimeError(f"counts do not reconcile: {result.to_dict()}")
    log.info(
        "ingest %s: found %d = written %d + already ingested %d + quarantined %d %s",
        run_id,
        result.found,
        counts.written,
        skipped,
        counts.quarantined,
        dict(sorted(counts.reasons.items())),
    )
    return result


def _place_staged(outcome: Outcome) -> None:
    """Move a written file's staged outputs to their final names."""
    for tmp, final in outcome.staged:
        os.replace(tmp, final)


def _discard_staged(outcome: Outcome) -> None:
    """Delete the staged outputs of a file that will not enter the dataset (a duplicate)."""
    for tmp, _ in outcome.staged:
        Path(tmp).unlink(missing_ok=True)


def _run_settings(
    config: IngestConfig, key: SecretKey, options: DeidOptions, found: int, skipped: int
) -> dict[str, Any]:
    """The run record's settings and input counts (commit_outcomes adds what it wrote)."""
    return {
        "cxrflow_version": __version__,
        "found": found,
        "skipped_existing": skipped,
        "deid_profile": options.describe(),
        "deid_options": {
            "retain_patient_characteristics": options.retain_patient_characteristics,
            "retain_longitudinal_modified_dates": options.retain_longitudinal_modified_dates,
            "clean_descriptors": options.clean_descriptors,
        },
        "deid_table_rows": len(load_profile_table()),
        "key_fingerprint": key.fingerprint(),
        "max_side": config.max_side,
        "png_bits": config.png_bits,
        "write_dicom": config.write_dicom,
    }


def locate_files(input_dir: Path, key: SecretKey, keys: set[str]) -> dict[str, Path]:
    """Map file keys (from the quarantine or audit) back to input paths; needs the key."""
    return {fk: p for p in list_files(input_dir) if (fk := file_key(key, input_dir, p)) in keys}
