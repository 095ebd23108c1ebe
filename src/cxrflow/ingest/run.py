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

Every entry of the inbox is counted: a symbolic link, FIFO, socket or device is quarantined
unopened (`not_a_regular_file`), a file that cannot be read (vanished since the listing,
permission denied, I/O error) is quarantined as `vanished` or `unreadable` (retried by the next
run) and the run goes on. One writer at a time: a run holds the output directory's lock
(`lock_timeout_s`), rolls forward a commit a killed run left behind, and commits atomically
(cxrflow.ingest.commit).

Files are named by keyed pseudonyms only. Input files are identified by a keyed hash of their
relative path (`file_key`), so an operator holding the key can find a quarantined file again
(`cxrflow ingest --locate`), and nobody else can learn a path from the outputs.
"""

from __future__ import annotations

import errno
import logging
import multiprocessing as mp
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cxrflow import __version__
from cxrflow.deid import DeidOptions, load_profile_table
from cxrflow.ingest.commit import (
    AUDIT_FILE,
    QUARANTINE_FILE,
    STATE_FILE,
    STATE_SCHEMA,
    commit_outcomes,
    dataset_lock,
    read_table,
    recover,
    run_id_for,
)
from cxrflow.ingest.config import IngestConfig, IngestResult
from cxrflow.ingest.discover import (
    NOT_REGULAR_CLASS,
    NOT_REGULAR_REASON,
    is_regular_file,
    list_files,
)
from cxrflow.ingest.worker import FileProcessor, Outcome, Task
from cxrflow.keys import SecretKey
from cxrflow.logs import progress_bar
from cxrflow.manifest import MANIFEST_FILE

log = logging.getLogger(__name__)

_processor: FileProcessor | None = None


def file_key(key: SecretKey, input_dir: Path, path: Path) -> str:
    """The PHI-free name of an input file: a keyed hash of its path relative to the inbox."""
    return key.pseudonym("file", path.relative_to(input_dir).as_posix(), length=24)


def content_digest(key: SecretKey, path: Path) -> str | None:
    """The keyed digest a dataset's state holds for an input; None when it cannot be read.

    An entry that is not a regular file is never opened: it has one fixed digest, so that it is
    quarantined once and then skipped like any other known file.
    """
    if not is_regular_file(path):
        return key.digest("content", b"cxrflow:not-a-regular-file").hex()
    try:
        return key.digest("content", path.read_bytes()).hex()
    except OSError:
        return None


def unreadable_outcome(fk: str, exc: OSError) -> Outcome:
    """The quarantine outcome of an input that cannot be read; never the path or the message."""
    if isinstance(exc, FileNotFoundError | NotADirectoryError):
        cls, reason = "vanished", "input file vanished between listing and reading"
    elif isinstance(exc, PermissionError):
        cls, reason = "unreadable", "input file cannot be read: permission denied"
    else:
        name = errno.errorcode.get(exc.errno or 0, "unknown error")
        cls, reason = "unreadable", f"input file cannot be read ({type(exc).__name__} {name})"
    # No digest: it never matches the state, so the next run tries the file again.
    return Outcome(fk, "", "quarantined", cls, reason)


def _process(processor: FileProcessor, task: Task) -> Outcome:
    """One file's outcome; a file that cannot be read is quarantined, the run goes on."""
    try:
        return processor(task)
    except OSError as exc:
        return unreadable_outcome(task.file_key, exc)


def _init_worker(config: IngestConfig, key_bytes: bytes, options: DeidOptions, run_id: str) -> None:
    global _processor
    _processor = FileProcessor(config, SecretKey(key_bytes), options, run_id)


def _work(task: Task) -> Outcome:
    assert _processor is not None
    return _process(_processor, task)


def _run_tasks(
    tasks: list[Task], config: IngestConfig, key: SecretKey, options: DeidOptions, run_id: str
) -> Iterator[Outcome]:
    if config.workers == 1 or len(tasks) < 2:
        processor = FileProcessor(config, key, options, run_id)
        yield from (_process(processor, t) for t in tasks)
        return
    ctx = mp.get_context("fork")
    with ctx.Pool(config.workers, _init_worker, (config, key.value, options, run_id)) as pool:
        yield from pool.imap_unordered(_work, tasks, chunksize=2)


def run_ingest(
    config: IngestConfig,
    key: SecretKey,
    options: DeidOptions | None = None,
    *,
    lock_timeout_s: float = 0,
) -> IngestResult:
    """Ingest every new file of `config.input_dir` into `config.output_dir`.

    Holds the output directory's lock for the whole run: with another run holding it, raises
    IngestLockedError at once (`lock_timeout_s` 0), after waiting up to `lock_timeout_s`
    seconds (> 0), or waits for ever (< 0).
    """
    options = options or DeidOptions()
    out = config.output_dir
    if config.ground_truth is not None and not config.ground_truth.is_file():
        raise FileNotFoundError(f"ground-truth side-car not found: {config.ground_truth}")
    out.mkdir(parents=True, exist_ok=True)
    with dataset_lock(out, lock_timeout_s):
        # A commit a killed run left behind is finished first; its staged files are dropped.
        if recover(out):
            log.info("rolled forward the commit a killed run left in the output directory")
        return _ingest(config, key, options)


def _ingest(config: IngestConfig, key: SecretKey, options: DeidOptions) -> IngestResult:
    out = config.output_dir
    exclude = frozenset({config.ground_truth}) if config.ground_truth else frozenset()
    paths = list_files(config.input_dir, exclude)
    state = read_table(out / STATE_FILE, STATE_SCHEMA)
    known = dict(zip(state["file_key"], state["content_digest"], strict=True))

    tasks: list[Task] = []
    refused: list[Outcome] = []  # entries that are not regular files: never opened
    processed: list[str] = []  # file keys of this run, in inbox order
    skipped = 0
    for path in paths:
        fk = file_key(key, config.input_dir, path)
        regular = is_regular_file(path)
        if fk in known and known[fk] == content_digest(key, path):
            skipped += 1
            continue
        processed.append(fk)
        if regular:
            tasks.append(Task(path=path, file_key=fk))
        else:
            digest = content_digest(key, path) or ""
            refused.append(
                Outcome(fk, digest, "quarantined", NOT_REGULAR_CLASS, NOT_REGULAR_REASON)
            )
    log.info(
        "found %d files: %d already ingested, %d to process",
        len(paths),
        skipped,
        len(processed),
    )

    run_id = run_id_for(processed)
    outcomes = refused + list(
        progress_bar(
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


def _place_staged(outcome: Outcome) -> list[tuple[str, str]]:
    """A written file's staged outputs (already beside their final names): the commit renames."""
    return list(outcome.staged)


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
