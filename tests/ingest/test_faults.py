"""Ingestion under faults: crashes at every commit step, a full disk, two writers, unreadable,
vanishing and non-regular inbox entries, inputs refused on a re-run.

Every test checks that nothing is lost: each input is in the manifest or the quarantine, the
counts reconcile, no orphan or temporary file is left, and where a re-run is promised to
converge, its outputs are byte-identical to a clean run's.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import threading
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from cxrflow.cli import app
from cxrflow.ingest import IngestConfig, run_ingest
from cxrflow.ingest.commit import (
    JOURNAL_FILE,
    QUARANTINE_FILE,
    STATE_FILE,
    IngestLockedError,
    dataset_lock,
)
from cxrflow.ingest.run import file_key
from cxrflow.manifest import MANIFEST_FILE, read_manifest
from tests.factory import make_dataset, write
from tests.ingest.conftest import KEY, build_inbox


class Crash(Exception):
    """Stands for the process being killed at this point."""


def _config(inbox: Path, out: Path, **kw) -> IngestConfig:
    return IngestConfig(input_dir=inbox, output_dir=out, show_progress=False, max_side=32, **kw)


def _tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _assert_consistent(out: Path, inbox: Path) -> None:
    """Every input is in the state once; images on disk == manifest; no temporary files."""
    manifest = read_manifest(out / MANIFEST_FILE)
    state = pd.read_parquet(out / STATE_FILE)
    quarantine = pd.read_parquet(out / QUARANTINE_FILE)
    inputs = {file_key(KEY, inbox, p) for p in inbox.rglob("*") if p.is_symlink() or not p.is_dir()}
    assert set(state["file_key"]) == inputs and state["file_key"].is_unique
    written = state[state["status"] == "written"]
    assert set(written["image_id"]) == set(manifest["image_id"])
    assert set(quarantine["file_key"]) == set(state.loc[state["status"] != "written", "file_key"])
    images = {p.relative_to(out).as_posix() for p in (out / "images").rglob("*") if p.is_file()}
    assert images == set(manifest["image_path"])
    if (out / "dicom").is_dir():
        dicoms = {p.stem for p in (out / "dicom").rglob("*") if p.is_file()}
        assert dicoms == set(manifest["image_id"])
    leftovers = [n for n in _tree(out) if n.endswith((".part", ".commit-tmp")) or n == JOURNAL_FILE]
    assert not leftovers


def _add_file(inbox: Path, i: int = 40) -> None:
    write(make_dataset(sop_uid=f"1.2.840.99999.88.{i}", PatientID=f"P-{i}"), inbox / f"new/{i}")


# ---------------------------------------------------------------------------------------------
def _crash_after(monkeypatch: pytest.MonkeyPatch, k: int) -> None:
    """os.replace works k times, then the process 'dies'."""
    real = os.replace
    calls = {"n": 0}

    def replace(src, dst, *a, **kw):
        if calls["n"] >= k:
            raise Crash(f"killed before rename {k}")
        calls["n"] += 1
        return real(src, dst, *a, **kw)

    monkeypatch.setattr(os, "replace", replace)


@pytest.mark.parametrize("incremental", [False, True], ids=["first-run", "second-run"])
def test_a_crash_at_every_commit_step_converges_to_a_clean_run(tmp_path, incremental):
    inbox, clean = tmp_path / "inbox", tmp_path / "clean"
    build_inbox(inbox)
    if incremental:
        run_ingest(_config(inbox, clean), KEY)
        _add_file(inbox)
        (inbox / "A/B/IM0002.dcm").write_bytes(b"now refused")  # its image must go
        before = tmp_path / "before"
        shutil.copytree(clean, before)
    run_ingest(_config(inbox, clean), KEY)
    _assert_consistent(clean, inbox)
    want = _tree(clean)

    k = 0
    while True:
        out = tmp_path / f"out-{k}"
        if incremental:
            shutil.copytree(before, out)
        with pytest.MonkeyPatch.context() as mp:
            _crash_after(mp, k)
            try:
                run_ingest(_config(inbox, out), KEY)
                crashed = False
            except Crash:
                crashed = True
        if crashed and k == 0 and incremental:
            # Killed before the commit point: the old dataset is still there, readable.
            assert read_manifest(out / MANIFEST_FILE).equals(read_manifest(before / MANIFEST_FILE))
        result = run_ingest(_config(inbox, out), KEY)  # the re-run after the crash
        assert result.reconciles
        assert _tree(out) == want, f"crash after {k} renames did not converge"
        _assert_consistent(out, inbox)
        if not crashed:
            break
        k += 1
    assert k > 5  # every table, image and the journal was a crash point


def test_disk_full_while_writing_tables_keeps_the_old_dataset_and_the_rerun_converges(
    tmp_path, monkeypatch
):
    inbox, clean, out = tmp_path / "inbox", tmp_path / "clean", tmp_path / "out"
    build_inbox(inbox)
    run_ingest(_config(inbox, clean), KEY)
    run_ingest(_config(inbox, out), KEY)
    old = _tree(out)
    _add_file(inbox)
    run_ingest(_config(inbox, clean), KEY)

    real = pq.write_table
    calls = {"n": 0}

    def full(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*a, **kw)

    monkeypatch.setattr(pq, "write_table", full)
    with pytest.raises(OSError, match="No space"):
        run_ingest(_config(inbox, out), KEY)
    monkeypatch.undo()
    # The dataset as it was (temporary files aside): every table readable, unchanged.
    now = _tree(out)
    assert {n: h for n, h in now.items() if n in old} == old
    assert not (out / JOURNAL_FILE).exists()
    read_manifest(out / MANIFEST_FILE)
    result = run_ingest(_config(inbox, out), KEY)
    assert result.written == 1 and result.reconciles
    assert _tree(out) == _tree(clean)
    _assert_consistent(out, inbox)


# ---------------------------------------------------------------------------------------------
def test_a_second_writer_is_refused_and_never_touches_the_first_ones_staged_files(tmp_path):
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    build_inbox(inbox)
    staged = out / "images" / "s" / "i.png.abc.part"  # a file the first writer staged
    staged.parent.mkdir(parents=True)
    staged.write_bytes(b"in flight")
    with dataset_lock(out):
        with pytest.raises(IngestLockedError) as info:
            run_ingest(_config(inbox, out), KEY)
        assert str(out) in str(info.value) and f"pid {os.getpid()}" in str(info.value)
        assert staged.read_bytes() == b"in flight"
        assert not (out / MANIFEST_FILE).exists()
    result = run_ingest(_config(inbox, out), KEY)  # the lock is free: this one cleans up
    assert result.reconciles
    _assert_consistent(out, inbox)


def test_a_writer_given_a_lock_timeout_queues_behind_the_first(tmp_path):
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    build_inbox(inbox)
    held, stop = threading.Event(), threading.Event()

    def first() -> None:
        with dataset_lock(out):
            held.set()
            stop.wait(0.8)

    t = threading.Thread(target=first)
    t.start()
    held.wait(5)
    start = time.monotonic()
    with pytest.raises(IngestLockedError):
        run_ingest(_config(inbox, out), KEY, lock_timeout_s=0.1)
    result = run_ingest(_config(inbox, out), KEY, lock_timeout_s=30)
    t.join()
    assert time.monotonic() - start >= 0.5
    assert result.reconciles and result.written > 0


def test_cli_exits_75_when_the_output_is_locked(tmp_path):
    key = tmp_path / "k"
    key.write_text(hashlib.sha256(b"a test key").hexdigest() + "\n")
    write(make_dataset(), tmp_path / "in" / "IM1")
    out = tmp_path / "out"
    args = ["ingest", "--input", str(tmp_path / "in"), "--output", str(out)]
    with dataset_lock(out):
        result = CliRunner().invoke(app, [*args, "--key-file", str(key)])
    assert result.exit_code == 75, result.output
    assert "another ingestion" in result.output and str(out) in result.output
    result = CliRunner().invoke(app, [*args, "--key-file", str(key), "--wait", "5"])
    assert result.exit_code == 0, result.output


# ---------------------------------------------------------------------------------------------
def test_unreadable_and_vanishing_files_are_quarantined_and_the_run_goes_on(tmp_path, monkeypatch):
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    expected = build_inbox(inbox)
    denied, broken, gone = inbox / "A/B/IM0001", inbox / "junk/readme.txt", inbox / "D/dx"
    real_read = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        if self == denied:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        if self == broken:
            raise OSError(errno.EIO, "Input/output error", str(self))
        return real_read(self)

    import cxrflow.ingest.run as run_module

    real_list = run_module.list_files

    def list_then_vanish(*a, **kw):
        found = real_list(*a, **kw)
        gone_bytes.append(gone.read_bytes())
        gone.unlink()  # removed between the listing and the read
        return found

    gone_bytes: list[bytes] = []
    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    monkeypatch.setattr(run_module, "list_files", list_then_vanish)
    result = run_ingest(_config(inbox, out), KEY)
    monkeypatch.undo()

    assert result.found == len(expected) and result.reconciles
    q = pd.read_parquet(out / QUARANTINE_FILE)
    reasons = dict(zip(q["file_key"], q["reason_class"], strict=True))
    assert reasons[file_key(KEY, inbox, denied)] == "unreadable"
    assert reasons[file_key(KEY, inbox, broken)] == "unreadable"
    assert reasons[file_key(KEY, inbox, gone)] == "vanished"
    for text in q["reason"]:
        assert str(tmp_path) not in text and "IM0001" not in text and "readme" not in text
    assert "EIO" in " ".join(q["reason"])

    # Readable again and back in the inbox: the next run retries them and writes them.
    gone.write_bytes(gone_bytes[0])
    result = run_ingest(_config(inbox, out), KEY)
    assert result.reconciles and result.written == 2
    _assert_consistent(out, inbox)
    q = pd.read_parquet(out / QUARANTINE_FILE)
    assert file_key(KEY, inbox, broken) in set(q["file_key"])  # now as not_dicom
    assert not {"unreadable", "vanished"} & set(q["reason_class"])


def test_symlinks_and_fifos_are_counted_and_quarantined_never_followed(tmp_path):
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    expected = build_inbox(inbox)
    outside = tmp_path / "outside"
    write(make_dataset(sop_uid="1.2.840.99999.66.1", PatientID="P-OUT"), outside / "secret")
    (inbox / "links").mkdir()
    os.symlink(outside / "secret", inbox / "links/to_file")
    os.symlink(outside, inbox / "links/to_dir")
    os.symlink(tmp_path / "nowhere", inbox / "links/dangling")
    os.mkfifo(inbox / "links/pipe")
    odd = ["links/to_file", "links/to_dir", "links/dangling", "links/pipe"]

    box: dict[str, object] = {}
    t = threading.Thread(target=lambda: box.update(r=run_ingest(_config(inbox, out), KEY)))
    t.start()
    t.join(120)
    assert not t.is_alive(), "the run blocked (a FIFO was opened?)"
    result = box["r"]
    assert result.found == len(expected) + len(odd) and result.reconciles
    q = pd.read_parquet(out / QUARANTINE_FILE)
    reasons = dict(zip(q["file_key"], q["reason_class"], strict=True))
    for rel in odd:
        assert reasons[file_key(KEY, inbox, inbox / rel)] == "not_a_regular_file"
    manifest = read_manifest(out / MANIFEST_FILE)
    assert KEY.pseudonym("image", "1.2.840.99999.66.1") not in set(manifest["image_id"])
    _assert_consistent(out, inbox)
    again = run_ingest(_config(inbox, out), KEY)  # known: not quarantined again
    assert again.skipped_existing == again.found and again.quarantined == 0


def test_an_input_refused_on_a_rerun_takes_its_image_and_dicom_out(tmp_path):
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    build_inbox(inbox)
    run_ingest(_config(inbox, out, write_dicom=True), KEY)
    fk = file_key(KEY, inbox, inbox / "A/B/IM0001")
    state = pd.read_parquet(out / STATE_FILE).set_index("file_key")
    image_id = state.loc[fk, "image_id"]
    row = read_manifest(out / MANIFEST_FILE).set_index("image_id").loc[image_id]
    png, dcm = out / row["image_path"], out / f"dicom/{row['subject_id']}/{image_id}.dcm"
    assert png.is_file() and dcm.is_file()

    (inbox / "A/B/IM0001").write_bytes(b"\0" * 128 + b"DICM" + b"garbage" * 10)
    result = run_ingest(_config(inbox, out, write_dicom=True), KEY)
    assert result.quarantined == 1 and result.reconciles
    assert not png.exists() and not dcm.exists()
    assert image_id not in set(read_manifest(out / MANIFEST_FILE)["image_id"])
    _assert_consistent(out, inbox)
