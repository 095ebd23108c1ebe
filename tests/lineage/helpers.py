"""A small but real DVC-versioned dataset with two versions (a subject added in the second)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd

from cxrflow.manifest import LABEL_COLUMNS, MANIFEST_FILE, MANIFEST_SCHEMA, write_manifest
from cxrflow.versioning import DataVersion, commit_version


def manifest(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    """(image_id, subject_id, split) rows -> a manifest with the schema's columns."""
    df = MANIFEST_SCHEMA.empty_table().to_pandas()
    n = len(rows)
    data = {
        "image_id": [r[0] for r in rows],
        "subject_id": [r[1] for r in rows],
        "study_id": [f"study-{r[0]}" for r in rows],
        "view": ["PA"] * n,
        "image_path": [f"images/{r[1]}/{r[0]}.png" for r in rows],
        "image_sha256": ["0" * 64] * n,
        "width": np.full(n, 64, dtype=np.int32),
        "height": np.full(n, 64, dtype=np.int32),
        "source_dataset": ["phantom"] * n,
        "ingest_run": ["ingest-1"] * n,
        "sex": ["F" if i % 2 else "M" for i in range(n)],
        "age_years": np.linspace(25, 85, n).astype(np.float32),
    }
    data |= {c: np.zeros(n, dtype=np.int8) for c in LABEL_COLUMNS}
    out = pd.DataFrame({c: data.get(c, pd.Series([None] * n, dtype=object)) for c in df})
    out["split"] = [r[2] for r in rows]
    return out


def git_repo(root: Path) -> Path:
    """An empty git work tree (DVC records versions in it)."""
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


def commit(root: Path, rows: list[tuple[str, str, str]]) -> DataVersion:
    """Write the data directory with `rows` and record it as a DVC version (local remote)."""
    data = root / "data"
    data.mkdir(exist_ok=True)
    write_manifest(manifest(rows), data / MANIFEST_FILE)
    return commit_version(root, data, str(root.parent / "remote"))
