"""Which model versions were trained on a data version."""

from __future__ import annotations

from typing import Any

from cxrflow.lineage.model import model_kind
from cxrflow.lineage.tree import LineageNode, NodeKind
from cxrflow.registry.runs import client as make_client
from cxrflow.tags import TAG_DATA_VERSION, TAG_GIT_COMMIT, TAG_PIPELINE_RUN, TAG_SPLIT_DIGEST
from cxrflow.versioning import normalise_md5


def all_versions(client: Any) -> list[Any]:
    """Every registered model version (all models), oldest first within each model."""
    versions = list(client.search_model_versions(max_results=100_000))
    return sorted(versions, key=lambda v: (v.name, int(v.version)))


def versions_on(client: Any, md5: str) -> list[Any]:
    """Model versions whose data-version tag is `md5`."""
    md5 = normalise_md5(md5)
    return [v for v in all_versions(client) if v.tags.get(TAG_DATA_VERSION) == md5]


def version_summary(mv: Any, **extra: Any) -> LineageNode:
    """A model version as one leaf node (kind, aliases and the main tags)."""
    tags = dict(mv.tags)
    attrs = {
        "name": mv.name,
        "version": str(mv.version),
        "kind": model_kind(mv.name, tags),
        "aliases": list(getattr(mv, "aliases", []) or []),
        "data_version": tags.get(TAG_DATA_VERSION, ""),
        "split_digest": tags.get(TAG_SPLIT_DIGEST, ""),
        "pipeline_run": tags.get(TAG_PIPELINE_RUN, ""),
        "git_commit": tags.get(TAG_GIT_COMMIT, ""),
        **extra,
    }
    return LineageNode(
        NodeKind.MODEL_VERSION,
        f"{mv.name}:{mv.version}",
        {k: v for k, v in attrs.items() if v not in ("", [])},
    )


def data_lineage(md5: str, *, client: Any = None) -> LineageNode:
    """Every model version trained on data version `md5`."""
    c = client or make_client()
    md5 = normalise_md5(md5)
    found = [version_summary(v) for v in versions_on(c, md5)]
    return LineageNode(
        NodeKind.DATA_VERSION,
        f"data {md5[:12]}: {len(found)} model version(s)",
        {"md5": md5, "restore": f"cxrflow data checkout {md5}", "models": len(found)},
        tuple(found),
    )
