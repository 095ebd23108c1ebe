"""Which model versions were trained on a data version."""

from __future__ import annotations

import re
from typing import Any

from cxrflow.lineage.model import model_kind
from cxrflow.lineage.tree import LineageNode, NodeKind
from cxrflow.registry.runs import client as make_client
from cxrflow.registry.runs import search_runs
from cxrflow.tags import TAG_DATA_VERSION, TAG_GIT_COMMIT, TAG_PIPELINE_RUN, TAG_SPLIT_DIGEST
from cxrflow.versioning import normalise_md5

MIN_PREFIX = 12  # the short form lineage prints (`data 0123456789ab: ...`)
_HEX = re.compile(r"[0-9a-f]+")


def known_data_versions(client: Any, prefix: str) -> list[str]:
    """The data versions MLflow knows (tagged on a run or a model version) that start with
    `prefix`, sorted."""
    tagged = {v.tags.get(TAG_DATA_VERSION, "") for v in all_versions(client)}
    runs = search_runs(client, f"tags.`{TAG_DATA_VERSION}` LIKE '{prefix}%'")
    tagged |= {r.data.tags.get(TAG_DATA_VERSION, "") for r in runs}
    md5s = {normalise_md5(t) for t in tagged if t}
    return sorted(m for m in md5s if m.startswith(prefix))


def resolve_data_version(text: str, *, client: Any = None) -> str:
    """The full md5 of a data version given as 32 hex digits (optional `.dir`) or as a prefix
    of at least `MIN_PREFIX` that exactly one data version known to MLflow starts with.

    Raises ValueError for anything else: not hex, too short, no match, several matches.
    """
    md5 = normalise_md5(text)
    if not _HEX.fullmatch(md5) or not MIN_PREFIX <= len(md5) <= 32:
        raise ValueError(
            f"{text.strip()!r} is not a data version: give its DVC md5 (32 hex digits) or a "
            f"prefix of at least {MIN_PREFIX} hex digits"
        )
    if len(md5) == 32:
        return md5  # a well-formed version nothing was trained on is a valid question
    candidates = known_data_versions(client or make_client(), md5)
    if not candidates:
        raise ValueError(f"no data version known to MLflow starts with {md5}")
    if len(candidates) > 1:
        raise ValueError(f"{md5} is ambiguous, give more digits: it starts {', '.join(candidates)}")
    return candidates[0]


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
    """Every model version trained on data version `md5` (full, or a unique prefix)."""
    c = client or make_client()
    md5 = resolve_data_version(md5, client=c)
    found = [version_summary(v) for v in versions_on(c, md5)]
    return LineageNode(
        NodeKind.DATA_VERSION,
        f"data {md5[:12]}: {len(found)} model version(s)",
        {"md5": md5, "restore": f"cxrflow data checkout {md5}", "models": len(found)},
        tuple(found),
    )
