"""PadChest (BIMCV, Hospital San Juan, Alicante) to the manifest.

File read under `root`: `PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv` (or `.csv.gz`):
`ImageID`, `ImageDir`, `StudyID`, `PatientID`, `PatientBirth`, `PatientSex_DICOM`,
`ViewPosition_DICOM`, `Projection`, `Labels` (required); `StudyDate_DICOM`, `Rows_DICOM`,
`Columns_DICOM`, `Report`, `MethodLabel` (used when present).

Images: `<ImageDir>/<ImageID>` (16-bit PNGs at the original size, so `width`/`height` come
from `Columns_DICOM`/`Rows_DICOM`). ids: `padchest:<PatientID>`, `padchest:<StudyID>`,
`padchest:<ImageID without .png>`. No official split (null).

View: `Projection` PA -> PA, AP and AP_horizontal (supine AP) -> AP, L -> LATERAL; otherwise
`ViewPosition_DICOM` (POSTEROANTERIOR/ANTEROPOSTERIOR/LATERAL...) through the common view
mapping; else UNKNOWN (COSTAL, EXCLUDE, UNK ...). Sex: `PatientSex_DICOM` M/F/O. Age: study year
(`StudyDate_DICOM`) minus `PatientBirth` year (so +-1 year); null without both. `study_date`
is left null (PadChest dates are not shifted by the publisher; the manifest carries only
shifted dates).

Labels: `Labels` is a Python-list-like string of the taxonomy's terms (e.g.
`['callus rib fracture', ' pleural effusion']`), assigned exhaustively to every report, so a
mapped finding that is absent is 0; rows whose `Labels` is blank or unparsable have every label
null. PadChest labels the most specific term and not its parents (a report with a healed rib
fracture says `callus rib fracture`, not `rib fracture`), so the terms are first closed under
the published label hierarchy (`padchest_tree.txt`, package data; `hierarchy()`): every term
brings its ancestors. Mapping (`TERM_TO_FINDING`, applied to the closed set): cardiomegaly,
pleural effusion (so also loculated pleural/fissural effusion, hydropneumothorax, empyema,
hemothorax), pneumothorax (and hydropneumothorax), pleural thickening (apical, calcified),
pulmonary fibrosis (post radiotherapy changes, asbestosis signs), tuberculosis (tuberculosis
sequelae), chest drain tube, rib fracture (callus rib fracture); aortic_enlargement from aortic
elongation (descendent, ascendent, supra aortic elongation, aortic button enlargement) and
aortic aneurysm (a judgement call: PadChest has no "aortic enlargement" term). lung_opacity is
not mapped (PadChest splits opacity into many patterns) and stays null. Every other term of the
closed set goes to `labels_other` (so `callus rib fracture` brings `fracture` there); the extra
column `labels_implied` lists the terms the hierarchy added. Terms outside the tree are kept as
they are (logged). The Spanish, pre-processed `Report` goes to the extra column `report_full`;
`report` stays null.

Licence: PadChest Dataset Research Use Agreement (BIMCV; registration, non-commercial research).
"""

from __future__ import annotations

import ast
import logging
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from cxrflow.datasets.common import (
    finalize,
    join_names,
    locate,
    normalize_sex,
    normalize_view,
    read_csv_checked,
)
from cxrflow.findings import FINDINGS, label_column

NAME = "padchest"
NAMESPACE = "padchest"
CSV = "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv"
REQUIRED = [
    "ImageID",
    "ImageDir",
    "StudyID",
    "PatientID",
    "PatientBirth",
    "PatientSex_DICOM",
    "ViewPosition_DICOM",
    "Projection",
    "Labels",
]
# Parents only: their descendants reach them through the hierarchy.
TERM_TO_FINDING: dict[str, str] = {
    "cardiomegaly": "cardiomegaly",
    "pleural effusion": "pleural_effusion",
    "pneumothorax": "pneumothorax",
    "pleural thickening": "pleural_thickening",
    "pulmonary fibrosis": "pulmonary_fibrosis",
    "tuberculosis": "tuberculosis",
    "chest drain tube": "chest_tube",
    "rib fracture": "rib_fracture",
    "aortic elongation": "aortic_enlargement",
    "aortic aneurysm": "aortic_enlargement",
}
TREE_RESOURCE = "padchest_tree.txt"
MAPPED = sorted(set(TERM_TO_FINDING.values()))
EXTRAS = ("report_full", "labels_implied")
log = logging.getLogger(__name__)
_PROJECTION = {"PA": "PA", "AP": "AP", "AP_HORIZONTAL": "AP", "L": "LATERAL"}


