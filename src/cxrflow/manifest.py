"""The manifest: one row per image, the single table that describes a dataset.

Written as Parquet with a fixed schema and checked on read, so that a stage fails loudly on a
manifest it does not understand rather than training on the wrong columns. Nothing in it is
PHI: ids are keyed pseudonyms, dates are shifted, paths are made of pseudonyms.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cxrflow.findings import FINDINGS, label_column

MANIFEST_FILE = "manifest.parquet"

_BASE_FIELDS: list[pa.Field] = [
    pa.field("image_id", pa.string(), nullable=False),
    pa.field("subject_id", pa.string(), nullable=False),
    pa.field("study_id", pa.string(), nullable=False),
    pa.field("view", pa.string(), nullable=False),
    pa.field("image_path", pa.string(), nullable=False),
    pa.field("image_sha256", pa.string(), nullable=False),
    pa.field("width", pa.int32(), nullable=False),
    pa.field("height", pa.int32(), nullable=False),
    pa.field("source_dataset", pa.string(), nullable=False),
    pa.field("ingest_run", pa.string(), nullable=False),
    pa.field("study_date", pa.string()),  # shifted by the patient's keyed offset
    pa.field("sex", pa.string()),
    pa.field("age_years", pa.float32()),
    pa.field("weight_kg", pa.float32()),
    pa.field("height_m", pa.float32()),
    pa.field("report", pa.string()),
    pa.field("mask_path", pa.string()),
]
_LABEL_FIELDS: list[pa.Field] = [pa.field(label_column(f), pa.int8()) for f in FINDINGS]

MANIFEST_SCHEMA = pa.schema(_BASE_FIELDS + _LABEL_FIELDS)
LABEL_COLUMNS: tuple[str, ...] = tuple(f.name for f in _LABEL_FIELDS)


class ManifestSchemaError(ValueError):
    """The manifest does not have the columns or types this version expects."""


def empty_manifest() -> pd.DataFrame:
    return MANIFEST_SCHEMA.empty_table().to_pandas()


def to_table(df: pd.DataFrame) -> pa.Table:
    """Convert to Arrow with exactly the manifest schema; extra columns are kept after it."""
    missing = [f.name for f in MANIFEST_SCHEMA if f.name not in df.columns]
    if missing:
        raise ManifestSchemaError(f"manifest is missing columns: {', '.join(missing)}")
    extra = [c for c in df.columns if c not in MANIFEST_SCHEMA.names]
    table = pa.Table.from_pandas(df[list(MANIFEST_SCHEMA.names) + extra], preserve_index=False)
    fields = list(MANIFEST_SCHEMA) + [table.schema.field(c) for c in extra]
    try:
        return table.cast(pa.schema(fields))
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ManifestSchemaError(f"manifest column has the wrong type: {exc}") from exc


def write_manifest(df: pd.DataFrame, path: Path) -> None:
    """Write atomically, sorted by image_id so that equal content gives equal bytes."""
    df = df.sort_values("image_id", kind="stable").reset_index(drop=True)
    table = to_table(df)
    tmp = path.with_suffix(path.suffix + ".tmp")
    pq.write_table(table, tmp, compression="zstd")
    tmp.replace(path)


def read_manifest(path: Path) -> pd.DataFrame:
    """Read a manifest and check its schema against this version's."""
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    schema = pq.read_schema(path)
    missing = [f.name for f in MANIFEST_SCHEMA if f.name not in schema.names]
    if missing:
        raise ManifestSchemaError(f"{path} is missing columns: {', '.join(missing)}")
    wrong = [
        f"{f.name} ({schema.field(f.name).type}, expected {f.type})"
        for f in MANIFEST_SCHEMA
        if not schema.field(f.name).type.equals(f.type)
    ]
    if wrong:
        raise ManifestSchemaError(f"{path} has columns of the wrong type: {', '.join(wrong)}")
    df = pq.read_table(path).to_pandas()
    if df["image_id"].duplicated().any():
        raise ManifestSchemaError(f"{path} has duplicate image_id values")
    return df


def read_manifest_column(path: Path, column: str) -> list[Any]:
    """One column of a manifest, without reading the rest (report text, labels, ...)."""
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    if column not in pq.read_schema(path).names:
        raise ManifestSchemaError(f"{path} has no column {column!r}")
    return pq.read_table(path, columns=[column]).column(0).to_pylist()
