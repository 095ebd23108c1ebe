"""Sharded ingestion: shard plan, and merged shards == a single-pod `run_ingest`, byte for byte."""

from __future__ import annotations

from pathlib import Path

import pytest

from cxrflow.ingest import IngestConfig, run_ingest
from cxrflow.ingest.merge import MergeError, merge_shards
from cxrflow.ingest.run import file_key
from cxrflow.ingest.shards import SHARD_RECORD, ingest_shard, plan_shards, shard_of
from cxrflow.keys import SecretKey
from cxrflow.phantom import GROUND_TRUTH_NAME, generate_phantom
from tests.factory import make_dataset, write

KEY = SecretKey(b"shard-test-key-0123456789-0123456789-01")


def tree(root: Path) -> dict[str, bytes]:
    """Every file under `root` by relative path, with its bytes."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def assert_same_dataset(single: Path, merged: Path) -> None:
    a, b = tree(single), tree(merged)
    assert sorted(a) == sorted(b)
    differ = sorted(name for name in a if a[name] != b[name])
    assert not differ, f"files differ: {differ}"


@pytest.fixture
def inbox(tmp_path) -> Path:
    inbox = tmp_path / "inbox"
    generate_phantom(inbox, 6, seed=2, min_side=64, max_side=96, progress=False)
    return inbox


def config(inbox: Path, out: Path) -> IngestConfig:
    return IngestConfig(
        inbox,
        out,
        ground_truth=inbox / GROUND_TRUTH_NAME,
        max_side=64,
        write_dicom=True,
        show_progress=False,
    )


def sharded(inbox: Path, out: Path, work: Path, n: int):
    dirs = []
    for i in range(n):
        ingest_shard(config(inbox, out), KEY, work / f"shard-{i}", i, n)
        dirs.append(work / f"shard-{i}")
    return merge_shards(dirs, out)


def test_plan_is_a_deterministic_partition_by_file_key(inbox):
    exclude = [inbox / GROUND_TRUTH_NAME]
    plan = plan_shards(inbox, 3, KEY, exclude)
    assert plan == plan_shards(inbox, 3, KEY, exclude)
    everything = sorted(p.relative_to(inbox).as_posix() for p in inbox.rglob("*") if p.is_file())
    assert sorted(r for shard in plan for r in shard) == sorted(
        set(everything) - {GROUND_TRUTH_NAME}
    )
    for i, shard in enumerate(plan):
        assert shard == sorted(shard)
        assert all(shard_of(file_key(KEY, inbox, inbox / r), 3) == i for r in shard)
    # A file's shard depends on its key only: a new file moves nobody else.
    write(make_dataset(sop_uid="1.2.840.99999.77.60"), inbox / "late" / "IM")
    later = plan_shards(inbox, 3, KEY, exclude)
    assert [sorted(set(b) - set(a)) for a, b in zip(plan, later, strict=True)].count([]) == 2


def test_merged_shards_equal_a_single_pod_run_also_incrementally(inbox, tmp_path):
    single, merged, work = tmp_path / "single", tmp_path / "merged", tmp_path / "work"
    r1 = run_ingest(config(inbox, single), KEY)
    r2 = sharded(inbox, merged, work / "1", 3)
    assert (r2.run_id, r2.found, r2.written, r2.quarantined) == (
        r1.run_id,
        r1.found,
        r1.written,
        r1.quarantined,
    )
    assert r1.quarantined > 0 and r1.written > 0
    assert_same_dataset(single, merged)

    # New images, one of them twice (same SOPInstanceUID) in two different shards.
    paths = [inbox / "new" / "IM1", inbox / "new" / "IM2"]
    n = next(
        n for n in range(2, 16) if len({shard_of(file_key(KEY, inbox, p), n) for p in paths}) == 2
    )
    for p in paths:
        write(make_dataset(sop_uid="1.2.840.99999.77.50", PatientID="NEW-P9"), p)
    r1 = run_ingest(config(inbox, single), KEY)
    r2 = sharded(inbox, merged, work / "2", n)
    assert r1.quarantined == r2.quarantined == 1  # the duplicate
    assert r2.skipped_existing == r1.skipped_existing > 0
    assert r2.run_id == r1.run_id
    assert_same_dataset(single, merged)

    # Nothing new: nothing changes.
    r2 = sharded(inbox, merged, work / "3", n)
    assert r2.written == r2.quarantined == 0
    assert_same_dataset(single, merged)


def test_merge_refuses_inconsistent_shards(inbox, tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    ingest_shard(config(inbox, out), KEY, work / "a", 0, 2)
    ingest_shard(config(inbox, out), KEY, work / "b", 0, 3)
    with pytest.raises(MergeError, match="shard counts"):
        merge_shards([work / "a", work / "b"], out)
    with pytest.raises(MergeError, match="twice"):
        merge_shards([work / "a", work / "a"], out)
    # A shard keeps file keys and counts, never an input path, and drops its links.
    record = (work / "a" / SHARD_RECORD).read_text()
    rels = [r for shard in plan_shards(inbox, 2, KEY) for r in shard]
    assert not [r for r in rels if r in record]
    assert sorted(p.name for p in (work / "a").iterdir()) == ["out", SHARD_RECORD]
