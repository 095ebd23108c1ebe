"""The ground-truth table: one row per written file, stored as Parquet with a fixed schema."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from cxrflow.findings import FINDINGS, label_column

GROUND_TRUTH_NAME = "ground_truth.parquet"

SCHEMA = pa.schema(
    [
        ("relpath", pa.string()),
        ("kind", pa.string()),
        ("expected_quarantine", pa.string()),
        ("sop_instance_uid", pa.string()),
        ("series_instance_uid", pa.string()),
        ("study_instance_uid", pa.string()),
        ("sop_class", pa.string()),
        ("sop_class_uid", pa.string()),
        ("transfer_syntax", pa.string()),
        ("photometric", pa.string()),
        ("bits_stored", pa.int32()),
        ("rows", pa.int32()),
        ("columns", pa.int32()),
        ("rescale_slope", pa.float64()),
        ("rescale_intercept", pa.float64()),
        ("window_center", pa.float64()),
        ("window_width", pa.float64()),
        ("voi_lut", pa.bool_()),
        ("subject", pa.int32()),
        ("study_index", pa.int32()),
        ("view", pa.string()),
        ("study_date", pa.string()),
        ("patient_id", pa.string()),
        ("patient_name", pa.string()),
        ("birth_date", pa.string()),
        ("accession_number", pa.string()),
        ("mrn", pa.string()),
        ("referenced_frontal_uid", pa.string()),
        ("phi_values", pa.list_(pa.string())),
        ("sex", pa.string()),
        ("age_years", pa.int32()),
        ("weight_kg", pa.float64()),
        ("height_m", pa.float64()),
        *[(label_column(f), pa.int8()) for f in FINDINGS],
        ("cardiothoracic_ratio", pa.float64()),
        ("report", pa.string()),
        ("mask_png", pa.binary()),
    ]
)


def mask_to_png(mask: np.ndarray) -> bytes:
    """A packed uint16 mask as a 16-bit grayscale PNG (mode I;16)."""
    img = Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint16))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def png_to_mask(data: bytes) -> np.ndarray:
    """Decode a mask PNG back to a uint16 array."""
    return np.asarray(Image.open(io.BytesIO(data)), dtype=np.uint16)


def write_ground_truth(rows: list[dict[str, Any]], path: Path) -> None:
    """Write the rows (sorted by relpath for determinism) with the fixed schema."""
    rows = sorted(rows, key=lambda r: r["relpath"])
    columns = {name: [r.get(name) for r in rows] for name in SCHEMA.names}
    table = pa.table(columns, schema=SCHEMA)
    pq.write_table(table, path, compression="zstd")