def parse_tree(lines: Iterable[str]) -> dict[str, frozenset[str]]:
    """Each term's parents, from the indented tree text (see `padchest_tree.txt`)."""
    parents: dict[str, set[str]] = {}
    stack: list[tuple[int, str | None]] = []  # (indent, term or None for a tree's name)
    for number, raw in enumerate(lines, 1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        indent = len(raw) - len(raw.lstrip(" "))
        if indent % 2:
            raise ValueError(f"{TREE_RESOURCE} line {number}: odd indentation")
        text = raw.strip().lower()
        term = None if text.startswith("[") else text
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if term is not None:
            entry = parents.setdefault(term, set())
            if stack and stack[-1][1] is not None:
                entry.add(stack[-1][1])  # type: ignore[arg-type]
        stack.append((indent, term))
    return {t: frozenset(p) for t, p in parents.items()}


def ancestors_of(parents: Mapping[str, frozenset[str]]) -> dict[str, frozenset[str]]:
    """Each term's ancestors (parents, their parents, ...), not the term itself."""
    out: dict[str, frozenset[str]] = {}

    def walk(term: str, seen: tuple[str, ...]) -> frozenset[str]:
        if term in out:
            return out[term]
        if term in seen:
            raise ValueError(f"{TREE_RESOURCE}: cycle through {term!r}")
        found: set[str] = set()
        for parent in parents.get(term, ()):
            found.add(parent)
            found |= walk(parent, (*seen, term))
        out[term] = frozenset(found)
        return out[term]

    for term in parents:
        walk(term, ())
    return out


@cache
def hierarchy() -> dict[str, frozenset[str]]:
    """The ancestors of every term of PadChest's published label tree (package data)."""
    text = resources.files("cxrflow.datasets").joinpath(TREE_RESOURCE).read_text("utf-8")
    return ancestors_of(parse_tree(text.splitlines()))


def close_terms(terms: Iterable[str]) -> tuple[list[str], list[str], set[str]]:
    """(terms with their ancestors, the ancestors added, terms not in the tree)."""
    tree = hierarchy()
    given = list(dict.fromkeys(terms))
    added: list[str] = []
    unknown: set[str] = set()
    for term in given:
        if term not in tree:
            unknown.add(term)
            continue
        added.extend(a for a in sorted(tree[term]) if a not in given and a not in added)
    return given + added, added, unknown


def parse_labels(value: object) -> list[str] | None:
    """The terms of a `Labels` cell; None when blank or not a list."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
        return None
    if not isinstance(parsed, (list, tuple)):
        return None
    return [str(t).strip().lower() for t in parsed if str(t).strip()]


def _view(projection: object, dicom_view: object) -> str:
    if isinstance(projection, str) and projection.strip().upper() in _PROJECTION:
        return _PROJECTION[projection.strip().upper()]
    return normalize_view(dicom_view)


def load_padchest(root: Path) -> pd.DataFrame:
    root = Path(root)
    df = read_csv_checked(locate(root, CSV), REQUIRED)
    given = df["Labels"].map(parse_labels)
    closed: list[list[str] | None] = []
    implied: list[str | None] = []
    unknown: set[str] = set()
    for row in given:
        if row is None:
            closed.append(None)
            implied.append(None)
            continue
        terms, added, outside = close_terms(row)
        closed.append(terms)
        implied.append(join_names(added))
        unknown |= outside
    if unknown:
        log.warning(
            "%d PadChest terms are not in the label tree (kept, no parents added): %s",
            len(unknown),
            ", ".join(sorted(unknown)[:10]),
        )
    terms = pd.Series(closed, index=df.index, dtype=object)
    image = df["ImageID"].str.strip()
    out = pd.DataFrame(
        {
            "image_id": NAMESPACE + ":" + image.str.replace(r"\.png$", "", regex=True),
            "subject_id": NAMESPACE + ":" + df["PatientID"].str.strip(),
            "study_id": NAMESPACE + ":" + df["StudyID"].str.strip(),
            "view": [
                _view(p, v) for p, v in zip(df["Projection"], df["ViewPosition_DICOM"], strict=True)
            ],
            "image_path": df["ImageDir"].str.strip().str.replace(r"\.0$", "", regex=True)
            + "/"
            + image,
            "sex": df["PatientSex_DICOM"].map(normalize_sex),
            "labels_other": terms.map(
                lambda t: "" if t is None else join_names(x for x in t if x not in TERM_TO_FINDING)
            ),
            "labels_implied": implied,
        }
    )
    for finding in FINDINGS:
        if finding not in MAPPED:
            continue
        out[label_column(finding)] = terms.map(
            lambda t, f=finding: (
                pd.NA if t is None else int(any(TERM_TO_FINDING.get(x) == f for x in t))
            )
        ).astype("Int8")
    birth = pd.to_numeric(df["PatientBirth"], errors="coerce")
    if "StudyDate_DICOM" in df:
        year = pd.to_numeric(df["StudyDate_DICOM"].str.strip().str[:4], errors="coerce")
        age = year - birth
        out["age_years"] = age.where((age >= 0) & (age <= 120), np.nan)
    if "Rows_DICOM" in df and "Columns_DICOM" in df:
        out["height"] = pd.to_numeric(df["Rows_DICOM"], errors="coerce")
        out["width"] = pd.to_numeric(df["Columns_DICOM"], errors="coerce")
    if "Report" in df:
        out["report_full"] = df["Report"]
    return finalize(out, NAME, extra_columns=EXTRAS)
