"""Ground truth beside the images: labels, masks, reports and demographics keyed by SOP UID.

A side-car is a Parquet file with a `sop_instance_uid` column (the original UID, read before
de-identification) and any of: `label_<finding>`, `report`, `mask_png` (a 16-bit PNG of the
packed bit mask, bit i = MASK_STRUCTURES[i]), `view`, `sex`, `age_years`, `weight_kg`,
`height_m`. The phantom's `ground_truth.parquet` is one. Identity columns it may also hold
(names, IDs) are never read.

The `report` column is free text and therefore PHI until scrubbed: it is handed on as a
string, and the worker runs it through `cxrflow.deid.text.scrub_dataset_report` with the
identifying values of the same study's original header and the patient's date offset before
it can reach the manifest. Nothing here writes or logs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from cxrflow.manifest import LABEL_COLUMNS

_USED = ("report", "mask_png", "view", "sex", "age_years", "weight_kg", "height_m", *LABEL_COLUMNS)


class SidecarError(ValueError):
    """The side-car file cannot be used (reason in the message)."""


@dataclass(frozen=True)
class Sidecar:
    """Side-car rows by original SOP Instance UID."""

    rows: dict[str, dict[str, Any]]

    def get(self, sop_instance_uid: str) -> dict[str, Any] | None:
        return self.rows.get(sop_instance_uid.strip())


def load_sidecar(path: Path) -> Sidecar:
    """Read the columns this stage uses, and only those."""
    if not path.is_file():
        raise SidecarError(f"ground-truth side-car not found: {path}")
    schema = pq.read_schema(path)
    if "sop_instance_uid" not in schema.names:
        raise SidecarError(f"side-car {path} has no 'sop_instance_uid' column")
    columns = ["sop_instance_uid"] + [c for c in _USED if c in schema.names]
    table = pq.read_table(path, columns=columns)
    rows: dict[str, dict[str, Any]] = {}
    for row in table.to_pylist():
        uid = row.pop("sop_instance_uid")
        if uid:
            if row.get("report") is not None:
                row["report"] = str(row["report"])
            rows[str(uid).strip()] = row
    return Sidecar(rows=rows)
