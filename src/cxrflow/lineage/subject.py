"""Which data versions hold a subject's images, and which models trained on them."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cxrflow.keys import SecretKey
from cxrflow.lineage.data import all_versions, version_summary
from cxrflow.lineage.model import model_kind
from cxrflow.lineage.store import current_versions, read_version_manifest
from cxrflow.lineage.tree import LineageNode, NodeKind
from cxrflow.registry.runs import client as make_client
from cxrflow.tags import TAG_DATA_VERSION
from cxrflow.versioning import VersioningError, normalise_md5

log = logging.getLogger(__name__)

SPLIT_COLUMN = "split"


@dataclass(frozen=True)
class SubjectQuery:
    """Where to look: the repository (DVC cache, data.dvc), a local remote, training splits."""

    repo_root: Path
    data_dir: Path = Path("data")
    remote_dir: Path | None = None
    # Which splits a model of each kind learned from. Val only selects checkpoints, so it
    # is left out; add it here for an audit that counts selection as use.
    training_splits: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: {
            "encoder": ("train",),
            "head": ("train",),
            "report_generator": ("train",),
            "unknown": ("train",),
        }
    )

    def __post_init__(self) -> None:
        for kind, splits in self.training_splits.items():
            if not splits:
                raise ValueError(f"training_splits[{kind}] is empty")


def _candidate_versions(query: SubjectQuery, versions: Iterable[Any]) -> list[str]:
    """The git/DVC history of the data directory plus every version a model names."""
    out: list[str] = []
    try:
        out += current_versions(query.repo_root, query.data_dir, query.remote_dir)
    except VersioningError as exc:
        log.warning("data history unreadable: %s", exc)
    out += [v.tags[TAG_DATA_VERSION] for v in versions if v.tags.get(TAG_DATA_VERSION)]
    return list(dict.fromkeys(normalise_md5(m) for m in out))


def subject_lineage(pseudonym: str, query: SubjectQuery, *, client: Any = None) -> LineageNode:
    """Data versions holding `pseudonym`'s images and the models that trained on them."""
    c = client or make_client()
    models = all_versions(c)
    hits: dict[str, dict[str, int]] = {}  # md5 -> split -> images
    unreadable: list[str] = []
    for md5 in _candidate_versions(query, models):
        try:
            manifest = read_version_manifest(query.repo_root, md5, query.remote_dir)
        except VersioningError as exc:
            unreadable.append(md5)
            log.warning("%s", exc)
            continue
        rows = manifest[manifest["subject_id"].astype(str) == pseudonym]
        if rows.empty:
            continue
        splits = (
            rows[SPLIT_COLUMN].fillna("unassigned").astype(str)
            if SPLIT_COLUMN in rows
            else rows["subject_id"].map(lambda _: "unassigned")
        )
        hits[md5] = {str(k): int(v) for k, v in splits.value_counts().sort_index().items()}
    data_nodes = []
    for md5, splits in hits.items():
        trained = []
        for mv in models:
            if mv.tags.get(TAG_DATA_VERSION) != md5:
                continue
            kind = model_kind(mv.name, dict(mv.tags))
            used = query.training_splits.get(kind, query.training_splits["unknown"])
            # an image without a split may have been trained on: count it, conservatively
            overlap = sorted(s for s in splits if s in used or s == "unassigned")
            if overlap:
                trained.append(version_summary(mv, subject_splits=overlap))
        data_nodes.append(
            LineageNode(
                NodeKind.DATA_VERSION,
                f"data {md5[:12]}",
                {"md5": md5, "images_by_split": splits, "models": len(trained)},
                tuple(trained),
            )
        )
    notes = tuple(
        LineageNode(NodeKind.NOTE, f"data version {m[:12]} could not be read", {"md5": m})
        for m in unreadable
    )
    model_names = sorted({n.label for d in data_nodes for n in d.children})
    return LineageNode(
        NodeKind.SUBJECT,
        f"subject {pseudonym}",
        {"pseudonym": pseudonym, "data_versions": len(hits), "model_versions": model_names},
        (*data_nodes, *notes),
    )


def subject_pseudonym(patient_id: str, key: SecretKey) -> str:
    """The subject pseudonym ingestion gave `patient_id` (as `Deidentifier.subject_pseudonym`)."""
    return key.pseudonym("subject", patient_id.strip())


def patient_lineage(
    patient_id: str, key: SecretKey, query: SubjectQuery, *, client: Any = None
) -> LineageNode:
    """`subject_lineage` of a patient: the ID is turned into its pseudonym and then forgotten."""
    return subject_lineage(subject_pseudonym(patient_id, key), query, client=client)
