"""commit_outcomes: the bookkeeping shared by run_ingest and the merge of ingestion shards."""

import json
from pathlib import Path
from typing import Any

import pandas as pd

from cxrflow.ingest.commit import (
    AUDIT_ACTIONS,
    RUNS_DIR,
    STATE_FILE,
    commit_outcomes,
    run_id_for,
)
from cxrflow.ingest.worker import Outcome
from cxrflow.manifest import MANIFEST_FILE, MANIFEST_SCHEMA, read_manifest


def _written(fk: str, image_id: str) -> Outcome:
    row: dict[str, Any] = dict.fromkeys(MANIFEST_SCHEMA.names)
    row.update(
        image_id=image_id,
        subject_id="s1",
        study_id="st1",
        view="PA",
        image_path=f"images/s1/{image_id}.png",
        image_sha256="0" * 64,
        width=8,
        height=8,
        source_dataset="test",
    )
    audit: dict[str, Any] = {"file_key": fk, "image_id": image_id}
    audit.update({a: 0 for a in AUDIT_ACTIONS})
    audit.update({f"{a}_attributes": [] for a in AUDIT_ACTIONS})
    return Outcome(fk, f"digest-{fk}-{image_id}", "written", row=row, audit=audit)


def _commit(out: Path, outcomes: list[Outcome], placed: list[str], discarded: list[str]):
    return commit_outcomes(
        out,
        run_id_for(o.file_key for o in outcomes),
        outcomes,
        place=lambda o: placed.append(o.file_key),
        discard=lambda o: discarded.append(o.file_key),
        record={"found": len(outcomes), "skipped_existing": 0, "setting": 1},
    )


def test_duplicates_lose_by_file_key_and_changed_files_replace_their_rows(tmp_path):
    out, placed, discarded = tmp_path / "out", [], []
    out.mkdir()
    bad = Outcome("c", "digest-c", "quarantined", "unreadable", "not a DICOM file")
    # Completion order must not matter: "a" holds the image, its duplicate "b" is discarded.
    counts = _commit(out, [_written("b", "img1"), bad, _written("a", "img1")], placed, discarded)
    assert (counts.written, counts.quarantined) == (1, 2)
    assert counts.reasons == {"duplicate": 1, "unreadable": 1}
    assert (placed, discarded) == (["a"], ["b"])
    state = pd.read_parquet(out / STATE_FILE)
    assert list(state["status"]) == ["written", "quarantined", "quarantined"]
    run_id = run_id_for(["b", "c", "a"])
    record = json.loads((out / RUNS_DIR / f"{run_id}.json").read_text())
    assert (record["run_id"], record["written"], record["setting"]) == (run_id, 1, 1)
    assert record["quarantine_reasons"] == {"duplicate": 1, "unreadable": 1}

    # "a" changed: its new image replaces the old row instead of being added beside it.
    counts = _commit(out, [_written("a", "img2")], placed, discarded)
    assert counts.written == 1
    assert list(read_manifest(out / MANIFEST_FILE)["image_id"]) == ["img2"]
    state = pd.read_parquet(out / STATE_FILE)
    assert dict(zip(state["file_key"], state["image_id"], strict=True))["a"] == "img2"


def test_nothing_to_commit_leaves_an_empty_dataset_and_no_run_record(tmp_path):
    counts = _commit(tmp_path, [], [], [])
    assert (counts.written, counts.quarantined) == (0, 0)
    assert len(read_manifest(tmp_path / MANIFEST_FILE)) == 0
    assert pd.read_parquet(tmp_path / STATE_FILE).empty
    assert not (tmp_path / RUNS_DIR).exists()
