"""What a browser test of the MLflow UI should find on a model version's page."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from cxrflow.registry.tags import REQUIRED_TAGS


@dataclass(frozen=True)
class VersionPageExpectations:
    """The page's URL and the texts (tag keys and values, aliases) it must show."""

    url: str
    tag_keys: tuple[str, ...]
    tag_values: tuple[str, ...]
    aliases: tuple[str, ...]


def version_page_url(base_url: str, name: str, version: str) -> str:
    """The MLflow 3 UI address of a registered model version (hash routing)."""
    return f"{base_url.rstrip('/')}/#/models/{quote(name, safe='')}/versions/{version}"


def version_page_expectations(base_url: str, mv: Any) -> VersionPageExpectations:
    """Everything the UI must display for `mv`: its lineage tags and its aliases."""
    tags = dict(mv.tags)
    keys = tuple(k for k in REQUIRED_TAGS if k in tags)
    # long values are truncated by the UI: check a prefix of each
    values = tuple(tags[k][:24] for k in keys if tags[k])
    return VersionPageExpectations(
        url=version_page_url(base_url, mv.name, str(mv.version)),
        tag_keys=keys,
        tag_values=values,
        aliases=tuple(getattr(mv, "aliases", []) or []),
    )


def missing_on_page(text: str, expected: VersionPageExpectations) -> list[str]:
    """The expected strings that a page's visible text lacks."""
    wanted = [*expected.tag_keys, *expected.tag_values, *expected.aliases]
    return [w for w in wanted if w not in text]
