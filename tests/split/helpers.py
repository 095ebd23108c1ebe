"""Synthetic manifests for the split tests, with the manifest schema's columns and types."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from cxrflow.findings import FINDINGS
from cxrflow.manifest import LABEL_COLUMNS, MANIFEST_SCHEMA

# Unequal prevalence, 2% .. 30%, one per finding.
PREVALENCE: tuple[float, ...] = tuple(np.linspace(0.02, 0.30, len(FINDINGS)).round(3))


def make_manifest(
    n_subjects: int,
    *,
    images: tuple[int, int] = (1, 3),
    prevalence: Sequence[float] | None = None,
    annotated: float = 1.0,
    start: int = 0,
    prefix: str = "subj",
    ingest_run: str = "ingest-0001",
    seed: int = 0,
    exact_prevalence: bool = False,
) -> pd.DataFrame:
    """A manifest of `n_subjects` subjects (ids start..start+n-1) with 1..3 images each.

    A subject's label is drawn once (or, with exact_prevalence, exactly round(p*n) subjects
    are positive) and carried by all its images; a fraction 1-annotated of label cells is
    null (not annotated).
    """
    rng = np.random.default_rng(seed)
    subjects = [f"{prefix}-{start + i:06d}" for i in range(n_subjects)]
    counts = rng.integers(images[0], images[1] + 1, size=n_subjects)
    subject_of = np.repeat(np.arange(n_subjects), counts)
    n = len(subject_of)
    image_no = np.concatenate([np.arange(c) for c in counts]) if n else np.array([], int)
    sid = np.asarray(subjects, dtype=object)[subject_of]
    df = pd.DataFrame(
        {
            "image_id": [f"img-{s}-{j}" for s, j in zip(sid, image_no, strict=True)],
            "subject_id": sid,
            "study_id": [f"study-{s}-{j}" for s, j in zip(sid, image_no, strict=True)],
            "view": np.where(image_no % 2 == 0, "PA", "LATERAL"),
            "image_path": [f"images/img-{s}-{j}.png" for s, j in zip(sid, image_no, strict=True)],
            "image_sha256": ["0" * 64] * n,
            "width": np.full(n, 512, dtype=np.int32),
            "height": np.full(n, 512, dtype=np.int32),
            "source_dataset": "synthetic",
            "ingest_run": ingest_run,
            "study_date": None,
            "sex": rng.choice(["F", "M"], size=n),
            "age_years": rng.uniform(20, 90, size=n).astype(np.float32),
            "weight_kg": np.full(n, np.nan, dtype=np.float32),
            "height_m": np.full(n, np.nan, dtype=np.float32),
            "report": None,
            "mask_path": None,
        }
    )
    prevalence = PREVALENCE if prevalence is None else prevalence
    for column, p in zip(LABEL_COLUMNS, prevalence, strict=False):
        if exact_prevalence:
            positive = np.zeros(n_subjects, dtype=bool)
            positive[rng.permutation(n_subjects)[: round(p * n_subjects)]] = True
        else:
            positive = rng.random(n_subjects) < p
        values = pd.array(positive[subject_of].astype(np.int8), dtype="Int8")
        if annotated < 1.0:
            values[rng.random(n) >= annotated] = pd.NA
        df[column] = values
    for column in LABEL_COLUMNS:
        if column not in df.columns:
            df[column] = pd.array([pd.NA] * n, dtype="Int8")
    return df[list(MANIFEST_SCHEMA.names)]


def subject_split(df: pd.DataFrame) -> dict[str, str]:
    """subject_id -> split, asserting each subject has exactly one."""
    per = df.groupby("subject_id")["split"].unique()
    assert per.map(len).eq(1).all(), "a subject has more than one split"
    return {s: v[0] for s, v in per.items()}
