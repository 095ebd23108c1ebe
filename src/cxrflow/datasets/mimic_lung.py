"""Lung and lung-zone masks on MIMIC-CXR images to the manifest (the paper's lung segmentation).

The paper uses lung masks of a MIMIC-CXR lung segmentation set (1,138 images) and cuts them
into six zones with the Chest ImaGenome bounding boxes. The layout implemented here is the one
that is published in full and documented: **CheXmask**'s MIMIC-CXR file (PhysioNet
`chexmask-cxr-segmentation-data`) for the lungs, and Chest ImaGenome scene graphs for the
zones. Files read under `root`:

- `MIMIC-CXR-JPG.csv` (CheXmask, OriginalResolution): `dicom_id`, `Left Lung`, `Right Lung`,
  `Height`, `Width` (required); `Dice RCA (Mean)` (quality estimate; `min_dice` filters on it).
  `Left Lung`/`Right Lung` are RLE strings, 1-based absolute starts over the row-major image
  (the `standard` style of `cxrflow.datasets.rle`); "left" is the patient's left.
- `mimic-cxr-2.0.0-metadata.csv` (MIMIC-CXR-JPG): subject, study and view of each dicom_id
  (required: CheXmask has only the dicom_id). Rows of the CheXmask file whose dicom_id is not
  in the metadata are an error.
- `mimic-cxr-2.0.0-split.csv` (optional): the official split, as for MIMIC-CXR.
- Chest ImaGenome scene graphs (optional): `<dicom_id>_SceneGraph.json`, anywhere under
  `root/scene_graph/`; its `objects` list has `bbox_name` and `original_x1/y1/x2/y2` (pixels
  of the original image). The six zones `right|left upper|mid|lower lung zone` become
  `zone_<side>_<upper|middle|lower>` = lung mask of that side within the zone's box.

Rows: one per CheXmask row (that passes `min_dice`). ids are MIMIC-CXR's (`mimic:<dicom_id>`,
`mimic:<subject_id>`, `mimic:s<study_id>`), so these subjects are recognised as MIMIC-CXR
subjects when evaluation subjects are excluded from pre-training. `image_path` is the
MIMIC-CXR-JPG path (relative to a MIMIC-CXR-JPG root); `width`/`height` from CheXmask. Labels:
none (all null). Masks via `write_masks`.

If the user has the exact 1,138-image set the paper used, restrict this adapter's output to its
dicom_ids; that set's own file layout is not implemented.

Licence: CheXmask — PhysioNet Credentialed Health Data License (as MIMIC-CXR); Chest ImaGenome
— PhysioNet Credentialed Health Data License 1.5.0.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from cxrflow.datasets.common import (
    DatasetFormatError,
    finalize,
    find_optional,
    locate,
    normalize_view,
    read_csv_checked,
)
from cxrflow.datasets.masks import MASK_SPEC_COLUMN, mask_spec
from cxrflow.datasets.mimic_cxr import NAMESPACE, SPLIT, SPLIT_NAMES, image_path, read_metadata

NAME = "mimic_lung"
CHEXMASK = "MIMIC-CXR-JPG.csv"
ZONES = {
    "right upper lung zone": ("zone_right_upper", "right_lung"),
    "right mid lung zone": ("zone_right_middle", "right_lung"),
    "right lower lung zone": ("zone_right_lower", "right_lung"),
    "left upper lung zone": ("zone_left_upper", "left_lung"),
    "left mid lung zone": ("zone_left_middle", "left_lung"),
    "left lower lung zone": ("zone_left_lower", "left_lung"),
}
EXTRAS = ("dice_rca_mean", MASK_SPEC_COLUMN)


def _scene_graphs(root: Path) -> dict[str, Path]:
    base = root / "scene_graph"
    if not base.is_dir():
        return {}
    return {p.name.removesuffix("_SceneGraph.json"): p for p in base.rglob("*_SceneGraph.json")}


def zone_parts(path: Path) -> dict[str, list[dict[str, object]]]:
    """Zone structures (box within the lung of its side) from one ImaGenome scene graph."""
    graph = json.loads(path.read_text())
    out: dict[str, list[dict[str, object]]] = {}
    for obj in graph.get("objects", []):
        name = str(obj.get("bbox_name", "")).strip().lower()
        if name not in ZONES:
            continue
        try:
            box = [float(obj[f"original_{k}"]) for k in ("x1", "y1", "x2", "y2")]
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetFormatError(f"{path.name}: {name!r} has no original_x1..y2") from exc
        structure, lung = ZONES[name]
        out[structure] = [{"box": box, "within": lung}]
    return out


def load_mimic_lung(root: Path, *, min_dice: float | None = None) -> pd.DataFrame:
    root = Path(root)
    masks = read_csv_checked(
        locate(root, CHEXMASK), ["dicom_id", "Left Lung", "Right Lung", "Height", "Width"]
    )
    masks["dicom_id"] = masks["dicom_id"].str.strip()
    if "Dice RCA (Mean)" in masks:
        masks["dice_rca_mean"] = pd.to_numeric(masks["Dice RCA (Mean)"], errors="coerce")
        if min_dice is not None:
            masks = masks[masks["dice_rca_mean"] >= min_dice]
    elif min_dice is not None:
        raise DatasetFormatError(f"{CHEXMASK} has no 'Dice RCA (Mean)' column to filter on")
    meta = read_metadata(root).set_index("dicom_id")
    unknown = sorted(set(masks["dicom_id"]) - set(meta.index))
    if unknown:
        raise DatasetFormatError(
            f"{CHEXMASK}: dicom_ids not in the MIMIC-CXR metadata: {', '.join(unknown[:5])}"
        )
    split_path = find_optional(root, SPLIT)
    split_of: dict[str, str] = {}
    if split_path is not None:
        split = read_csv_checked(split_path, ["dicom_id", "split"])
        split_of = dict(
            zip(
                split["dicom_id"].str.strip(),
                split["split"].str.strip().map(SPLIT_NAMES),
                strict=True,
            )
        )
    graphs = _scene_graphs(root)

    rows: list[dict[str, object]] = []
    for rec in masks.to_dict("records"):
        d = rec["dicom_id"]
        m = meta.loc[d]
        h, w = int(float(rec["Height"])), int(float(rec["Width"]))
        structures: dict[str, list[dict[str, object]]] = {
            "left_lung": [{"rle": str(rec["Left Lung"]), "style": "standard"}],
            "right_lung": [{"rle": str(rec["Right Lung"]), "style": "standard"}],
        }
        if d in graphs:
            structures.update(zone_parts(graphs[d]))
        rows.append(
            {
                "image_id": f"{NAMESPACE}:{d}",
                "subject_id": f"{NAMESPACE}:{m['subject_id']}",
                "study_id": f"{NAMESPACE}:s{m['study_id']}",
                "view": normalize_view(m["ViewPosition"]),
                "image_path": image_path(m["subject_id"], m["study_id"], d),
                "width": w,
                "height": h,
                "official_split": split_of.get(d),
                "dice_rca_mean": rec.get("dice_rca_mean"),
                MASK_SPEC_COLUMN: mask_spec(structures, shape=(h, w)),
            }
        )
    df = finalize(pd.DataFrame(rows), NAME, extra_columns=EXTRAS)
    df["dice_rca_mean"] = pd.to_numeric(df["dice_rca_mean"], errors="coerce").astype("float32")
    return df
