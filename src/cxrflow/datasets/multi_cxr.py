"""The paper's Multi-CXR pre-training set (RAD-DINO, Appendix D.1, Table D.1), as a recipe.

Sources, as the paper lists them: BRAX (frontal and lateral), CheXpert (frontal and lateral),
MIMIC-CXR (frontal only, and only its official *train* split — "All images are used ... except
MIMIC-CXR where their recommended training split is used"), ChestX-ray14 (frontal; all its
images are frontal, so no view filter), PadChest (frontal and lateral). The paper's sixth
source, a private outpatient set (66,323 subjects, 90,000 images), is not public and not in
the recipe. Table D.1's subject and image counts are kept for comparison: "for some datasets
only a subset of subjects are included to exclude the evaluation set from the pre-training
dataset".

`build_pretraining_manifest(sources, evaluation)` applies each source's filter (for sources
named in the recipe), concatenates, and drops every row whose subject appears in any
evaluation frame — matched on `subject_id`, and also on `image_id` (which covers datasets whose
subjects are their images, such as VinDr-CXR). Matching is on the ids as the adapters write
them, so it only links datasets that share a namespace (MIMIC-CXR and the MIMIC lung masks,
`mimic:`); a cross-dataset overlap that the published ids cannot show (RSNA Pneumonia's images
are a subset of ChestX-ray14 under other ids) is not caught here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from cxrflow.datasets.common import DatasetFormatError

log = logging.getLogger(__name__)

FRONTAL: tuple[str, ...] = ("PA", "AP")


@dataclass(frozen=True)
class PretrainingSource:
    dataset: str  # adapter name
    views: tuple[str, ...] | None  # None: every view (UNKNOWN included)
    official_splits: tuple[str, ...] | None  # None: every row, whatever its split
    paper_subjects: int
    paper_images: int


MULTI_CXR: tuple[PretrainingSource, ...] = (
    PretrainingSource("brax", None, None, 19_351, 41_620),
    PretrainingSource("chexpert", None, None, 65_240, 223_648),
    PretrainingSource("mimic_cxr", FRONTAL, ("train",), 188_546, 210_491),
    PretrainingSource("chestxray14", None, None, 32_717, 112_120),
    PretrainingSource("padchest", None, None, 67_000, 160_817),
)

# Downstream sets of the paper whose subjects must not be pre-trained on.
EVALUATION_DATASETS: tuple[str, ...] = (
    "vindr_cxr",
    "candid_ptx",
    "rsna_pneumonia",
    "mimic_lung",
    "vindr_ribcxr",
)


def select_source(df: pd.DataFrame, source: PretrainingSource) -> pd.DataFrame:
    """The rows of one source that the recipe keeps."""
    keep = pd.Series(True, index=df.index)
    if source.views is not None:
        keep &= df["view"].isin(source.views)
    if source.official_splits is not None:
        if "official_split" not in df.columns:
            raise DatasetFormatError(f"{source.dataset}: no official_split column to filter on")
        keep &= df["official_split"].isin(source.official_splits)
    return df[keep]


def build_pretraining_manifest(
    sources: Mapping[str, pd.DataFrame],
    evaluation: Sequence[pd.DataFrame],
    *,
    recipe: Sequence[PretrainingSource] | None = MULTI_CXR,
) -> pd.DataFrame:
    """Concatenate the pre-training sources, without any subject of the evaluation sets.

    `sources` maps an adapter name to its frame; a source named in `recipe` is filtered by it
    (views, official split); other names are taken whole (with a warning). `recipe=None`
    applies no filter. Returns one frame, index reset; logs what was excluded.
    """
    by_name = {s.dataset: s for s in (recipe or ())}
    eval_subjects: set[str] = set()
    eval_images: set[str] = set()
    for frame in evaluation:
        eval_subjects.update(frame["subject_id"].astype(str))
        eval_images.update(frame["image_id"].astype(str))

    parts: list[pd.DataFrame] = []
    excluded_images = 0
    excluded_subjects: set[str] = set()
    for name, df in sources.items():
        if name in by_name:
            selected = select_source(df, by_name[name])
            log.info("%s: %d of %d images kept by the recipe", name, len(selected), len(df))
        else:
            if recipe is not None:
                log.warning("%s is not in the Multi-CXR recipe: taken whole", name)
            selected = df
        hit = selected["subject_id"].astype(str).isin(eval_subjects) | selected["image_id"].astype(
            str
        ).isin(eval_images)
        if hit.any():
            log.info(
                "%s: excluded %d images of %d subjects that appear in an evaluation set",
                name,
                int(hit.sum()),
                selected.loc[hit, "subject_id"].nunique(),
            )
        excluded_images += int(hit.sum())
        excluded_subjects.update(selected.loc[hit, "subject_id"].astype(str))
        parts.append(selected[~hit])
    if not parts:
        raise ValueError("no pre-training sources given")
    out = pd.concat(parts, ignore_index=True)
    dup = out["image_id"][out["image_id"].duplicated()]
    if len(dup):
        raise DatasetFormatError(
            f"an image is in more than one source: {', '.join(sorted(dup.unique()[:5]))}"
        )
    log.info(
        "pre-training manifest: %d images of %d subjects from %d sources; excluded %d images "
        "of %d subjects that are in an evaluation set",
        len(out),
        out["subject_id"].nunique(),
        len(parts),
        excluded_images,
        len(excluded_subjects),
    )
    return out
