"""A phantom PACS export ingested into a dataset directory, the start of many stage tests."""

from __future__ import annotations

from pathlib import Path

from cxrflow.ingest import IngestConfig, run_ingest
from cxrflow.keys import SecretKey
from cxrflow.phantom import GROUND_TRUTH_NAME, generate_phantom

TEST_KEY = SecretKey(b"x" * 32)


def ingested_phantom(
    root: Path,
    subjects: int,
    *,
    seed: int = 3,
    min_side: int = 128,
    max_side: int = 192,
    ingest_side: int = 128,
    include_faulty: bool = True,
    key: SecretKey = TEST_KEY,
) -> Path:
    """Phantom under root/inbox, ingested (images at most `ingest_side`) into root/data."""
    inbox = root / "inbox"
    generate_phantom(
        inbox,
        subjects,
        seed=seed,
        min_side=min_side,
        max_side=max_side,
        include_faulty=include_faulty,
        progress=False,
    )
    config = IngestConfig(
        inbox,
        root / "data",
        ground_truth=inbox / GROUND_TRUTH_NAME,
        max_side=ingest_side,
        show_progress=False,
    )
    run_ingest(config, key)
    return root / "data"
