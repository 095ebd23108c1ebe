"""CANDID-PTX (Dunedin Hospital, 19,237 CXRs) to the manifest, with pneumothorax/chest-tube masks.

Files read under `root`:

- `Pneumothorax_reports.csv`: `SOPInstanceUID`, `EncodedPixels` (required); `filename`,
  `Report` (used when present). One row a pneumothorax region, SIIM-ACR style: several rows
  for one image are several regions (their union is the mask); `EncodedPixels` = `-1` means no
  pneumothorax.
- `chest_tube.csv`: `anon_SOPUID`, `mask_rle` (one row a tube) — optional.
- `acute_rib_fracture.csv`: `anon_SOPUID`, `mask_rle` (one row a fracture) — optional.

*Layout caveat*: these column names are the ones published code reads from the release; the
image folder's name varies between copies, so `image_dir` is a parameter (default: the first
of `dataset`, `images`, `chest_radiographs` that exists under `root`, else `dataset`). The file
names in that folder are the `SOPInstanceUID` values as written in the CSV.

RLE: the SIIM-ACR encoding (relative offsets, column-major; `cxrflow.datasets.rle`), which the
CANDID-PTX paper says it follows; `rle_style="standard"` switches to absolute 1-based starts if
a copy turns out to use them. The image size is read from the DICOM header when masks are
written (`write_masks`).

Labels: pneumothorax 1 when any of the image's rows has a mask, 0 when its only rows are `-1`;
chest_tube / rib_fracture 1 when the image is listed in the corresponding file, else 0 — but
null for every image when that file is absent (then not annotated). All other findings null.
Masks (`mask_spec`): `pneumothorax`, `chest_tube` and `rib_fracture` (the last has no bit in
`MASK_STRUCTURES` and is kept in the spec only). `report` is the FINDINGS section of `Report`
when it has one; the whole text is in `report_full`.

Subjects: the `filename` column starts with a patient index (`P<n>_...`), used as
`candid:P<n>` when present; otherwise each image is its own subject. Image id:
`candid:<SOPInstanceUID>` (without `.dcm`). No official split (the paper uses 60/20/20 by
subject): null.

Licence: CANDID-PTX data use agreement with the University of Otago (ethics training and a
signed agreement; research use only).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from cxrflow.datasets.common import finalize, read_csv_checked
from cxrflow.datasets.masks import MASK_SPEC_COLUMN, mask_spec
from cxrflow.datasets.reports import extract_findings
from cxrflow.datasets.rle import RLE_STYLES, RleStyle, is_empty_rle
from cxrflow.findings import label_column

NAME = "candid_ptx"
NAMESPACE = "candid"
PTX = "Pneumothorax_reports.csv"
TUBE = "chest_tube.csv"
FRACTURE = "acute_rib_fracture.csv"
IMAGE_DIRS = ("dataset", "images", "chest_radiographs")
EXTRAS = ("report_full", MASK_SPEC_COLUMN)
_PATIENT = re.compile(r"^(P\d+)_", re.IGNORECASE)


def _rles(path: Path, style: RleStyle) -> dict[str, list[dict[str, str]]] | None:
    """SOP -> mask parts from a tube/fracture file; None when the file is absent."""
    if not path.is_file():
        return None
    df = read_csv_checked(path, ["anon_SOPUID", "mask_rle"])
    out: dict[str, list[dict[str, str]]] = {}
    for sop, rle in zip(df["anon_SOPUID"].str.strip(), df["mask_rle"], strict=True):
        parts = out.setdefault(sop, [])
        if not is_empty_rle(rle):
            parts.append({"rle": str(rle).strip(), "style": style})
    return out


def load_candid_ptx(
    root: Path, *, image_dir: str | None = None, rle_style: RleStyle = "siim"
) -> pd.DataFrame:
    root = Path(root)
    if rle_style not in RLE_STYLES:
        raise ValueError(f"unknown RLE style {rle_style!r}; known: {', '.join(RLE_STYLES)}")
    if image_dir is None:
        image_dir = next((d for d in IMAGE_DIRS if (root / d).is_dir()), IMAGE_DIRS[0])
    ptx = read_csv_checked(root / PTX, ["SOPInstanceUID", "EncodedPixels"])
    ptx["SOPInstanceUID"] = ptx["SOPInstanceUID"].str.strip()
    tubes = _rles(root / TUBE, rle_style)
    fractures = _rles(root / FRACTURE, rle_style)

    rows: list[dict[str, object]] = []
    for sop, group in ptx.groupby("SOPInstanceUID", sort=True):
        sop = str(sop)
        ptx_parts = [
            {"rle": str(r).strip(), "style": rle_style}
            for r in group["EncodedPixels"]
            if not is_empty_rle(r)
        ]
        local = re.sub(r"\.dcm$", "", sop, flags=re.IGNORECASE)
        subject = local
        if "filename" in group:
            names = [str(f) for f in group["filename"].dropna()]
            m = _PATIENT.match(names[0]) if names else None
            if m:
                subject = m.group(1).upper()
        report = None
        if "Report" in group:
            reports = [str(r) for r in group["Report"].dropna()]
            report = reports[0] if reports else None
        row: dict[str, object] = {
            "image_id": f"{NAMESPACE}:{local}",
            "subject_id": f"{NAMESPACE}:{subject}",
            "study_id": f"{NAMESPACE}:{local}",
            "image_path": f"{image_dir}/{sop}",
            label_column("pneumothorax"): int(bool(ptx_parts)),
            "report_full": report,
            "report": extract_findings(report),
        }
        structures = {"pneumothorax": ptx_parts}
        if tubes is not None:
            row[label_column("chest_tube")] = int(sop in tubes)
            structures["chest_tube"] = tubes.get(sop, [])
        if fractures is not None:
            row[label_column("rib_fracture")] = int(sop in fractures)
            structures["rib_fracture"] = fractures.get(sop, [])
        row[MASK_SPEC_COLUMN] = mask_spec(structures)
        rows.append(row)
    return finalize(pd.DataFrame(rows), NAME, extra_columns=EXTRAS)
